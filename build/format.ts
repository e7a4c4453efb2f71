// How the build scripts print sizes, durations and paths.
import { relative } from "node:path";

export const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Paths inside the working directory print relative to it, others in full. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === "" ? "." : rel.startsWith("..") ? path : rel;
}

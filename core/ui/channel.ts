// The local channel between running sessions and an open `ktctl ui`. The ui listens on a loopback
// port and records it, with a random token, in KTCTL_HOME/ui/endpoint.json (owner-only). A session
// process watches that directory (an inotify/FSEvents watch: no polling, no cost while nothing
// changes) and connects only when the file appears; without a ui it sends nothing at all.
// Wire format: newline-delimited JSON, first line `{"hello":{"token","pid"}}`, then UiEvents.

import { join } from "node:path";
import { readFile } from "node:fs/promises";

export interface UiEndpoint {
  port: number;
  token: string;
  pid: number;
}

export const uiDir = (home: string): string => join(home, "ui");
export const endpointPath = (home: string): string => join(uiDir(home), "endpoint.json");
export const ENDPOINT_FILE = "endpoint.json";

export async function readEndpoint(home: string): Promise<UiEndpoint | undefined> {
  try {
    const endpoint = JSON.parse(await readFile(endpointPath(home), "utf8")) as UiEndpoint;
    if (typeof endpoint?.port !== "number" || typeof endpoint.token !== "string" || typeof endpoint.pid !== "number") return undefined;
    return endpoint;
  } catch {
    return undefined;
  }
}

export interface Hello {
  hello: { token: string; pid: number };
}

/** Splits a byte stream into lines; a line longer than `maxLine` ends the stream (returns false). */
export function lineSplitter(onLine: (line: string) => void, maxLine = 4 * 1024 * 1024): (chunk: Buffer) => boolean {
  let rest = "";
  return (chunk) => {
    const text = rest + chunk.toString("utf8");
    const lines = text.split("\n");
    rest = lines.pop()!;
    if (rest.length > maxLine) return false;
    for (const line of lines) if (line) onLine(line);
    return true;
  };
}

// Who a session belongs to, as people read it: "<user>@<host>".

import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";

/** The login name of a uid from /etc/passwd (Bun's userInfo() may not know it, e.g. for root). */
function passwdName(uid: number | undefined): string | undefined {
  if (uid === undefined) return undefined;
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    return line?.split(":")[0] || undefined;
  } catch {
    return undefined;
  }
}

export function defaultOwner(env: Record<string, string | undefined> = process.env): string {
  let user = env.USER || env.LOGNAME || env.USERNAME || "";
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      // No passwd entry (some containers): "unknown" it is.
    }
  }
  if (!user || user === "unknown") user = passwdName(process.getuid?.()) ?? user;
  return `${user || "unknown"}@${hostname()}`;
}

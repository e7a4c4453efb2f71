// Colour only where a person reads it: a terminal, unless NO_COLOR (https://no-color.org) is set.
// FORCE_COLOR turns it on anywhere (CI logs that render escapes).

export function colorWanted(stream: { isTTY?: boolean }, env: Record<string, string | undefined> = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0") return true;
  return stream.isTTY === true;
}

// ESC [ ... final byte: the SGR sequences citty's help and consola's badges use.
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

export const stripAnsi = (text: string): string => text.replace(ANSI, "");

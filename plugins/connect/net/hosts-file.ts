// The hosts-file block connect keeps while it runs. Only the block between the markers is ever
// rewritten; everything outside it stays byte for byte, and the original bytes come back on exit
// (a journaled restore-file step), so even a block a crashed ktctl left behind is harmless.

export interface HostsEntry {
  address: string;
  names: string[];
}

export const blockBegin = (sessionId: string) => `# BEGIN ktctl connect ${sessionId}`;
export const blockEnd = (sessionId: string) => `# END ktctl connect ${sessionId}`;

/** The sessions that have a block in this hosts file. */
export const hostsBlockSessions = (text: string): string[] => [...text.matchAll(/^# BEGIN ktctl connect ([a-z0-9]+)\r?$/gm)].map((m) => m[1]!);

/** Lines of at most this many names: some resolvers (older glibc, Windows) cut long lines. */
const NAMES_PER_LINE = 8;

export function renderHostsBlock(entries: HostsEntry[], sessionId: string): string {
  const lines = [blockBegin(sessionId), "# cluster names, kept current while ktctl connect runs; removed on exit"];
  const sorted = [...entries].sort((a, b) => a.names[0]!.localeCompare(b.names[0]!) || a.address.localeCompare(b.address));
  for (const entry of sorted) {
    for (let i = 0; i < entry.names.length; i += NAMES_PER_LINE) {
      lines.push(`${entry.address}\t${entry.names.slice(i, i + NAMES_PER_LINE).join(" ")}`);
    }
  }
  lines.push(blockEnd(sessionId));
  return lines.join("\n");
}

/** `original` with this session's block (replacing an earlier one of the same session) at the end. */
export function withHostsBlock(original: string, entries: HostsEntry[], sessionId: string): string {
  const base = withoutHostsBlock(original, sessionId);
  const separator = base === "" || base.endsWith("\n") ? "" : "\n";
  return `${base}${separator}${renderHostsBlock(entries, sessionId)}\n`;
}

export function withoutHostsBlock(text: string, sessionId: string): string {
  const begin = text.indexOf(blockBegin(sessionId));
  if (begin < 0) return text;
  const endMarker = blockEnd(sessionId);
  const end = text.indexOf(endMarker, begin);
  if (end < 0) return text;
  let after = end + endMarker.length;
  if (text[after] === "\n") after++;
  return text.slice(0, begin) + text.slice(after);
}

// What a new connection on a meshed port speaks, told from its first bytes: the HTTP/2 preface,
// an HTTP/1 request line, or anything else (which goes to the original pods untouched).

export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** Longest method we take for HTTP/1 (longer tokens exist in theory, not in practice). */
const MAX_METHOD = 20;

export type Protocol = "http1" | "http2" | "raw";

/** The protocol, or "more" while the bytes so far could still be either. */
export function classify(buf: Buffer): Protocol | "more" {
  if (buf.length === 0) return "more";
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, n, 0, n) === 0) return n === H2_PREFACE.length ? "http2" : "more";
  const limit = Math.min(buf.length, MAX_METHOD + 1);
  for (let i = 0; i < limit; i++) {
    const c = buf[i]!;
    if (c === 32) return i > 0 ? "http1" : "raw";
    const methodChar = (c >= 65 && c <= 90) || c === 45 || c === 95; // A-Z - _
    if (!methodChar) return "raw";
  }
  return buf.length > MAX_METHOD ? "raw" : "more";
}

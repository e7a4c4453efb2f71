// HPACK (RFC 7541), shared by the laptop's traffic tap and the shadow's mesh router. The decoder
// reads every header block of one direction: both directions of an HTTP/2 connection each keep a
// dynamic table, so EVERY block must be decoded in order even when only a few fields are wanted, or
// later blocks decode wrong. The encoder writes blocks that never touch the receiver's dynamic
// table, so a relay can put its own blocks between another encoder's without breaking that
// encoder's table on the far side.

/**
 * The bit length of each symbol's Huffman code (RFC 7541 Appendix B, symbols 0-255 and EOS). The
 * code is canonical, so the lengths alone determine every code.
 */
const HUFFMAN_LENGTHS: readonly number[] = [13,23,28,28,28,28,28,28,28,24,30,28,28,30,28,28,28,28,28,28,28,28,30,28,28,28,28,28,28,28,28,28,6,10,10,12,13,6,8,11,10,10,8,11,8,6,6,6,5,5,5,6,6,6,6,6,6,6,7,8,15,6,12,10,13,6,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,8,7,8,13,19,13,14,6,15,5,6,5,6,5,6,6,6,5,7,7,6,6,6,5,6,7,6,5,5,6,7,7,7,7,7,15,11,14,13,28,20,22,20,20,22,22,22,23,22,23,23,23,23,23,24,23,24,24,22,23,24,23,23,23,23,21,22,23,22,23,23,24,22,21,20,22,22,23,23,21,23,22,22,24,21,22,23,23,21,21,22,21,23,22,23,23,20,22,22,22,23,22,22,23,26,26,20,19,22,23,22,25,26,26,26,27,27,26,24,25,19,21,26,27,27,26,27,24,21,21,26,26,28,27,27,27,20,24,20,21,22,21,21,23,22,22,25,25,24,24,26,23,26,27,26,26,27,27,27,27,27,28,27,27,27,27,27,26,30];

const EOS = 256;

/** A binary tree of the codes, as arrays: children[node*2 + bit] is a node, or ~symbol at a leaf. */
function buildHuffmanTree(): Int32Array {
  const order = HUFFMAN_LENGTHS.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  const children = new Int32Array(2 * 512).fill(0);
  let nodes = 1;
  let code = 0;
  let previous = order[0]!.length;
  for (const { length, symbol } of order) {
    code <<= length - previous;
    previous = length;
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = node * 2 + ((code >>> bit) & 1);
      if (bit === 0) children[slot] = ~symbol;
      else node = children[slot] || (children[slot] = nodes++);
    }
    code++;
  }
  return children;
}

let huffmanTree: Int32Array | undefined;

export class HpackError extends Error {}

export function decodeHuffman(bytes: Uint8Array): string {
  const tree = (huffmanTree ??= buildHuffmanTree());
  const out: number[] = [];
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >>> bit) & 1;
      const next = tree[node * 2 + one]!;
      depth++;
      allOnes &&= one === 1;
      if (next < 0) {
        const symbol = ~next;
        if (symbol === EOS) throw new HpackError("EOS inside a Huffman string");
        out.push(symbol);
        node = 0;
        depth = 0;
        allOnes = true;
      } else {
        node = next;
      }
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (the EOS prefix).
  if (depth > 7 || !allOnes) throw new HpackError("bad Huffman padding");
  return Buffer.from(out).toString("latin1");
}

const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/** Per RFC 7541 §4.1: each entry costs its name and value lengths plus 32. */
const entrySize = (name: string, value: string) => name.length + value.length + 32;

/** Header fields in order; a third element `true` marks a field sent "never indexed" (RFC 7541 §6.2.3). */
export type HeaderList = [name: string, value: string, neverIndexed?: true][];

export interface HpackLimits {
  /** The largest dynamic table size the encoder may announce (the receiver's SETTINGS value). */
  maxTableSize: number;
  /** The largest decoded header list (names, values and 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts). */
  maxListSize: number;
}

/** What a peer that never said otherwise may use, and a header list bound far above real traffic. */
export const DEFAULT_HPACK_LIMITS: HpackLimits = { maxTableSize: 64 * 1024, maxListSize: 1024 * 1024 };

/** One direction's decoder; its dynamic table lives as long as the connection. */
export class HpackDecoder {
  private dynamic: [string, string][] = [];
  private size = 0;
  /** 4096 until the encoder announces another size (RFC 7540 §6.5.2). */
  private maxSize = 4096;

  private readonly limits: HpackLimits;

  constructor(limits: HpackLimits = DEFAULT_HPACK_LIMITS) {
    this.limits = { ...limits };
  }

  /** The receiver announced a larger table (its SETTINGS_HEADER_TABLE_SIZE): the encoder may use it. */
  allowTableSize(size: number): void {
    this.limits.maxTableSize = Math.max(this.limits.maxTableSize, size);
  }

  /** Throws HpackError on a malformed block, a table larger than allowed, or a list over the bound. */
  decode(block: Uint8Array): HeaderList {
    const headers: HeaderList = [];
    let listSize = 0;
    const add = (name: string, value: string, neverIndexed = false) => {
      listSize += name.length + value.length + 32;
      // A few table references can name kilobytes each: bounded here, not after the whole block.
      if (listSize > this.limits.maxListSize) throw new HpackError(`a header list over ${this.limits.maxListSize} bytes`);
      headers.push(neverIndexed ? [name, value, true] : [name, value]);
    };
    let at = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[at++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (at >= block.length) throw new HpackError("truncated integer");
        const byte = block[at++]!;
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
        if (!(byte & 0x80)) return value;
        if (shift > 28) throw new HpackError("integer too large");
      }
    };
    const string = (): string => {
      if (at >= block.length) throw new HpackError("truncated string");
      const huffman = (block[at]! & 0x80) !== 0;
      const length = integer(7);
      if (at + length > block.length) throw new HpackError("truncated string");
      const bytes = block.subarray(at, at + length);
      at += length;
      return huffman ? decodeHuffman(bytes) : Buffer.from(bytes).toString("latin1");
    };
    const entry = (index: number): readonly [string, string] => {
      if (index <= 0) throw new HpackError("index 0");
      if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
      const dynamicEntry = this.dynamic[index - STATIC_TABLE.length - 1];
      if (!dynamicEntry) throw new HpackError(`index ${index} is past the table`);
      return dynamicEntry;
    };
    while (at < block.length) {
      const first = block[at]!;
      if (first & 0x80) {
        const [name, value] = entry(integer(7));
        add(name, value);
      } else if (first & 0x40) {
        const index = integer(6);
        const name = index ? entry(index)[0] : string();
        const value = string();
        add(name, value);
        this.insert(name, value);
      } else if (first & 0x20) {
        this.resize(integer(5));
      } else {
        // Literal without indexing (0000) or never indexed (0001): same layout, 4-bit prefix.
        const neverIndexed = (first & 0x10) !== 0;
        const index = integer(4);
        const name = index ? entry(index)[0] : string();
        add(name, string(), neverIndexed);
      }
    }
    return headers;
  }

  private insert(name: string, value: string): void {
    this.dynamic.unshift([name, value]);
    this.size += entrySize(name, value);
    this.evict();
  }

  private resize(size: number): void {
    // The bound is the receiver's SETTINGS value, which an observer may have missed: a generous cap.
    if (size > this.limits.maxTableSize) throw new HpackError(`a dynamic table of ${size} bytes (at most ${this.limits.maxTableSize})`);
    this.maxSize = size;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize && this.dynamic.length) {
      const [name, value] = this.dynamic.pop()!;
      this.size -= entrySize(name, value);
    }
  }
}

/** Static-table lookups for the encoder: "name\0value" -> index, and name -> its first index. */
const STATIC_PAIRS = new Map<string, number>();
const STATIC_NAMES = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (value) STATIC_PAIRS.set(`${name}\0${value}`, i + 1);
  if (!STATIC_NAMES.has(name)) STATIC_NAMES.set(name, i + 1);
});

/**
 * Encodes header lists with the static table only: a field is an index when name and value are in
 * it, else a literal "without indexing" (RFC 7541 §6.2.2; "never indexed" when it came so), its name
 * indexed when the table has it.
 * Strings go raw, not Huffman-coded: a few bytes more on the wire, no work per byte.
 */
export function encodeHeaderBlock(headers: HeaderList, tableSizeUpdates: readonly number[] = []): Buffer {
  let size = 12;
  for (const [name, value] of headers) size += name.length + value.length + 16;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const integer = (value: number, prefixBits: number, firstByte: number) => {
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      out[at++] = firstByte | value;
      return;
    }
    out[at++] = firstByte | max;
    value -= max;
    while (value >= 0x80) {
      out[at++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[at++] = value;
  };
  const string = (text: string) => {
    integer(text.length, 7, 0x00);
    at += out.write(text, at, "latin1");
  };
  // Dynamic table size updates, when the receiver must see them, come first (RFC 7541 §4.2: at most
  // two, the smallest size since the last block, then the final one).
  for (const update of tableSizeUpdates) integer(update, 5, 0x20);
  for (const [name, value, neverIndexed] of headers) {
    const pair = neverIndexed ? undefined : STATIC_PAIRS.get(`${name}\0${value}`);
    if (pair !== undefined) {
      integer(pair, 7, 0x80);
      continue;
    }
    // Never indexed (0001) stays never indexed on every hop after; the rest: without indexing (0000).
    const literal = neverIndexed ? 0x10 : 0x00;
    const nameIndex = STATIC_NAMES.get(name);
    if (nameIndex !== undefined) integer(nameIndex, 4, literal);
    else {
      out[at++] = literal;
      string(name);
    }
    string(value);
  }
  return out.subarray(0, at);
}

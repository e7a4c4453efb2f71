// HTTP/1.1 framing as the mesh router reads it: heads, bodies, and the refusals that keep a request
// from hiding inside another one.

import { describe, expect, test } from "bun:test";
import {
  BodyTracker,
  ChunkedScanner,
  findHeadEnd,
  HttpParseError,
  parseRequestHead,
  parseResponseHead,
  simpleResponse,
} from "../../shadow/router/http1.ts";

const request = (text: string) => {
  const buf = Buffer.from(text, "latin1");
  const end = findHeadEnd(buf);
  if (end < 0) throw new Error("incomplete head in test");
  return parseRequestHead(buf, end);
};
const response = (text: string, method = "GET") => {
  const buf = Buffer.from(text, "latin1");
  return parseResponseHead(buf, findHeadEnd(buf), method);
};
const rejects = (text: string, status = 400) => {
  let caught: unknown;
  try {
    request(text);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(HttpParseError);
  expect((caught as HttpParseError).status).toBe(status);
};

describe("request heads", () => {
  test("a plain GET: path, version, lowercase headers, keep-alive, no body", () => {
    const head = request("GET /a/b?c=1 HTTP/1.1\r\nHost: echo\r\nVERSION: alice\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n");
    expect(head.method).toBe("GET");
    expect(head.path).toBe("/a/b?c=1");
    expect(head.minorVersion).toBe(1);
    expect(head.headers.version).toBe("alice");
    expect(head.headers["x-many"]).toBe("1, 2");
    expect(head.keepAlive).toBe(true);
    expect(head.upgrade).toBe(false);
    expect(head.body).toEqual({ kind: "none" });
  });

  test("keep-alive follows the version and Connection", () => {
    expect(request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keepAlive).toBe(false);
    expect(request("GET / HTTP/1.0\r\n\r\n").keepAlive).toBe(false);
    expect(request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive).toBe(true);
  });

  test("bodies: Content-Length, chunked, zero length", () => {
    expect(request("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").body).toEqual({ kind: "length", length: 5 });
    expect(request("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body).toEqual({ kind: "none" });
    expect(request("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n").body).toEqual({ kind: "length", length: 7 });
    expect(request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").body).toEqual({ kind: "chunked" });
  });

  test("upgrades and CONNECT become tunnels; Expect is seen", () => {
    const ws = request("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect(ws.upgrade).toBe(true);
    const notReally = request("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    expect(notReally.upgrade).toBe(false); // Upgrade without Connection: upgrade is ignored (RFC 9110 7.8)
    expect(request("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n").upgrade).toBe(true);
    expect(request("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").expectContinue).toBe(true);
  });

  test("absolute-form targets route on their path", () => {
    expect(request("GET http://echo.demo/api/x HTTP/1.1\r\n\r\n").path).toBe("/api/x");
    expect(request("GET http://echo.demo HTTP/1.1\r\n\r\n").path).toBe("/");
  });

  test("ambiguous framing is refused", () => {
    rejects("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    rejects("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    rejects("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
    rejects("POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n");
    rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
    rejects("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
  });

  test("malformed heads are refused", () => {
    rejects("GET / HTTP/1.1\r\n folded: no\r\n\r\n");
    rejects("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
    rejects("GET / HTTP/1.1\r\nName : x\r\n\r\n");
    rejects("GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n");
    rejects("GET /a b HTTP/1.1\r\n\r\n");
    rejects("GET / HTTP/2.0\r\n\r\n", 505);
    rejects("GET / HTTP/1.1 extra\r\n\r\n");
  });

  test("findHeadEnd waits for the blank line", () => {
    expect(findHeadEnd(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n"))).toBe(-1);
    expect(findHeadEnd(Buffer.from("GET / HTTP/1.1\r\n\r\nrest"))).toBe(18);
  });
});

describe("response heads", () => {
  test("body kinds by status, method and headers", () => {
    expect(response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").body).toEqual({ kind: "length", length: 3 });
    expect(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").body).toEqual({ kind: "chunked" });
    expect(response("HTTP/1.1 200 OK\r\n\r\n").body).toEqual({ kind: "close" });
    expect(response("HTTP/1.1 200 OK\r\n\r\n").keepAlive).toBe(false);
    expect(response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD").body).toEqual({ kind: "none" });
    expect(response("HTTP/1.1 204 No Content\r\n\r\n").body).toEqual({ kind: "none" });
    expect(response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").body).toEqual({ kind: "none" });
    expect(response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").status).toBe(200); // empty reason phrase
  });

  test("interim, switching and CONNECT answers", () => {
    const cont = response("HTTP/1.1 100 Continue\r\n\r\n");
    expect(cont.interim).toBe(true);
    expect(cont.body).toEqual({ kind: "none" });
    const ws = response("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    expect(ws.switching).toBe(true);
    expect(ws.interim).toBe(false);
    expect(response("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT").switching).toBe(true);
  });

  test("keep-alive of an answer", () => {
    expect(response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").keepAlive).toBe(false);
    expect(response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(false);
    expect(response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n").keepAlive).toBe(true);
  });

  test("garbage from an upstream is a 502", () => {
    for (const garbage of ["SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 200 OK\r\n bad fold\r\n\r\n"]) {
      let caught: unknown;
      try {
        response(garbage);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(HttpParseError);
      expect((caught as HttpParseError).status).toBe(502);
    }
  });
});

describe("chunked bodies", () => {
  const body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n";

  test("the end is found wherever the bytes are split", () => {
    const bytes = Buffer.from(body + "NEXT", "latin1");
    const end = body.length;
    for (let split = 0; split <= bytes.length; split++) {
      const scanner = new ChunkedScanner();
      const first = scanner.scan(bytes.subarray(0, split));
      if (first >= 0) {
        expect(first).toBe(end);
        continue;
      }
      expect(scanner.scan(bytes.subarray(split)) + split).toBe(end);
    }
  });

  test("byte by byte", () => {
    const scanner = new ChunkedScanner();
    const bytes = Buffer.from(body, "latin1");
    for (let i = 0; i < bytes.length; i++) {
      const at = scanner.scan(bytes.subarray(i, i + 1));
      expect(at).toBe(i === bytes.length - 1 ? 1 : -1);
    }
    expect(scanner.done).toBe(true);
  });

  test("broken chunk framing is an error", () => {
    for (const broken of ["x\r\n", "4\r\nWikiXX", "4\nWiki\r\n", "0\r\nTrailer\n\r\n", "123456789abcdef\r\n"]) {
      expect(() => new ChunkedScanner().scan(Buffer.from(broken, "latin1"))).toThrow(HttpParseError);
    }
  });
});

describe("body tracking", () => {
  test("a Content-Length body ends at its length, leaving the next message", () => {
    const tracker = new BodyTracker({ kind: "length", length: 5 });
    expect(tracker.take(Buffer.from("abc"))).toBe(3);
    expect(tracker.done).toBe(false);
    expect(tracker.take(Buffer.from("deGET /"))).toBe(2);
    expect(tracker.done).toBe(true);
    expect(tracker.take(Buffer.from("more"))).toBe(0);
  });

  test("a close-delimited body ends with the stream; others are truncated by it", () => {
    const closing = new BodyTracker({ kind: "close" });
    expect(closing.take(Buffer.from("all of it"))).toBe(9);
    expect(closing.endOfStream()).toBe(true);
    const sized = new BodyTracker({ kind: "length", length: 10 });
    sized.take(Buffer.from("abc"));
    expect(sized.endOfStream()).toBe(false);
  });

  test("the router's own answers are complete responses that close", () => {
    const text = simpleResponse(502, "Bad Gateway", "no upstream").toString();
    const parsed = response(text);
    expect(parsed.status).toBe(502);
    expect(parsed.keepAlive).toBe(false);
    expect(text.endsWith("no upstream\n")).toBe(true);
  });
});

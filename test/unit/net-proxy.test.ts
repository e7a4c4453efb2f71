// The proxy with real clients (curl) against real local servers standing in for the cluster side:
// `openStream(host, port)` records what it was asked for and connects to a local HTTP server or
// TCP echo, as the tunnel connects to a service inside the cluster.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, createServer, type Server } from "node:net";
import { parseAuthority, rewriteProxyRequest, socksReplyFor, startProxyServer, type ProxyServer } from "../../core/laptop/proxy-server.ts";

let http: ReturnType<typeof Bun.serve>;
let echo: Server;
let echoPort: number;
let proxy: ProxyServer;
const asked: string[] = [];

async function curl(args: string[]) {
  const proc = Bun.spawn(["curl", "-sS", "--max-time", "5", ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

beforeAll(async () => {
  http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (request) =>
      Response.json({ url: request.url, host: request.headers.get("host"), connection: request.headers.get("connection"), proxyConnection: request.headers.get("proxy-connection"), body: await request.text() }),
  });
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  echoPort = (echo.address() as { port: number }).port;
  proxy = await startProxyServer({
    port: 0,
    openStream: async (host, port) => {
      asked.push(`${host}:${port}`);
      if (host === "refused.demo") throw Object.assign(new Error("cannot reach refused.demo:80 from the cluster: connection refused"), { reason: "refused" });
      const socket = connect(port === 9090 ? echoPort : http.port!, "127.0.0.1");
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      return socket;
    },
  });
});

afterAll(async () => {
  await proxy.close();
  http.stop(true);
  echo.close();
});

describe("proxy server", () => {
  test("SOCKS5 with the name left for the cluster side to resolve (curl --socks5-hostname)", async () => {
    const r = await curl(["--socks5-hostname", `127.0.0.1:${proxy.port}`, "http://echo.demo.svc.cluster.local/hello"]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ host: "echo.demo.svc.cluster.local" });
    expect(asked).toContain("echo.demo.svc.cluster.local:80");
  });

  test("SOCKS5 with an IPv4 address (curl --socks5)", async () => {
    const r = await curl(["--socks5", `127.0.0.1:${proxy.port}`, "http://10.96.12.34:8080/"]);
    expect(r.code).toBe(0);
    expect(asked).toContain("10.96.12.34:8080");
  });

  test("HTTP absolute-URI request: origin-form upstream, proxy headers stripped, body passed", async () => {
    const r = await curl(["-x", `http://127.0.0.1:${proxy.port}`, "-H", "Proxy-Connection: keep-alive", "--data", "ping=1", "http://echo:80/path?q=1"]);
    const seen = JSON.parse(r.stdout);
    expect(seen.url).toEndWith("/path?q=1");
    expect(seen.host).toBe("echo");
    expect(seen.connection).toBe("close");
    expect(seen.proxyConnection).toBeNull();
    expect(seen.body).toBe("ping=1");
    expect(asked).toContain("echo:80");
  });

  test("HTTP CONNECT carries any TCP protocol (a raw echo on 9090)", async () => {
    const socket = connect(proxy.port, "127.0.0.1");
    let text = "";
    const complete = new Promise<void>((resolve) =>
      socket.on("data", (chunk) => {
        text += chunk;
        if (text.endsWith("later bytes")) resolve();
      }),
    );
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write("CONNECT tcp-echo.demo:9090 HTTP/1.1\r\nHost: tcp-echo.demo:9090\r\n\r\nearly bytes|");
    socket.write("later bytes");
    await complete;
    expect(text).toBe("HTTP/1.1 200 Connection Established\r\n\r\nearly bytes|later bytes");
    socket.destroy();
    expect(asked).toContain("tcp-echo.demo:9090");
  });

  test("curl through HTTP CONNECT (-p) to the echo", async () => {
    const r = await curl(["-p", "-x", `http://127.0.0.1:${proxy.port}`, "http://echo.demo:80/tunnelled"]);
    expect(JSON.parse(r.stdout).url).toEndWith("/tunnelled");
  });

  test("failures: SOCKS reply 5 for refused, 502 over HTTP, 400 for a non-proxy request", async () => {
    const socks = await curl(["--socks5-hostname", `127.0.0.1:${proxy.port}`, "http://refused.demo/"]);
    expect(socks.code).toBe(97); // curl: proxy handshake error
    expect(socks.stderr).toContain("(5)"); // the SOCKS5 reply code: connection refused
    const viaHttp = await curl(["-x", `http://127.0.0.1:${proxy.port}`, "-w", "%{http_code}", "-o", "/dev/null", "http://refused.demo/"]);
    expect(viaHttp.stdout).toBe("502");
    const direct = await curl(["-w", "%{http_code}", "-o", "/dev/null", `http://127.0.0.1:${proxy.port}/`]);
    expect(direct.stdout).toBe("400");
    expect(proxy.stats().refused).toBeGreaterThanOrEqual(3);
  });

  test("200 parallel connections", async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        new Promise<string>((resolve, reject) => {
          const socket = connect(proxy.port, "127.0.0.1");
          let data = "";
          socket.on("data", (chunk) => {
            data += chunk;
            if (data.endsWith(`msg-${i}`)) {
              socket.destroy();
              resolve(data);
            }
          });
          socket.on("error", reject);
          socket.write(`CONNECT e:9090 HTTP/1.1\r\n\r\nmsg-${i}`);
        }),
      ),
    );
    expect(results.every((r, i) => r.endsWith(`msg-${i}`))).toBe(true);
  });
});

describe("proxy parsing", () => {
  test("authorities", () => {
    expect(parseAuthority("echo.demo:8080")).toEqual({ host: "echo.demo", port: 8080 });
    expect(parseAuthority("[fd00::1]:443")).toEqual({ host: "fd00::1", port: 443 });
    expect(parseAuthority("echo", 80)).toEqual({ host: "echo", port: 80 });
    expect(parseAuthority("echo")).toBeUndefined();
    expect(parseAuthority("echo:70000")).toBeUndefined();
  });

  test("request rewrite adds Host when missing and drops hop-by-hop headers", () => {
    const r = rewriteProxyRequest("GET http://user@echo.demo:8080 HTTP/1.0\r\nKeep-Alive: 5\r\nAccept: */*\r\n\r\n");
    expect(r).toEqual({ host: "echo.demo", port: 8080, head: "GET / HTTP/1.0\r\nHost: user@echo.demo:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n" });
    expect(rewriteProxyRequest("GET /relative HTTP/1.1\r\n\r\n")).toBeUndefined();
  });

  test("SOCKS reply codes", () => {
    expect(socksReplyFor({ reason: "refused" })).toBe(5);
    expect(socksReplyFor({ code: "ENOTFOUND" })).toBe(4);
    expect(socksReplyFor(new Error("x"))).toBe(1);
  });
});

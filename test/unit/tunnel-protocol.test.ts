import { describe, expect, test } from "bun:test";
import { backoffDelay } from "../../core/tunnel/backoff.ts";
import { utils } from "ssh2";
import { createHostKey, createSessionKeyPair, fingerprint, parseAuthorizedKey } from "../../core/protocol/keys.ts";
import {
  ControlLineDecoder,
  ControlProtocolError,
  MAX_CONTROL_LINE_BYTES,
  REPLY_TYPE,
  TUNNEL_PROTOCOL_VERSION,
  decodeControlMessage,
  encodeControlMessage,
  isControlRequest,
  streamFailureOf,
  type ControlMessage,
} from "../../core/protocol/tunnel.ts";
import { readShadowConfig } from "../../shadow/config.ts";
import { createShadowLog } from "../../shadow/log.ts";

const samples: ControlMessage[] = [
  { type: "hello", id: 1, protocol: TUNNEL_PROTOCOL_VERSION, client: "0.1.0" },
  { type: "welcome", id: 1, protocol: 1, shadow: "0.1.0", roles: ["tunnel", "dns"], session: "s1", hostname: "pod-a" },
  { type: "ping", id: 2 },
  { type: "pong", id: 2 },
  { type: "resolve", id: 3, name: "echo.demo" },
  { type: "resolved", id: 3, addresses: ["10.96.0.12"] },
  { type: "welcome", id: 5, protocol: 1, shadow: "0.1.0", roles: ["tunnel"], session: "s1", hostname: "pod-a", features: ["direct"] },
  { type: "welcome", id: 7, protocol: 1, shadow: "0.1.0", roles: ["tunnel"], session: "s1", hostname: "pod-a", podIP: "10.244.0.7" },
  { type: "direct", id: 6 },
  { type: "direct-ready", id: 6, port: 41234, token: "ab".repeat(32) },
  { type: "reverse", id: 8 },
  { type: "reverse-ready", id: 8, port: 41235, token: "cd".repeat(32) },
  { type: "error", id: 4, code: "not-found", message: 'no such host "x"' },
  { type: "stream-failed", ref: 4_000_000_000, reason: "refused", message: "connection refused" },
];

describe("control messages", () => {
  test("every message type survives encode/decode unchanged", () => {
    for (const message of samples) {
      const line = encodeControlMessage(message);
      expect(line.endsWith("\n")).toBe(true);
      expect(line.indexOf("\n")).toBe(line.length - 1);
      expect(decodeControlMessage(line.trimEnd())).toEqual(message);
    }
  });

  test("requests are told apart from replies and events", () => {
    expect(samples.filter(isControlRequest).map((m) => m.type)).toEqual(["hello", "ping", "resolve", "direct", "reverse"]);
    expect(Object.keys(REPLY_TYPE).sort()).toEqual(["direct", "hello", "ping", "resolve", "reverse"]);
  });

  test("unknown extra fields are ignored (a newer peer may add some)", () => {
    const decoded = decodeControlMessage('{"type":"pong","id":7,"rtt":3}');
    expect(decoded).toMatchObject({ type: "pong", id: 7 });
  });

  test.each([
    ["not json", "{nope", /not valid JSON/],
    ["an array", "[1,2]", /not a JSON object/],
    ["no type", '{"id":1}', /unknown control message type/],
    ["an unknown type", '{"type":"shutdown","id":1}', /unknown control message type "shutdown"/],
    ["a missing id", '{"type":"ping"}', /"ping" has a missing or invalid "id"/],
    ["a negative id", '{"type":"ping","id":-1}', /invalid "id"/],
    ["a fractional id", '{"type":"ping","id":1.5}', /invalid "id"/],
    ["a name with spaces", '{"type":"resolve","id":1,"name":"a b"}', /invalid "name"/],
    ["an empty name", '{"type":"resolve","id":1,"name":""}', /invalid "name"/],
    ["roles that are not strings", '{"type":"welcome","id":1,"protocol":1,"shadow":"x","roles":[1],"session":"","hostname":"h"}', /invalid "roles"/],
    ["a pod IP that is no name", '{"type":"welcome","id":1,"protocol":1,"shadow":"x","roles":[],"session":"","hostname":"h","podIP":"10.0.0.1 x"}', /invalid "podIP"/],
    ["an unknown failure reason", '{"type":"stream-failed","ref":1,"reason":"exploded","message":""}', /invalid "reason"/],
  ])("refuses %s", (_, line, error) => {
    expect(() => decodeControlMessage(line)).toThrow(error);
    expect(() => decodeControlMessage(line)).toThrow(ControlProtocolError);
  });

  test("encoding refuses an invalid message instead of sending it", () => {
    expect(() => encodeControlMessage({ type: "ping" } as unknown as ControlMessage)).toThrow(/invalid "id"/);
    expect(() =>
      encodeControlMessage({ type: "resolved", id: 1, addresses: ["x".repeat(MAX_CONTROL_LINE_BYTES)] }),
    ).toThrow(/exceeds/);
  });
});

describe("control line decoder", () => {
  test("reassembles lines split across chunks, including a split UTF-8 character", () => {
    const decoder = new ControlLineDecoder();
    const bytes = Buffer.from('{"type":"error","id":1,"code":"x","message":"é"}\n{"type":"pong","id":2}\n');
    const split = bytes.indexOf(Buffer.from("é")) + 1; // inside the two-byte character
    expect(decoder.push(bytes.subarray(0, split))).toEqual([]);
    const lines = decoder.push(bytes.subarray(split));
    expect(lines.map(decodeControlMessage)).toEqual([
      { type: "error", id: 1, code: "x", message: "é" },
      { type: "pong", id: 2 },
    ]);
  });

  test("skips blank lines", () => {
    expect(new ControlLineDecoder().push('\n\n{"type":"pong","id":1}\n')).toEqual(['{"type":"pong","id":1}']);
  });

  test("refuses an endless line", () => {
    const decoder = new ControlLineDecoder();
    expect(() => decoder.push(Buffer.alloc(MAX_CONTROL_LINE_BYTES + 1, 0x61))).toThrow(ControlProtocolError);
  });
});

test("socket error codes map to the failure the host reports", () => {
  expect(streamFailureOf("ECONNREFUSED")).toBe("refused");
  expect(streamFailureOf("ENOTFOUND")).toBe("not-found");
  expect(streamFailureOf("EAI_AGAIN")).toBe("not-found");
  expect(streamFailureOf("ETIMEDOUT")).toBe("timeout");
  expect(streamFailureOf("EHOSTUNREACH")).toBe("unreachable");
  expect(streamFailureOf("EPIPE")).toBe("failed");
  expect(streamFailureOf(undefined)).toBe("failed");
});

describe("session keys", () => {
  test("a fresh ed25519 pair in OpenSSH formats; the public half parses back to the same key", () => {
    const pair = createSessionKeyPair("ktctl-abc");
    expect(pair.privateKey).toStartWith("-----BEGIN OPENSSH PRIVATE KEY-----");
    expect(pair.publicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=* ktctl-abc$/);
    const parsed = parseAuthorizedKey(pair.publicKey);
    expect(parsed.type).toBe("ssh-ed25519");
    expect(fingerprint(parsed)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(createSessionKeyPair().publicKey).not.toBe(pair.publicKey);
  });

  test("every key made parses: 1500 session and host keys (the generator alone fails about 1 in 250)", () => {
    for (let i = 0; i < 750; i++) {
      expect(utils.parseKey(createSessionKeyPair().privateKey)).not.toBeInstanceOf(Error);
      expect(utils.parseKey(createHostKey())).not.toBeInstanceOf(Error);
    }
  });

  test("anything but an ed25519 public key is refused with a reason", () => {
    expect(() => parseAuthorizedKey("ssh-ed25519 garbage")).toThrow(/not an OpenSSH public key/);
    expect(() => parseAuthorizedKey(createSessionKeyPair().privateKey)).toThrow(/got a private key/);
    expect(() => parseAuthorizedKey("")).toThrow(/not an OpenSSH public key/);
  });
});

test("reconnect backoff doubles from min to max with bounded jitter", () => {
  const policy = { minMs: 250, maxMs: 5000 };
  const exact = (attempt: number) => backoffDelay(attempt, policy, () => 0.5);
  expect([0, 1, 2, 3, 4, 5, 10, 1000].map(exact)).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  expect(backoffDelay(2, policy, () => 0)).toBe(800);
  expect(backoffDelay(2, policy, () => 0.999999)).toBe(1200);
  expect(backoffDelay(0, policy, () => 0)).toBe(250); // never below min
  expect(backoffDelay(9, policy, () => 0.999999)).toBe(5000); // never above max
});

describe("shadow config", () => {
  const key = createSessionKeyPair().publicKey;

  test("defaults: tunnel role on port 2222 of every address", () => {
    const config = readShadowConfig({ KTCTL_AUTHORIZED_KEY: key }, []);
    expect(config.roles).toEqual(["tunnel"]);
    expect(config.tunnel).toEqual({ host: "0.0.0.0", port: 2222, authorizedKey: key });
    expect(config.logLevel).toBe("info");
    expect(config.podIP).toBe("");
  });

  test("the pod IP from the downward API's variable, for the welcome", () => {
    expect(readShadowConfig({ KTCTL_AUTHORIZED_KEY: key, KTCTL_POD_IP: "10.244.0.9" }, []).podIP).toBe("10.244.0.9");
  });

  test("roles from env or --roles; tunnel is always first and never doubled", () => {
    expect(readShadowConfig({ KTCTL_AUTHORIZED_KEY: key, KTCTL_SHADOW_ROLES: "dns" }, []).roles).toEqual(["tunnel", "dns"]);
    expect(readShadowConfig({ KTCTL_AUTHORIZED_KEY: key, KTCTL_SHADOW_ROLES: "dns" }, ["--roles", "router,tunnel"]).roles).toEqual([
      "tunnel",
      "router",
    ]);
    expect(readShadowConfig({ KTCTL_AUTHORIZED_KEY: key }, ["--roles=dns, router"]).roles).toEqual(["tunnel", "dns", "router"]);
  });

  test.each([
    ["no key", {}, /KTCTL_AUTHORIZED_KEY must hold/],
    ["an RSA key", { KTCTL_AUTHORIZED_KEY: "ssh-rsa AAAA" }, /KTCTL_AUTHORIZED_KEY must hold/],
    ["an unknown role", { KTCTL_AUTHORIZED_KEY: key, KTCTL_SHADOW_ROLES: "tunnel,proxy" }, /unknown shadow role "proxy"/],
    ["a port that is no number", { KTCTL_AUTHORIZED_KEY: key, KTCTL_TUNNEL_PORT: "http" }, /KTCTL_TUNNEL_PORT=http/],
    ["a port out of range", { KTCTL_AUTHORIZED_KEY: key, KTCTL_TUNNEL_PORT: "70000" }, /KTCTL_TUNNEL_PORT=70000/],
    ["an unknown log level", { KTCTL_AUTHORIZED_KEY: key, KTCTL_LOG_LEVEL: "loud" }, /KTCTL_LOG_LEVEL=loud/],
  ])("refuses %s", (_, env, error) => {
    expect(() => readShadowConfig(env as Record<string, string>, [])).toThrow(error);
  });
});

test("shadow log: one line per event, values quoted only when needed, below-level events dropped", () => {
  const lines: string[] = [];
  const log = createShadowLog("info", (line) => lines.push(line));
  log.debug("hidden");
  log.info("conn.open", { conn: 3, from: "10.0.0.1:5555", note: "two words", none: undefined });
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z info conn\.open conn=3 from=10\.0\.0\.1:5555 note="two words"\n$/);
});

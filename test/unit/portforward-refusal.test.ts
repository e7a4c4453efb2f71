// How a port-forward upgrade that offers only SPDY (the forward's warm-up) reads a refusal, against
// a real HTTP server on loopback answering as the parts of a cluster do: a kubelet whose websocket
// handshake knows none of the offered protocols answers 403 with no body (or 400 naming the
// protocols), the API server's own refusals (RBAC) carry a JSON Status.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { openIdlePortForwardSession } from "../../core/kube/portforward.ts";
import type { Transport } from "../../core/kube/transport.ts";
import { KtctlError } from "../../core/errors.ts";

const RBAC_STATUS = JSON.stringify({
  kind: "Status",
  apiVersion: "v1",
  status: "Failure",
  message: 'pods "p" is forbidden: User "dev" cannot create resource "pods/portforward" in API group "" in the namespace "ns"',
  reason: "Forbidden",
  details: { name: "p", kind: "pods" },
  code: 403,
});

let server: Server<unknown>;
let transport: Transport;

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(request) {
      const pod = new URL(request.url).pathname.split("/")[6];
      if (pod === "kubelet-403") return new Response(null, { status: 403 });
      if (pod === "kubelet-400") return new Response("requested protocol(s) are not supported: [SPDY/3.1+portforward.k8s.io]; supports [v4.channel.k8s.io]", { status: 400 });
      return new Response(RBAC_STATUS, { status: 403, headers: { "content-type": "application/json" } });
    },
  });
  transport = { server: `http://127.0.0.1:${server.port}`, credentials: async () => ({ headers: {}, tls: {} }) } as unknown as Transport;
});

afterAll(() => server?.stop(true));

describe("a warm-up's upgrade, refused", () => {
  test("403 with no body (a kubelet's handshake without the protocol): the server speaks no SPDY", async () => {
    expect(await openIdlePortForwardSession(transport, "ns", "kubelet-403", 80)).toBe("no-spdy");
  });

  test("400 naming the protocols: the server speaks no SPDY", async () => {
    expect(await openIdlePortForwardSession(transport, "ns", "kubelet-400", 80)).toBe("no-spdy");
  });

  test("403 with the API server's Status (RBAC): an RBAC refusal, not a protocol one", async () => {
    const error = await openIdlePortForwardSession(transport, "ns", "rbac", 80).then(
      () => undefined,
      (e) => e,
    );
    expect(error).toBeInstanceOf(KtctlError);
    expect((error as KtctlError).message).toMatch(/forbidden/);
  });
});

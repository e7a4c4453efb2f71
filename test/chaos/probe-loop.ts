// A continuous probe for the fault suite: one request per target every ~100 ms, each a fresh curl
// (a new connection and, for names, a fresh lookup through the resolver of the network namespace it
// runs in), printed as one JSON line per answer: {"start":<epoch ms>,"end":<epoch ms>,"target":"...","ok":true|false,"answer":"..."}.
// Started inside the laptop namespace (ip netns exec) or inside a pod's (nsenter -n) by faults-harness.ts.
//   bun test/chaos/probe-loop.ts '[{"name":"exchange","url":"http://10.96.1.2/","expect":"^laptop$"}]'

interface Target {
  name: string;
  url: string;
  headers?: Record<string, string>;
  /** The answer (the echo server's "pod" field) must match this pattern. */
  expect: string;
}

const INTERVAL_MS = 100;
const TIMEOUT_SECONDS = "1";

async function once(target: Target, expect: RegExp): Promise<{ ok: boolean; answer: string }> {
  const headerFlags = Object.entries(target.headers ?? {}).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const proc = Bun.spawn(["curl", "-sS", "-m", TIMEOUT_SECONDS, ...headerFlags, target.url], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) return { ok: false, answer: `curl ${code}: ${err.trim()}` };
  let answer: string;
  try {
    answer = String(JSON.parse(out).pod);
  } catch {
    return { ok: false, answer: `not JSON: ${out.slice(0, 80)}` };
  }
  return { ok: expect.test(answer), answer };
}

async function loop(target: Target): Promise<never> {
  const expect = new RegExp(target.expect);
  for (;;) {
    const started = Date.now();
    const { ok, answer } = await once(target, expect);
    process.stdout.write(`${JSON.stringify({ start: started, end: Date.now(), target: target.name, ok, answer })}\n`);
    await Bun.sleep(Math.max(0, INTERVAL_MS - (Date.now() - started)));
  }
}

const targets = JSON.parse(process.argv[2] ?? "[]") as Target[];
if (!targets.length) {
  console.error("usage: probe-loop.ts '<JSON list of {name,url,headers?,expect}>'");
  process.exit(2);
}
await Promise.all(targets.map(loop));
export {};

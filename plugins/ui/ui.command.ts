// `ktctl ui [--port N] [--no-open]`: a local page that shows, live, what this laptop's sessions
// carry: the sessions themselves, the traffic that reaches the laptop, mesh routes, connect's names
// and any plugin's panel. It listens on 127.0.0.1 only, behind a random token in its URL.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { CommandFactory, Kube, PluginApi } from "../../core/plugin-api.ts";
import { createUiApp } from "./server.ts";
import { UiState } from "./state.ts";

function openBrowser(url: string, logger: PluginApi["logger"]): void {
  const [command, ...args] =
    process.platform === "darwin" ? ["open", url] : process.platform === "win32" ? ["cmd", "/c", "start", "", url] : ["xdg-open", url];
  try {
    const child = spawn(command!, args, { stdio: "ignore", detached: true });
    child.on("error", () => logger.info("could not open a browser; open the URL above yourself"));
    child.unref();
  } catch {
    logger.info("could not open a browser; open the URL above yourself");
  }
}

function listen(api: PluginApi, port: number, fetch: (request: Request) => Response | Promise<Response>) {
  try {
    // idleTimeout 0: the live stream is quiet for long stretches and must not be cut.
    return Bun.serve({ hostname: "127.0.0.1", port, fetch, idleTimeout: 0 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE" || /in use/i.test(api.errors.text(error))) {
      throw new api.errors.KtctlError(`127.0.0.1:${port} is already in use`, api.errors.ExitCode.portInUse, "pick another with --port, or leave it out for a free one");
    }
    throw error;
  }
}

const ui: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "ui", description: "A local web page showing this laptop's sessions and the traffic that reaches it, live" },
    args: {
      ...api.globalArgs,
      port: { type: "string", description: "Port on 127.0.0.1 (default: a free one)", default: "0" },
      open: { type: "boolean", description: "Open the page in the browser (--no-open: only print its URL)", default: true },
    },
    async run({ args }) {
      const port = Number(args.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new api.errors.KtctlError(`invalid --port "${args.port}": a number from 1 to 65535`, api.errors.ExitCode.usage);
      }
      const global = api.globalOptions(args);
      let kube: Kube | undefined;
      try {
        kube = await api.kube(global);
      } catch (error) {
        api.logger.warn(`no cluster (${api.errors.text(error)}): showing this laptop's sessions from their journals only`);
      }

      const hub = await api.ui.openHub();
      const token = randomBytes(24).toString("base64url");
      const state = new UiState(api, hub, kube);
      let endNow!: () => void;
      const ending = new Promise<void>((resolve) => (endNow = resolve));
      let server: ReturnType<typeof Bun.serve>;
      try {
        const app = createUiApp({ api, state, token, port: () => server.port!, kube, ending });
        server = listen(api, port, app.fetch);
      } catch (error) {
        await hub.close();
        throw error;
      }
      state.start();
      const url = `http://127.0.0.1:${server.port}/?token=${token}`;
      api.logger.success(`ktctl ui: ${url}`);
      api.logger.info("Only this URL (with its token) opens the page. Press Ctrl-C to stop.");
      if (args.open) openBrowser(url, api.logger);

      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        for (const name of ["SIGINT", "SIGTERM", "SIGHUP"] as NodeJS.Signals[]) process.once(name, () => resolve(name));
      });
      // Open pages hear it from us, so they say "ended" instead of retrying.
      state.farewell(`stopped by ${signal}`);
      endNow();
      state.stop();
      await hub.close();
      await server.stop();
      api.logger.info("ktctl ui stopped");
    },
  });

export default ui;

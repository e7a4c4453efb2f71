// `ktctl connect [-n NS]`: every service of the namespace by name, ClusterIP and pod IP from this
// machine, other namespaces by name.namespace, until Ctrl-C. The order matters for trust:
//   1. read the cluster (services, ranges) and start the local servers: nothing has changed yet but
//      the session's own records (its Lease, journal and watchdog), made meanwhile because they take
//      a process start and round trips, and removed by closing it if a refusal ends the connect here;
//   2. the shadow and the laptop changes, each a journaled step with its undo;
//   3. wait; the session's end (signal, lost lease, shadow gone for good) undoes everything.

import type { CommandFactory, OpenStream, Session, Shadow, ShadowOptions } from "../../core/plugin-api.ts";
import { cidrContains, formatCidr, parseIPv4 } from "./net/cidr.ts";
import { apiServerAddresses, captureRanges, discoverClusterRanges } from "./net/cluster-cidrs.ts";
import { ClusterIndex } from "./net/cluster-index.ts";
import { PodPaths } from "./net/pod-paths.ts";
import { countConnections, publishConnectPanel } from "./ui-panel.ts";
import { formatPlan, PlanExecutor } from "./net/driver.ts";
import { selectDriver } from "./net/drivers/index.ts";
import { startLaptopSide } from "./laptop.ts";
import { DEFAULT_PROXY_PORT, parseConnectOptions } from "./options.ts";

/** Every --shareShadow connect of a user to a namespace shares the one shadow made for this key. */
const SHARE_KEY = "connect";

/** For --debug: how far into the process (its start included) a phase of the start ended. */
const sinceStart = () => `${Math.round(performance.now())} ms`;

const connect: CommandFactory = (api) =>
  api.defineCommand({
    meta: {
      name: "connect",
      description: "Reach the namespace's services by name, ClusterIP and pod IP from this machine (until Ctrl-C)",
    },
    args: {
      ...api.globalArgs,
      mode: { type: "string", description: "system (kernel capture + local DNS; Linux root default), hosts (hosts file), proxy (SOCKS5/HTTP, no root; default otherwise)" },
      dnsMode: { type: "string", default: "auto", description: "system mode DNS: auto, resolvconf, resolved, hosts, hosts:NS1,NS2 (also these namespaces), none" },
      proxyPort: { type: "string", default: String(DEFAULT_PROXY_PORT), description: "Proxy mode: loopback port for SOCKS5 and HTTP (0: any free port)" },
      disablePodIp: { type: "boolean", default: false, description: "Do not capture pod IPs (services only)" },
      excludeIps: { type: "string", description: "Addresses or ranges never captured, comma-separated (e.g. a VPN's range)" },
      includeIps: { type: "string", description: "Extra addresses or ranges to capture, comma-separated" },
      clusterDomain: { type: "string", default: "cluster.local", description: "The cluster's DNS domain" },
      shareShadow: { type: "boolean", default: false, description: "Share one shadow pod among this user's connects to the namespace (the last to exit removes it)" },
      via: {
        type: "string",
        valueHint: "shadow|pod",
        default: "shadow",
        description:
          "How connections reach the cluster: shadow (through a shadow pod, as a pod of the namespace would) or pod (straight through the pod's port-forward where ktctl knows the pod, as kubefwd does; the shadow only for the rest, started when first needed)",
      },
      dryRun: { type: "boolean", default: false, description: "Print what would change on this machine, change nothing" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const started = performance.now();
      const isRoot = process.getuid?.() === 0;
      const options = parseConnectOptions(args as Record<string, unknown>, api.errors, { platform: process.platform, isRoot });
      const global = api.globalOptions(args as Record<string, unknown>);
      const kube = await api.kube(global);
      const namespace = kube.namespace; // settled once, from -n or the context
      const context = { namespace, domain: options.clusterDomain };
      const driver = selectDriver({ mode: options.mode, platform: process.platform, dnsMode: options.dnsMode }, api);

      // --- 1. read the cluster (the session starts meanwhile; a refusal here abandons it) ----------
      const sessionStart = options.dryRun ? undefined : api.beginSession({ kube, mode: "connect", target: `namespace/${namespace}`, global });

      // Drivers that write names or mappings up front need every namespace; DNS and the proxy ask as they go.
      const upFront = driver.name !== "linux-system" && driver.name !== "proxy";
      const index = new ClusterIndex({
        kube,
        namespaces: [...new Set([namespace, ...options.extraNamespaces])],
        allNamespaces: upFront,
        logger: api.logger,
      });
      const [, ranges, apiServerIps] = await Promise.all([
        index.start(),
        discoverClusterRanges(kube, namespace, { pods: !options.disablePodIp, logger: api.logger }),
        apiServerAddresses(kube.server),
      ]).catch(async (error) => {
        index.close();
        await sessionStart?.abandon(error);
        throw error;
      });
      api.logger.debug(`start: cluster read at ${sinceStart()}`);
      const capture = captureRanges({ ranges, disablePodIp: options.disablePodIp, include: options.include, exclude: options.exclude, apiServerIps });
      if (!capture.capture.length && options.mode !== "proxy") {
        index.close();
        const error = new KtctlError(
          "the cluster's service range could not be read (no ServiceCIDR access, and the API server named no range)",
          ExitCode.failure,
          "pass the ranges with --includeIps (e.g. 10.96.0.0/12), or use --mode proxy",
        );
        await sessionStart?.abandon(error);
        throw error;
      }
      api.logger.debug(
        `ranges: services ${ranges.serviceCidrs.map(formatCidr).join(",") || "-"} (${ranges.serviceSource}), pods ${ranges.podCidrs.map(formatCidr).join(",") || "-"} (${ranges.podSource})`,
      );
      const apiInside = apiServerIps.filter((ip) => capture.capture.some((c) => cidrContains(c, parseIPv4(ip)!)));
      if (apiInside.length) api.logger.info(`the API server ${apiInside.join(", ")} lies in a captured range; it is left out of the capture`);

      // The tunnel exists only once the session and shadow do; connections made earlier wait for it.
      // With --via pod a connection goes straight to its pod where the index names one, and the
      // shadow starts only for the first connection that no pod can take.
      let sessionStarted!: (session: Session) => void;
      const sessionReady = new Promise<Session>((resolve) => (sessionStarted = resolve));
      let sessionEnding = false;
      const shadowOptions: ShadowOptions = { role: "connect", ...(options.shareShadow ? { share: { key: SHARE_KEY } } : {}) };
      let shadowStart: Promise<Shadow> | undefined;
      /**
       * `why` is said when the shadow starts for a reason (--via pod); the default connect starts it
       * in step 2. A start on demand that fails is said once: the pods stay reachable, so connect
       * goes on. One in step 2 that fails ends the connect with its own error.
       */
      const shadow = (why?: string, onDemand = false): Promise<Shadow> => {
        if (!shadowStart) {
          shadowStart = sessionReady.then((session) => {
            // A connection that comes while the session ends gets no new pod to be removed again.
            if (sessionEnding) throw new KtctlError("connect is ending", ExitCode.interrupted);
            if (why) api.logger.info(`Starting a shadow pod: ${why}`);
            return api.startShadow(session, shadowOptions);
          });
          shadowStart.catch((error) => {
            if (onDemand && !sessionEnding) api.logger.warn(`the shadow pod could not start (${api.errors.text(error)}); connections that no pod can take fail until connect starts again`);
          });
        }
        return shadowStart;
      };
      const pods = options.via === "pod" ? kube.podStreams() : undefined;
      const podPaths = new PodPaths(index, context);
      const throughShadow: OpenStream = async (host, port) =>
        (await (pods ? shadow(`a connection to ${host}:${port} needs it (no pod to go to straight)`, true) : shadow())).tunnel.openStream(host, port);
      const straightOrShadow: OpenStream = async (host, port) => {
        const path = pods!.usable ? await podPaths.of(host, port) : undefined;
        // undefined: the API server cannot carry these streams straight (v4 only); the shadow can.
        // A pod whose connection cannot open (deleted before the index heard of it): the cluster
        // knows where the address goes now.
        const stream = path && (await pods!.open(path.pod, path.port).catch((error) => void api.logger.debug(`pod ${path.pod.name}: ${api.errors.text(error)}`)));
        if (!stream) return throughShadow(host, port);
        api.logger.debug(`connection to ${host}:${port}: straight to pod ${path.pod.name}:${path.port}`);
        return stream;
      };
      const counter = countConnections(pods ? straightOrShadow : throughShadow);
      const cluster: OpenStream = counter.open;

      // --via pod: one pod's port-forward connection opens now (offering SPDY only, so nothing in
      // the pod is reached), which tells before the first connection whether streams can go
      // straight to the pods, and saves that pod's first connection the API server's upgrade.
      const firstPod = pods ? podPaths.anyPod(index.services(namespace)) : undefined;
      const warmed = firstPod ? pods!.warm(firstPod.pod, firstPod.port) : undefined;

      const laptop = await startLaptopSide({ api, driver, options, sessionId: "pending", context, index, capture, cluster, logger: api.logger }).catch(async (error) => {
        pods?.close();
        index.close();
        await sessionStart?.abandon(error);
        throw error;
      });
      api.logger.debug(`start: laptop servers up at ${sinceStart()}`);
      const release = async () => {
        await laptop.close();
        pods?.close();
        index.close();
      };

      if (options.dryRun) {
        // The plan as root would apply it, so it can be read before deciding to use sudo.
        const plan = driver.prepare({ ...laptop.spec, sessionId: "<session>" }, { ...laptop.facts, isRoot: true });
        process.stdout.write(`${formatPlan(plan)}\n`);
        if (!laptop.facts.isRoot && plan.actions.length) process.stdout.write("note: applying this plan needs root (administrator on Windows)\n");
        await release();
        return;
      }
      // Refusals (not root, no nat tool) come now, before the cluster or the laptop is changed.
      try {
        driver.prepare(laptop.spec, laptop.facts);
      } catch (error) {
        await release();
        await sessionStart?.abandon(error);
        throw error;
      }

      // --- 2. the shadow, the laptop changes ------------------------------------------------------
      let session;
      try {
        session = await sessionStart!.session;
      } catch (error) {
        await release();
        throw error;
      }
      api.logger.debug(`start: session ${session.id} recorded, its watchdog started, at ${sinceStart()}`);
      const executor = new PlanExecutor(session, api);
      let spec = { ...laptop.spec, sessionId: session.id };
      void session.ended.then(() => (sessionEnding = true));
      sessionStarted(session);
      try {
        // The plan is made now, with the session's id in every name, and checked before anything runs.
        const plan = driver.prepare(spec, laptop.facts);
        await Promise.all([pods ? undefined : shadow(), executor.apply(plan.actions)]);
        // Bounded by warm() itself: a warm-up that hangs leaves the choice to the first connection.
        await warmed;
        // Every connection needs the shadow after all: it starts now, as connect's default does.
        if (pods && !pods.usable) await shadow("the API server's port-forward cannot carry TCP's half-close to the pods (v4 only)");
        // The proxy's notes are its settings, printed below once it is ready.
        if (!laptop.proxy) for (const note of plan.notes) api.logger.info(note);
        if (!pods) {
          const { podName, podIP } = await shadow();
          api.logger.debug(`start: shadow ${podName} (${podIP}) reached and laptop changed at ${sinceStart()}`);
        } else api.logger.debug(`start: laptop changed at ${sinceStart()} (--via pod: ${pods.usable ? "no shadow yet" : "shadow up front"})`);
      } catch (error) {
        await release();
        await session.close(`connect failed: ${api.errors.text(error)}`).catch((closeError) => api.logger.error(api.errors.text(closeError)));
        throw error;
      }

      // Names and mappings follow the cluster: a refresh after each burst of index changes.
      let refreshing: Promise<void> | undefined;
      let again = false;
      const refresh = () => {
        if (refreshing) {
          again = true;
          return;
        }
        refreshing = (async () => {
          do {
            again = false;
            spec = { ...(await laptop.currentSpec()), sessionId: session.id };
            await executor.apply(driver.refresh(spec, laptop.facts));
          } while (again);
        })()
          .catch((error) => api.logger.warn(`could not bring the laptop up to date: ${api.errors.text(error)}`))
          .finally(() => (refreshing = undefined));
      };
      index.onChange(() => refresh());
      publishConnectPanel(api, { session, index, domain: options.clusterDomain, counter, proxy: laptop.proxy ? `${laptop.proxy.host}:${laptop.proxy.port}` : undefined });

      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      api.logger.success(
        `Connected to namespace ${namespace} in ${seconds}s (session ${session.id}, ${driver.name}${pods?.usable ? ", straight to the pods" : ""}; capturing ${capture.capture.map(formatCidr).join(", ") || "nothing"})`,
      );
      if (laptop.proxy) {
        api.logger.info(`SOCKS5 and HTTP proxy on ${laptop.proxy.host}:${laptop.proxy.port}. To use it:`);
        for (const line of api.proxy.instructions(laptop.proxy.host, laptop.proxy.port)) process.stdout.write(`  ${line}\n`);
      }
      api.logger.info("Press Ctrl-C to stop; everything ktctl changed is restored on exit.");

      // --- 3. wait for the end -----------------------------------------------------------------
      const reason = await session.ended;
      api.logger.debug(`connect ending: ${reason}; ${JSON.stringify(laptop.stats())}`);
      await refreshing;
      await release();
      await session.close(reason);
    },
  });

export default connect;

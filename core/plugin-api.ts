// The contract between the host and every plugin, built-in or a team's own.
// A plugin loaded at run time by the compiled binary cannot import the host's packages, so
// everything it needs arrives in `PluginApi`. Plugins import this file with `import type` only.

import type { ArgsDef, CommandDef } from "citty";
import type { ConsolaInstance } from "consola";
import type { Duplex } from "node:stream";
import type { CoreV1Api, AppsV1Api, CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";
import type { KtctlError, ExitCode } from "./errors.ts";
import type { CleanOptions, CleanPlan, CleanResult } from "./session/clean.ts";
import type { SessionInfo, StatusOptions } from "./session/status.ts";
import type { UndoKind } from "./session/undo.ts";

export type { CleanOptions, CleanPlan, CleanResult, SessionInfo, StatusOptions, UndoKind };

export const PLUGIN_API_VERSION = 1;

/** What a plugin module exports as default. */
export interface KtctlPlugin {
  name: string;
  /** Must equal the host's PLUGIN_API_VERSION, or the plugin is refused with a clear message. */
  apiVersion: number;
  description?: string;
  /** Command name -> lazy factory; the module is imported only when the command runs or shows help. */
  commands?: Record<string, () => Promise<CommandFactory> | CommandFactory>;
  setup?(api: PluginApi): void | Promise<void>;
}

/** A command module's default export: builds its citty command from the host API. */
export type CommandFactory = (api: PluginApi) => CommandDef<any> | Promise<CommandDef<any>>;

/** Global flags every command shares (kubectl-style), parsed values. */
export interface GlobalOptions {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  debug?: boolean;
  image?: string;
  imagePullSecret?: string;
  nodeSelector?: string;
  serviceAccount?: string;
  podQuota?: string;
  withLabel?: string;
  withAnnotation?: string;
  podCreationTimeout?: number;
  portForwardTimeout?: number;
}

/** Kube access resolved exactly as kubectl resolves it. */
export interface Kube {
  kc: KubeConfig;
  context: string;
  namespace: string;
  server: string;
  core: CoreV1Api;
  apps: AppsV1Api;
  coordination: CoordinationV1Api;
  /** Raw JSON request against the API server (paths like /api/v1/namespaces/x/pods). */
  request<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
  /** Streams watch events until `signal` aborts; resumes from the last resourceVersion on drop. */
  watch(path: string, query: Record<string, string>, onEvent: (type: string, obj: any) => void, signal: AbortSignal): Promise<void>;
  /** One byte stream to `port` of a pod through the API server (port-forward). */
  portForward(namespace: string, pod: string, port: number): Promise<Duplex>;
}

/** One undoable change. `undo` must be idempotent: it may run from the watchdog or `clean` too. */
export interface StepSpec {
  /** Machine-readable kind; the undo runner for this kind must be registered (see UndoKind). */
  kind: string;
  /** Human description for plans and logs, e.g. "point service demo/echo at the shadow". */
  describe: string;
  /** Everything needed to undo, JSON-serialisable: it is written to the journals before `apply`. */
  undo: Record<string, unknown>;
}

export interface Session {
  id: string;
  owner: string;
  mode: string;
  namespace: string;
  kube: Kube;
  /** The global flags the session was started with (image, quotas, timeouts, ...). */
  global: GlobalOptions;
  /** Labels every object this session creates must carry. */
  labels: Record<string, string>;
  /** Journal the step, then apply it; on failure of apply the step is undone at once. */
  step<T>(spec: StepSpec, apply: () => Promise<T>): Promise<T>;
  /** Resolves when the session is asked to end (signal, shadow gone for good, explicit close). */
  readonly ended: Promise<string>;
  /** Undo every step last-first and remove the session's records. */
  close(reason?: string): Promise<void>;
}

export interface SessionOptions {
  mode: string;
  /** What the session acts on, for `status` (e.g. "svc/echo"). */
  target?: string;
  global: GlobalOptions;
  /**
   * false: the plugin handles SIGINT/SIGTERM/SIGHUP itself (e.g. exchange hands traffic back before
   * the undo runs) and must call close(). Default true: the session closes itself on those signals.
   */
  handleSignals?: boolean;
  /** Lease duration; default 30 s, or KTCTL_SESSION_LEASE_SECONDS from the environment. */
  leaseDurationSeconds?: number;
}

/** A port-forwarded, multiplexed, authenticated link to this session's shadow. */
export interface Tunnel {
  /** A new stream to host:port as seen from inside the cluster. */
  openStream(host: string, port: number): Promise<Duplex>;
  /** The shadow listens on remotePort and every connection comes to localHost:localPort. */
  addRemoteListener(remotePort: number, localHost: string, localPort: number): Promise<void>;
  removeRemoteListener(remotePort: number): Promise<void>;
  onStateChange(listener: (state: "connected" | "reconnecting" | "closed", detail?: string) => void): void;
  close(): Promise<void>;
}

export interface ShadowOptions {
  /** Name suffix that explains the role, e.g. "forward", "exchange-echo". */
  role: string;
  /** Extra labels (e.g. the exchanged workload's labels in scale mode). */
  labels?: Record<string, string>;
  /** Ports the shadow pod declares (so a Service can target them). */
  ports?: { name?: string; port: number }[];
  /** Shadow roles to enable besides the tunnel, e.g. ["dns"]. */
  roles?: string[];
  /**
   * Share one shadow among this owner's sessions that ask with the same key (and the same pod
   * options) in the namespace: the first creates it, the others join, the last to leave deletes it.
   * Its key pair is kept in ~/.ktctl/shared/<key>.key so other processes can authenticate. Only for
   * outbound use (connect): remote listeners on a shared shadow would collide.
   */
  share?: { key: string };
}

export interface Shadow {
  podName: string;
  podIP: string;
  tunnel: Tunnel;
}

export type TargetKind = "service" | "deployment" | "pod";

/** A workload target as kubectl spells it: "echo" and "svc/echo" are services. */
export interface TargetRef {
  kind: TargetKind;
  name: string;
}

export interface LocalForwardOptions {
  tunnel: Tunnel;
  localPort: number;
  /** Default 127.0.0.1. */
  localHost?: string;
  /** Where each new connection goes; asked per connection so targets can move (new pods). */
  target(): Promise<{ host: string; port: number }>;
  onError?(error: unknown): void;
}

export interface LocalForward {
  host: string;
  port: number;
  connections(): number;
  close(): Promise<void>;
}

/** Sessions as `status` and `clean` see them (leases in the cluster, journals on this host). */
export interface SessionsApi {
  /** Sessions in the kube's namespace (or options.namespace, or all), plus this host's journals. */
  list(kube: Kube | undefined, options?: StatusOptions): Promise<SessionInfo[]>;
  /** What `clean` would do; without kube (or with localOnly) only this host's dead sessions. */
  planClean(kube: Kube | undefined, options?: CleanOptions): Promise<CleanPlan>;
  executePlan(plan: CleanPlan, kube?: Kube): Promise<CleanResult>;
  renderPlan(plan: CleanPlan): string;
  /** Adds an undo kind for this plugin's steps (prefer the core kinds: they also run where the plugin is not loaded). */
  registerUndoKind(kind: string, definition: UndoKind): void;
}

export interface PluginApi {
  version: string;
  apiVersion: number;
  defineCommand: <T extends ArgsDef>(def: CommandDef<T>) => CommandDef<T>;
  /** Global args every command should spread into its own args. */
  globalArgs: ArgsDef;
  logger: ConsolaInstance;
  errors: { KtctlError: typeof KtctlError; ExitCode: typeof ExitCode };
  /** Effective config: flag defaults and plugin settings from ~/.ktctl/config.yaml and .ktctl.yaml. */
  config: { get<T = unknown>(key: string): T | undefined; all(): Record<string, unknown> };
  /** Parses the global flags out of a command's parsed args. */
  globalOptions(args: Record<string, unknown>): GlobalOptions;
  kube(global: GlobalOptions): Promise<Kube>;
  startSession(options: SessionOptions): Promise<Session>;
  sessions: SessionsApi;
  /** Starts a shadow pod for the session and opens its tunnel. */
  startShadow(session: Session, options: ShadowOptions): Promise<Shadow>;
  /** A loopback listener whose connections are carried through the tunnel to a cluster target. */
  forwardLocal(options: LocalForwardOptions): Promise<LocalForward>;
  /** Parses "NAME", "svc/NAME", "deployment/NAME", "pod/NAME" with clear errors. */
  parseTarget(text: string): TargetRef;
  /** True when something on this machine accepts TCP connections on host:port. */
  isLocalPortListening(port: number, host?: string): Promise<boolean>;
  /** Parses "[LOCAL:]REMOTE" style port lists with clear errors. */
  parsePorts(spec: string): { local: number; remote: number }[];
}

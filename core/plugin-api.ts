// The contract between the host and every plugin, built-in or a team's own.
// A plugin loaded at run time by the compiled binary cannot import the host's packages, so
// everything it needs arrives in `PluginApi`. Plugins import this file with `import type` only.

import type { ArgsDef, CommandDef } from "citty";
import type { ConsolaInstance } from "consola";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { CoreV1Api, AppsV1Api, CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";

/**
 * The contract's version. A plugin declares the one it was written for in `apiVersion`; see
 * docs/plugins.md for what changes it. (The host reads this constant; plugins only import types.)
 */
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

/** The exit codes ktctl uses, by name (docs/troubleshooting.md lists them). */
export interface ExitCodes {
  ok: 0;
  failure: 1;
  usage: 2;
  config: 3;
  kubeconfig: 4;
  notFound: 5;
  forbidden: 6;
  portInUse: 7;
  image: 8;
  timeout: 9;
  conflict: 10;
  plugin: 11;
  unreachable: 12;
  interrupted: 130;
}

/** The one error type a user sees as one line (plus its hint) and an exit code. */
export interface KtctlErrorInstance extends Error {
  readonly exitCode: number;
  readonly hint?: string;
}
export type KtctlErrorClass = new (message: string, exitCode?: number, hint?: string) => KtctlErrorInstance;

export interface ErrorsApi {
  KtctlError: KtctlErrorClass;
  ExitCode: ExitCodes;
  /** The HTTP status a failed API request carries (404, 409, ...), if any. */
  httpStatus(error: unknown): number | undefined;
  /** The message of anything thrown, as one string. */
  text(error: unknown): string;
}

/** Which object: what step builders record and `kube.pathOf` turns into a REST path. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** An object as the API returns it, as far as references need it. */
export interface KubeObjectHead {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
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
  /** GET of one object; undefined when it does not exist (404), other failures throw. */
  get<T = any>(path: string): Promise<T | undefined>;
  /** JSON merge patch (RFC 7386) of the object at `path`. */
  mergePatch<T = any>(path: string, patch: unknown): Promise<T>;
  /** The REST path of an object (kinds ktctl does not know are looked up through discovery). */
  pathOf(ref: ObjectRef): Promise<string>;
}

/**
 * The one naming and labelling scheme. `clean`, `status` and every mode find what a session made or
 * changed by these labels alone, so a plugin uses these and invents no keys of its own under the
 * domain.
 */
export interface Scheme {
  /** "ktctl.io": every label and annotation key of ktctl starts with it. */
  domain: string;
  labels: { managedBy: string; session: string; role: string; owner: string; share: string };
  /** The value of labels.managedBy on everything ktctl created. */
  managedByValue: string;
  /** undo: the step that restores an object a session CHANGED; sharers: ids on a shared object. */
  annotations: { undo: string; sharers: string };
  /** Any text as a valid label value ("alice@laptop" -> "alice-laptop"); long values end in a hash. */
  labelSafe(text: string): string;
  /** Lowercase DNS-label form of a word: "Exchange Echo" -> "exchange-echo". */
  dnsSafe(text: string): string;
  /** The name of an object a session creates: `ktctl-<id>-<role>`, at most 63 characters. */
  objectName(sessionId: string, role: string): string;
  /** The labels that select exactly one session's shadow pod of one role (its replacements too). */
  shadowSelector(sessionId: string, role: string): Record<string, string>;
  /** The session that marked (created or changed) an object, if any. */
  markedBy(object: unknown): string | undefined;
  /** True for objects a session created (as opposed to changed). */
  isCreatedByKtctl(object: unknown): boolean;
  /** The undo recorded on a changed object by `changeMarks`, if any. */
  undoMarkOf(object: unknown): { kind: string; undo: Record<string, unknown> } | undefined;
  /** Labels and annotations to merge into the patch that changes an object someone else owns. */
  changeMarks(sessionId: string, undo: { kind: string; undo: Record<string, unknown> }): ChangeMarks;
}

export interface ChangeMarks {
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/**
 * Step builders: each records the state BEFORE a change (which is what makes undo exact) with an
 * undo kind of the core, so the watchdog and `ktctl clean` can undo it even where the plugin that
 * made it is not loaded. Pass the result to `session.step(spec, apply)`.
 */
export interface StepBuilders {
  /** The step for CREATING an object: its undo deletes it (only while it carries the session label). */
  deleteObject(ref: ObjectRef, describe?: string): StepSpec;
  /**
   * The step for changing fields of an existing object, given the object as read before the change
   * and the field paths the change touches (e.g. [["spec","selector"]]). Merge `marks` into the
   * change's own patch, so the object itself says how to restore it.
   */
  patchObject(sessionId: string, before: KubeObjectHead, paths: string[][], describe: string): { spec: StepSpec; marks: ChangeMarks };
  /** The step for scaling a workload, given the workload as read before scaling. */
  scale(sessionId: string, before: KubeObjectHead & { spec?: { replicas?: number } }, describe: string): { spec: StepSpec; marks: ChangeMarks };
  /** The step for changing a laptop file: captures its bytes, mode and owner now (or its absence). */
  restoreFile(path: string, describe?: string): Promise<StepSpec>;
  /** The step whose undo runs laptop commands; `tolerate`: stderr texts that mean "already undone". */
  run(commands: string[][], describe: string, tolerate?: string[]): StepSpec;
  /** The reference of an object as the API returns it. */
  refOf(object: KubeObjectHead): ObjectRef;
}

// ---------------------------------------------------------------------------------------------
// Undo kinds, clean plans and session listings (what `sessions` answers)

export interface UndoContext {
  /** Present when the runner may touch the cluster; laptop-only runs (`clean --localOnly`) have none. */
  kube?: Kube;
  /** The session the step belongs to: runners only undo what carries this session's marks. */
  sessionId: string;
  logger?: Pick<ConsolaInstance, "debug" | "info" | "warn">;
}

export type UndoRunner = (ctx: UndoContext, data: Record<string, unknown>) => Promise<void>;

/** Where a kind acts: cluster undos can run from any machine, laptop undos only on the session's host. */
export type UndoWhere = "cluster" | "laptop";

export interface UndoKind {
  where: UndoWhere;
  run: UndoRunner;
}

export interface CleanOptions {
  /** Namespace to clean; the kube's namespace by default. */
  namespace?: string;
  allNamespaces?: boolean;
  /** Only this laptop's leftovers (local journals of dead processes); the cluster is not touched. */
  localOnly?: boolean;
}

export interface StepRef {
  seq?: number;
  kind: string;
  describe: string;
  undo: Record<string, unknown>;
}

export type CleanAction =
  | { type: "undo"; describe: string; step: StepRef; where: UndoWhere; source: "journal" | "object" }
  | { type: "delete-lease"; describe: string; namespace: string; name: string }
  | { type: "remove-local-journal"; describe: string; sessionId: string };

export interface CleanEntry {
  sessionId: string;
  namespace?: string;
  owner?: string;
  mode?: string;
  target?: string;
  host?: string;
  /** Why this session may be cleaned. */
  why: string;
  /** An expired Lease is claimed (compare-and-swap on this version) before anything is undone. */
  claim?: { namespace: string; name: string; resourceVersion: string };
  /** The local journal is updated as steps are undone. */
  localJournal: boolean;
  actions: CleanAction[];
  notes: string[];
}

export interface CleanPlan {
  /** API server time the plan was judged at (absent for --localOnly). */
  serverTime?: string;
  scope: string;
  entries: CleanEntry[];
  /** Sessions left alone, and why. */
  skipped: { sessionId: string; namespace?: string; owner?: string; reason: string }[];
  notes: string[];
}

export interface CleanResult {
  entries: { sessionId: string; outcome: "cleaned" | "partial" | "skipped"; detail?: string; failures: string[] }[];
  undone: number;
  failed: number;
}

export interface SessionInfo {
  id: string;
  namespace: string;
  owner: string;
  mode: string;
  target?: string;
  host: string;
  pid?: number;
  /** Seconds since the session started (server clock when from a Lease). */
  ageSeconds?: number;
  /** Seconds since the Lease was last renewed, by the server's clock. */
  renewedSecondsAgo?: number;
  /** "alive": fresh Lease or running process; "expired": Lease not renewed in time; "dead": process gone. */
  state: "alive" | "expired" | "dead";
  /** Steps not yet undone. */
  pendingSteps: number;
  /** Where the session was found. */
  seenIn: ("cluster" | "local")[];
}

export interface StatusOptions {
  namespace?: string;
  allNamespaces?: boolean;
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

// ---------------------------------------------------------------------------------------------
// Laptop services: the SOCKS5/HTTP proxy (connect's proxy mode, exchange --connect, a team's mode)

/** Opens one stream to host:port as seen from inside the cluster (e.g. `shadow.tunnel.openStream`). */
export type OpenStream = (host: string, port: number) => Promise<Duplex>;

export interface ProxyServerOptions {
  /** Default 127.0.0.1: the proxy must not be open to the network. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  openStream: OpenStream;
  onError?(error: unknown, target: string): void;
}

export interface ProxyServer {
  host: string;
  port: number;
  stats(): { socks: number; connect: number; http: number; refused: number; open: number };
  close(): Promise<void>;
}

/** How programs are pointed at a proxy: environment variables and JVM system properties. */
export interface ProxyUsage {
  env: Record<string, string>;
  jvmFlags: string[];
}

export interface ProxyApi {
  /** SOCKS5 and HTTP (CONNECT and absolute-URI requests) on one loopback port. */
  start(options: ProxyServerOptions): Promise<ProxyServer>;
  usage(host: string, port: number): ProxyUsage;
  /** Shell lines a user can paste: exports (with lower-case twins) and the JVM flags. */
  instructions(host: string, port: number): string[];
}

// ---------------------------------------------------------------------------------------------
// This ktctl as a child process: a plugin composes the other modes (connect, exchange, mesh, a
// team's own) by running ktctl's own commands, which needs no other plugin's code. A child session
// ends on SIGTERM and restores everything it changed, as on Ctrl-C.

export interface SelfApi {
  /**
   * The argv that runs this same ktctl with `args` (compiled binary: [binary, ...args]; from source:
   * [bun, script, ...args]), e.g. `spawn(...api.self.argv(["connect", "--mode", "proxy"]))`.
   */
  argv(args: string[]): string[];
}

export interface PluginApi {
  version: string;
  apiVersion: number;
  defineCommand: <T extends ArgsDef>(def: CommandDef<T>) => CommandDef<T>;
  /** Global args every command should spread into its own args. */
  globalArgs: ArgsDef;
  logger: ConsolaInstance;
  errors: ErrorsApi;
  /** The naming and labelling scheme. */
  scheme: Scheme;
  /** Step builders with the core undo kinds. */
  steps: StepBuilders;
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
  /** The laptop's SOCKS5/HTTP proxy into the cluster. */
  proxy: ProxyApi;
  /**
   * Joins a local socket to a stream into the cluster (half-close carried both ways for tunnel
   * streams); settles when both sides are closed.
   */
  carry(socket: Socket, stream: Duplex): Promise<void>;
  /** Parses "[LOCAL:]REMOTE" style port lists with clear errors. */
  parsePorts(spec: string): { local: number; remote: number }[];
  /** This ktctl as a child process (see SelfApi). */
  self: SelfApi;
}

// The contract between the host and every plugin, built-in or a team's own.
// A plugin loaded at run time by the compiled binary cannot import the host's packages, so
// everything it needs arrives in `PluginApi`. Plugins import this file with `import type` only.

import type { ArgsDef, CommandDef } from "citty";
import type { ConsolaInstance } from "consola";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { CoreV1Api, AppsV1Api, CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";

/**
 * The contract's version. It goes up only when a change can break a plugin written for the previous
 * one (a member removed or renamed, a signature or a behaviour changed); members and optional fields
 * are added without a bump. A plugin declares the range it supports: `apiVersion` (the version it
 * was written for) up to `maxApiVersion` (the newest it was checked against). docs/plugins.md has
 * the policy. (The host reads this constant; plugins only import types.)
 */
export const PLUGIN_API_VERSION = 1;

/** What a plugin module exports as default. */
export interface KtctlPlugin {
  name: string;
  /**
   * The API version the plugin was written for. The host loads it when its PLUGIN_API_VERSION is in
   * [apiVersion, maxApiVersion ?? apiVersion]; otherwise the plugin is refused with a clear message.
   */
  apiVersion: number;
  /** The newest API version the plugin is known to work with (default: apiVersion). */
  maxApiVersion?: number;
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
  pluginOff: 13;
  localState: 14;
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

/** One pod; with its uid, a pod recreated under the same name is told apart. */
export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

/**
 * Streams to pod ports through the API server, as `portForward` opens them, but every stream to a
 * pod rides that pod's one connection, and its bytes follow its opening without waiting for the
 * kubelet's reply.
 */
export interface PodStreams {
  /** False once the API server turned out to speak only v4 (open answers undefined), or after close(). */
  readonly usable: boolean;
  /**
   * A stream to `port` of the pod (its own loopback included, as kubectl port-forward reaches it),
   * `first` (the client's first bytes, if any) sent with its opening; undefined where the API
   * server's port-forward cannot carry TCP's half-close (v4 only): take another path then, with
   * `first` still unsent.
   */
  open(pod: PodRef, port: number, first?: Buffer): Promise<Duplex | undefined>;
  /**
   * Opens the pod's port-forward connection ahead of its first stream (SPDY only: nothing in the
   * pod is reached until a stream opens), so that the first connection does not wait for the
   * API server's TLS and upgrade. Unused, it closes like any idle one. `port` only names the
   * connection's purpose in the URL. Settles (never fails) once the attempt is over, or after 3 s
   * at most (the attempt goes on, and a stream asked for meanwhile waits for it): `usable` is false
   * once the API server turned out not to speak SPDY.
   */
  warm(pod: PodRef, port: number): Promise<void>;
  /** Closes the pods' connections (and the streams on them). */
  close(): void;
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
  /** A new set of streams to pod ports that share one port-forward connection per pod (close it when done). */
  podStreams(): PodStreams;
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

/** A right an undo uses on one object: checked before the step's change is made. */
export interface UndoRight {
  verb: "get" | "patch" | "delete" | "update";
  ref: ObjectRef;
}

export interface UndoKind {
  where: UndoWhere;
  run: UndoRunner;
  /**
   * The API rights `run` takes for this step's data. The session asks the API server for them before
   * the change is made (a SelfSubjectAccessReview), so a missing right refuses the change instead of
   * stranding it: ktctl makes no change it cannot undo.
   */
  rights?(data: Record<string, unknown>): UndoRight[];
}

export interface CleanOptions {
  /** Another namespace than the kube's (e.g. an undo runner cleaning up after a record). */
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
  /**
   * ktctl's own records that could not be read (a corrupt local journal, a Lease journal edited by
   * hand), one line each. What the cluster's own marks describe is still restored; the records are
   * left as found, and `clean` says so with its own exit code.
   */
  damaged?: string[];
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
  /** Another namespace than the kube's (e.g. an undo runner judging the sessions of a record). */
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
  /** The plugin's kube (from `api.kube(global)`): the session lives in its namespace. */
  kube: Kube;
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

/** A session on its way (`api.beginSession`). */
export interface SessionStart {
  /** The session once it is recorded; rejects with why it could not start (await it to report that). */
  readonly session: Promise<Session>;
  /**
   * After a refusal: closes the session once it has started (nothing to do if it could not), noting
   * the refusal as the reason. A failure to close is logged, not thrown: the refusal is the error.
   */
  abandon(refusal: unknown): Promise<void>;
}

/** A port-forwarded, multiplexed, authenticated link to this session's shadow. */
export interface Tunnel {
  /** A new stream to host:port as seen from inside the cluster. */
  openStream(host: string, port: number): Promise<Duplex>;
  /**
   * The shadow listens on remotePort and every connection comes to localHost:localPort. `observe`
   * is asked once per connection, with the cluster address the shadow saw, for a tap (api.ui.tap)
   * that watches copies of its bytes; undefined taps nothing.
   */
  addRemoteListener(remotePort: number, localHost: string, localPort: number, observe?: ObserveConnection): Promise<void>;
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

/** Where one connection of a local forward goes: an address inside the cluster, and the pod behind it when there is one. */
export interface ForwardTarget {
  host: string;
  port: number;
  /** The pod whose `port` host:port is (then `host` is its IP). */
  pod?: PodRef;
}

export interface LocalForwardOptions {
  /** Carries the connections whose target names no pod, or all of them when `pods` is not given. */
  tunnel: Tunnel;
  /**
   * Streams straight to pods: a target that names its pod is reached through the pod's own
   * port-forward, without the tunnel's hop (and without waiting for the tunnel to exist).
   */
  pods?: PodStreams;
  localPort: number;
  /** Default 127.0.0.1. */
  localHost?: string;
  /** Where each new connection goes; asked per connection so targets can move (new pods). */
  target(): Promise<ForwardTarget>;
  onError?(error: unknown): void;
  /** Which way each connection went, once its stream is open (for --debug). */
  onStream?(path: "pod" | "tunnel", target: ForwardTarget): void;
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
// --- serving: a shadow that serves cluster traffic to the laptop (exchange, preview, a team's mode
// alike), the waits on cluster state such a mode needs, and one session per object (ownership).

/** SIGINT/SIGTERM/SIGHUP taken over by a mode that must restore things in an order of its own. */
export interface StopSignals {
  /** Resolves with the first SIGINT, SIGTERM or SIGHUP. */
  readonly received: Promise<NodeJS.Signals>;
  readonly signal: NodeJS.Signals | undefined;
  /** The shell's exit code for the signal received (130, 143, 129), if any. */
  exitCode(): number | undefined;
  dispose(): void;
}

/** One port the shadow declares and serves from the laptop. */
export interface ServedPort {
  shadowPort: number;
  /** Port name on the shadow pod (so a Service can target it by name). */
  name?: string;
  localPort: number;
}

export interface ServingShadowOptions {
  role: string;
  /** Extra pod labels (e.g. a workload's pod labels, so its services select the shadow). */
  labels?: Record<string, string>;
  ports: ServedPort[];
  /** Address of the local process. */
  localHost: string;
  /** What the ui calls this traffic (default: the role). */
  describe?: string;
}

export interface ServingShadow {
  shadow: Shadow;
  /** Connections the cluster sent to the laptop so far. */
  connections(): number;
  /**
   * Once the services no longer list the shadow: resolves when no connection has arrived for
   * `quietMs` (kube-proxy has caught up), or after `maxMs` at the latest (then false).
   */
  drained(quietMs: number, maxMs: number): Promise<boolean>;
  /** Releases what serving holds on this machine (after the session closed). */
  close(): Promise<void>;
}

/** How `requireLocalListeners` treats silent ports: fail at once, or wait (seconds 0: until interrupted). */
export interface LocalListenerWait {
  enabled: boolean;
  seconds: number;
  /** The flag that turns waiting on, named in the hint when it is off (e.g. "--waitLocal"). */
  flag: string;
}

/**
 * The local process reaching the cluster through the same session: a SOCKS5/HTTP proxy on loopback
 * that listens before the shadow exists (connections wait for `attach`).
 */
export interface ConnectBack {
  proxy: ProxyServer;
  /** HTTP_PROXY, ALL_PROXY, ... (and their lower-case twins) for the local process. */
  env: [string, string][];
  /** Lines to print: exports and JVM flags. */
  instructions: string[];
  /** Hands the shadow over once it runs; until then connections wait. */
  attach(shadow: Shadow): void;
  /** The session could not start: waiting connections fail. */
  fail(error: unknown): void;
  close(): Promise<void>;
}

/**
 * The life of a session whose shadow serves traffic to the laptop. Start the session with
 * `handleSignals: false`, take the signals with `stopSignals()`, build everything inside `setUp`,
 * wait for `session.ended`, `stop.received` or `tunnelClosed`, restore in your own order, close the
 * session, then `exitForSignal`.
 */
export interface ServingApi {
  /** Takes over SIGINT/SIGTERM/SIGHUP: the first starts the end, later ones only say it is under way. */
  stopSignals(): StopSignals;
  /** Runs `setup`; any failure (or a signal meanwhile) closes the session, undoing everything, then rethrows. */
  setUp<T>(session: Session, stop: StopSignals, setup: () => Promise<T>): Promise<T>;
  /** Starts the shadow declaring `ports`, each forwarded to the laptop's local port, arrivals counted. */
  startShadow(session: Session, options: ServingShadowOptions): Promise<ServingShadow>;
  /** Resolves (with a reason) when the tunnel gives up for good; it reconnects by itself otherwise. */
  tunnelClosed(shadow: Shadow): Promise<string>;
  /** Disposes the signal handlers and leaves with the signal's exit code when a signal ended the session. */
  exitForSignal(stop: StopSignals): void;
  /** Fails (naming every silent port) unless something listens on each local port, or waits for them. */
  requireLocalListeners(host: string, ports: number[], wait: LocalListenerWait): Promise<void>;
  /** Starts the --connect proxy on loopback `port` (0: a free one). */
  connectBack(port: number): Promise<ConnectBack>;
}

export interface WaitOptions {
  timeoutMs: number;
  /**
   * What is awaited, for messages. Given: the timeout (or the watch ending) rejects with a timeout
   * KtctlError "timed out after Ns waiting for <what>". Absent: the wait answers undefined/false.
   */
  what?: string;
}

export interface EndpointsWaitOptions extends WaitOptions {
  /** What `accept` is given of the ready endpoints: their addresses (default) or their pods' names. */
  by?: "address" | "pod";
}

/** Waits on cluster state by watching it (list, then watch): none of them polls; each is bounded. */
export interface WaitsApi {
  /**
   * Watches the collection at `path` (with `query` selectors, e.g. labelSelector) and calls `check`
   * with every object seen so far, by name, after each event; resolves with its first non-undefined
   * answer. `check` may throw to end the wait with its error.
   */
  until<T>(kube: Kube, path: string, query: Record<string, string>, check: (objects: Map<string, any>) => T | undefined, options: WaitOptions & { what: string }): Promise<T>;
  until<T>(kube: Kube, path: string, query: Record<string, string>, check: (objects: Map<string, any>) => T | undefined, options: WaitOptions): Promise<T | undefined>;
  /** Waits until the ready endpoints of a service in kube.namespace satisfy `accept`; false at the timeout. */
  forEndpoints(kube: Kube, service: string, accept: (ready: Set<string>) => boolean, options: EndpointsWaitOptions): Promise<boolean>;
  /** Waits until a Deployment in kube.namespace has `replicas` ready pods, reporting each change; false at the timeout. */
  forReplicas(kube: Kube, deployment: string, replicas: number, options: WaitOptions & { onProgress?(summary: string): void }): Promise<boolean>;
  /** The first load-balancer address (IP or hostname) of a service in kube.namespace; undefined at the timeout. */
  forLoadBalancer(kube: Kube, service: string, options: WaitOptions): Promise<string | undefined>;
  /** Ready endpoint addresses (or pod names) of a service, from its EndpointSlices. */
  readyEndpoints(slices: Iterable<any>, by?: "address" | "pod"): Set<string>;
  /** A Deployment's rollout towards `replicas`: done, and "1/2 ready". */
  rolloutProgress(workload: any, replicas: number): { done: boolean; summary: string };
  /** `accept` for forEndpoints: exactly these (asked at each event, so it may follow a moving pod). */
  exactly(expected: () => string[]): (ready: Set<string>) => boolean;
  /** `accept` for forEndpoints: not this one (any more). */
  without(entry: () => string): (ready: Set<string>) => boolean;
}

/**
 * One session at a time per object: a session's mark on an object (its session label, see
 * Scheme.markedBy) is the lock. A live holder refuses the newcomer; a dead one is cleaned first,
 * through the same plan `ktctl clean` runs. Sessions are looked up in kube.namespace.
 */
export interface OwnershipApi {
  /** Refuses (conflict) for a live holder of any of `objects`, cleans a dead one; true when something was cleaned (read the objects again). */
  ensureNotHeld(kube: Kube, objects: any[]): Promise<boolean>;
  /** The session with this id, as `status` lists it, if known. */
  findSession(kube: Kube, sessionId: string): Promise<SessionInfo | undefined>;
  /** Cleans one dead session through clean's own plan: undefined when cleaned, else why it was left alone. */
  cleanDeadSession(kube: Kube, sessionId: string): Promise<string | undefined>;
  /** "alice (session ab12, exchange, started 5m ago)" */
  describeHolder(info: Pick<SessionInfo, "id" | "owner" | "mode" | "ageSeconds" | "host">): string;
  /** "45s", "5m", "2h", "3d" */
  formatAge(seconds: number | undefined): string;
}

/** The members above, as PluginApi carries them. */
export interface ServingMembers {
  /** The serving lifecycle: signals, setup with undo, the serving shadow, local listeners, --connect. */
  serving: ServingApi;
  /** Waits on cluster state by watching it. */
  waits: WaitsApi;
  /** One session at a time per object. */
  ownership: OwnershipApi;
}
// --- end of serving
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Shared-workload building blocks: the router contract, shadow pod templates, shared objects.
// What mesh builds on, offered so a team's mode can run a router, a shadow of its own making, or
// an object several sessions hold at once, exactly as mesh and `connect --shareShadow` do.

export type { ListenerConfig, ListenerProtocol, Route, RouterConfig, Upstream } from "./protocol/router.ts";
import type { ListenerProtocol as RouterListenerProtocol, RouterConfig as RouterStartConfig } from "./protocol/router.ts";

/** The router role's contract (core/protocol/router.ts): the checks it applies, so a plugin refuses early what the router would. */
export interface RouterApi {
  /** Header a mark travels in when the user names none. */
  defaultMarkHeader: string;
  /** Loopback port of the router's admin endpoint (routes are pushed there through a port-forward). */
  defaultAdminPort: number;
  /** A header name usable as a mark, lowercased; throws ContractError with the reason. */
  checkMarkHeader(name: string): string;
  /** A header value usable as a mark; throws ContractError with the reason. */
  checkMarkValue(value: string): string;
  /** A path prefix in its canonical form ("/api/" -> "/api"); throws ContractError with the reason. */
  checkPathPrefix(prefix: string): string;
  /** What a listener expects, from a service port's appProtocol or name. */
  listenerProtocolOf(port: { name?: string; appProtocol?: string }): RouterListenerProtocol;
  /** What the checks throw: the user's input broke the contract (a usage error). */
  ContractError: new (message: string) => Error;
  /** The router configuration a shadow pod (or pod template) was started with, if any. */
  configOf(pod: unknown): RouterStartConfig | undefined;
}

export interface ShadowPodTemplateInput {
  /** The session's global flags: image, pull secret, node selector, quota, service account, debug, extra labels. */
  global: GlobalOptions;
  /** What the shadow reports as its session (a shadow serving no one session may name what it serves). */
  sessionId: string;
  /** The one OpenSSH public key its tunnel accepts. */
  authorizedKey: string;
  /** Roles besides the tunnel, e.g. ["router"] or ["dns"]. */
  roles?: string[];
  /** The router role's start-up configuration (with roles ["router"]). */
  routerConfig?: RouterStartConfig;
  /** The tunnel role's port, when the default (shadowPods.tunnelPort) is taken by a listener. */
  tunnelPort?: number;
  /** Labels of the pod (merged over --withLabel). */
  labels?: Record<string, string>;
  /** Ports the container declares besides the tunnel. */
  ports?: { name?: string; port: number }[];
}

/** A pod template (a Deployment's `spec.template`, or a Pod without its name). */
export interface ShadowPodTemplate {
  metadata: { labels: Record<string, string>; annotations: Record<string, string> };
  spec: any;
}

export interface ShadowPodsApi {
  /** The tunnel role's default port. */
  tunnelPort: number;
  /** The shadow's pod template as the core makes every shadow: same image, security, resources and environment. */
  template(input: ShadowPodTemplateInput): ShadowPodTemplate;
}

/** Marks the first holder writes together with its own change (merge them into the create or patch). */
export interface HolderMarks {
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/**
 * One cluster object several sessions hold at once. It lists its holders (session ids, a JSON list)
 * in an annotation; every write is conditional on the resourceVersion just read, and a 409 reads again.
 */
export interface SharedObjectOptions {
  ref: ObjectRef;
  /** The session joining or leaving. */
  sessionId: string;
  /** The annotation listing the holders; default scheme.annotations.sharers. */
  annotation?: string;
  /** A label kept naming one live holder (e.g. scheme.labels.session, so `clean` sees a live session's object); none by default. */
  holderLabel?: string;
  /** True when the object as read is shared; default: it carries the annotation. */
  isShared?(object: any): boolean;
  /**
   * Which holders are dropped as gone: "ended" (default) those whose session Lease no longer exists;
   * "expired" also those whose Lease was not renewed in time (as `status` judges them).
   */
  drop?: "ended" | "expired";
  logger?: { debug(message: string): void };
}

export interface SharedJoinHooks {
  /**
   * The object is absent (undefined) or not shared yet: make this session its first holder, writing
   * `marks` with the change, conditionally (a create, or a patch carrying the resourceVersion read).
   * Return false to read again (e.g. after waiting for another session's creation).
   */
  create(object: any | undefined, marks: HolderMarks): Promise<boolean>;
  /** An existing object that cannot be joined now (e.g. being deleted): make way, return false to read again. */
  usable?(object: any): Promise<boolean>;
}

export interface SharedJoinResult {
  /** This session created (or took over) the object. */
  created: boolean;
  /** The holders after joining, this session included. */
  holders: string[];
  /** The object as read before this session's write (undefined when it was created from nothing). */
  object?: any;
  /** The holders dropped as gone. */
  dropped: string[];
  /** The new holder named by holderLabel, when it passed on. */
  holderChanged?: string;
}

export interface SharedLeaveHooks {
  /**
   * This session is the last holder: restore or delete the object, conditionally on its
   * resourceVersion. Default: delete it (preconditions uid and resourceVersion).
   */
  last?(object: any): Promise<void>;
}

export interface SharedLeaveResult {
  /** "last": this session was the last holder; "left": others remain; "absent": gone, going, or not shared. */
  outcome: "last" | "left" | "absent";
  holders: string[];
  /** The object as read before this session's write. */
  object?: any;
  holderChanged?: string;
}

export interface SharedObjectsApi {
  /** Joins (the first creates); safe to call again. */
  join(kube: Kube, options: SharedObjectOptions, hooks: SharedJoinHooks): Promise<SharedJoinResult>;
  /** Leaves (the last restores or deletes); idempotent, so it serves as an undo. */
  leave(kube: Kube, options: SharedObjectOptions, hooks?: SharedLeaveHooks): Promise<SharedLeaveResult>;
  /** The holders an object lists (unreadable annotation: none). */
  holdersOf(object: unknown, annotation?: string): string[];
}

// ---------------------------------------------------------------------------------------------
// The ui (`ktctl ui`) — everything a session tells the local page, and the traffic tap.
// A running session sends over a local channel ONLY while a ui is open: with none, `publish` and
// `panel` just remember the latest panel contents, and `tap` returns undefined, so a relay pays one
// call per connection and nothing per byte. (Implementation: core/ui/; the page: plugins/ui.)

export type TrafficProtocol = "http1" | "h2" | "grpc" | "tcp";

/** One HTTP/1.1 request, one HTTP/2 or gRPC stream, or one other TCP connection that reached the laptop. */
export interface TrafficRecord {
  /** Unique within the sending process. */
  id: string;
  sessionId?: string;
  /** What carried it, e.g. "exchange svc/echo 8080". */
  via: string;
  protocol: TrafficProtocol;
  /** Epoch ms when the request (or connection) began. */
  time: number;
  durationMs?: number;
  method?: string;
  path?: string;
  /** Host header or :authority. */
  authority?: string;
  status?: number;
  grpcStatus?: string;
  /** Body bytes (HTTP) or bytes from the cluster (TCP). */
  requestBytes: number;
  /** Body bytes (HTTP) or bytes back to the cluster (TCP). */
  responseBytes: number;
  /** The value of the mesh mark header, when the tap was told its name and the request carried it. */
  mark?: string;
  /** The cluster address the connection came from, as the shadow saw it, when the tunnel carries it. */
  remote?: string;
  requestHeaders?: [string, string][];
  responseHeaders?: [string, string][];
  /** Bodies only when the tap was asked to keep them, cut at its limit (base64). */
  requestBody?: string;
  responseBody?: string;
  bodyTruncated?: boolean;
  /** The local process the connection went to: where a replay goes. */
  local?: { host: string; port: number };
  /** Why no complete answer was seen ("connection closed", "stream reset", ...). */
  error?: string;
}

export interface TapOptions {
  sessionId?: string;
  via: string;
  local: { host: string; port: number };
  remote?: string;
  /** Header whose value is recorded as `mark` (mesh). */
  markHeader?: string;
  /** Keep up to this many bytes of each body (default 0: none; capped at 64 KiB). */
  bodyBytes?: number;
}

/** Observes one connection from copies of its bytes; it never holds the bytes up. */
export interface ConnectionTap {
  fromClient(chunk: Uint8Array): void;
  fromServer(chunk: Uint8Array): void;
  /** The connection closed (either side). */
  end(): void;
}

/** Per connection a tunnel delivers: the tap to feed, if any (see Tunnel.addRemoteListener). */
export type ObserveConnection = (origin: { address: string; port: number }) => ConnectionTap | undefined;

/** A plugin's own panel: a small table the page shows; publishing the same id again replaces it. */
export interface UiPanel {
  /** Stable id, unique per session (e.g. "mesh-routes"). */
  id: string;
  title: string;
  sessionId?: string;
  columns: string[];
  rows: string[][];
  note?: string;
}

/** What a plugin publishes besides panels: a line in the page's event log. */
export interface UiNotice {
  source: string;
  sessionId?: string;
  level?: "info" | "warn";
  text: string;
}

/** Everything the channel carries from a session process to the ui. */
export type UiEvent =
  | { type: "traffic"; record: TrafficRecord }
  | { type: "tunnel"; sessionId: string; state: "connected" | "reconnecting" | "closed"; detail?: string }
  | { type: "panel"; panel: UiPanel }
  | { type: "panel-removed"; id: string; sessionId?: string }
  | { type: "notice"; notice: UiNotice };

/** An event as the ui receives it: with the sending process and when it arrived. */
export interface UiReceivedEvent {
  pid: number;
  at: number;
  event: UiEvent;
}

/** The ui's end of the channel (`ktctl ui` opens it; one per KTCTL_HOME at a time). */
export interface UiHub {
  /** Processes connected now. */
  publishers(): number[];
  /** Every event from now on, plus the current panels of processes already connected. */
  subscribe(listener: (event: UiReceivedEvent) => void): () => void;
  /** A process connected or went away. */
  onPublisher(listener: (pid: number, connected: boolean) => void): () => void;
  close(): Promise<void>;
}

export interface UiApi {
  /** True while this process is connected to an open ui. */
  readonly watching: boolean;
  /** Sends a line to the ui's event log; dropped at once when no ui is open. */
  publish(notice: UiNotice): void;
  /** Shows or replaces a panel; the latest content is kept and sent to a ui that opens later. */
  panel(panel: UiPanel): void;
  removePanel(id: string, sessionId?: string): void;
  /** A tap for one connection, or undefined when no ui is open (then tap nothing). */
  tap(options: TapOptions): ConnectionTap | undefined;
  /** For `ktctl ui`: opens the channel sessions find through KTCTL_HOME. */
  openHub(): Promise<UiHub>;
  /**
   * Ends a running session of this user on this host the way Ctrl-C does (SIGTERM to its process,
   * after checking the process is the one that wrote the session's journal).
   */
  endSession(sessionId: string): Promise<void>;
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

export interface PluginApi extends ServingMembers {
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
  /**
   * Starts a session while the command still checks what it was asked (targets, ports, rights),
   * so the two overlap. `abandon` closes the session again when one of those checks refuses.
   */
  beginSession(options: SessionOptions): SessionStart;
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
   * streams); settles when both sides are closed. It starts the data flow itself once both sides
   * are wired: do not resume the socket before calling it.
   */
  carry(socket: Socket, stream: Duplex): Promise<void>;
  /** Parses "[LOCAL:]REMOTE" style port lists with clear errors. */
  parsePorts(spec: string): { local: number; remote: number }[];
  /** The router role's contract (see RouterApi). */
  router: RouterApi;
  /** Shadow pods a plugin creates itself (e.g. a router Deployment). */
  shadowPods: ShadowPodsApi;
  /** Objects several sessions hold at once: the first creates, the last restores or deletes. */
  shared: SharedObjectsApi;
  /** The local page (`ktctl ui`): events, panels and the traffic tap. */
  ui: UiApi;
  /** This ktctl as a child process (see SelfApi). */
  self: SelfApi;
}

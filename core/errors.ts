// One error type for everything a user can get wrong or the environment can refuse.
// The CLI prints `message` as one line (plus `hint` when set) and exits with `exitCode`;
// anything else that escapes is a bug and is printed with its stack only under --debug.

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2, // bad flag, bad argument, bad port spec
  config: 3, // config file unreadable or invalid
  kubeconfig: 4, // kubeconfig unreadable, malformed, unknown context
  notFound: 5, // namespace, service, pod, deployment does not exist
  forbidden: 6, // RBAC refused a verb on a resource
  portInUse: 7, // a local port is already taken
  image: 8, // shadow image cannot be pulled or started
  timeout: 9, // something did not become ready in time
  conflict: 10, // target already taken by another session, name already used
  plugin: 11, // a plugin failed to load or has the wrong API version
  unreachable: 12, // API server or shadow cannot be reached
  pluginOff: 13, // the command belongs to a built-in plugin that is switched off
  localState: 14, // a record of ktctl's own (local journal, key file, Lease journal) is corrupt, unreadable or unsafe
  interrupted: 130,
} as const;
export type ExitCodeName = keyof typeof ExitCode;

export class KtctlError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.failure,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "KtctlError";
  }
}

export const isKtctlError = (e: unknown): e is KtctlError =>
  e instanceof Error && (e as KtctlError).name === "KtctlError" && typeof (e as KtctlError).exitCode === "number";

// What the user typed to run ktctl, for usage lines and hints: "kubectl ktctl" when kubectl started
// it as its plugin (kubectl runs kubectl-ktctl, which krew links or the archive ships beside ktctl,
// with that name as argv[0]), "ktctl" otherwise.

export const KUBECTL_PLUGIN_EXECUTABLE = "kubectl-ktctl";

export function programName(argv0: string = process.argv0): string {
  const base = argv0.split(/[\\/]/).pop()!.replace(/\.exe$/i, "");
  return base === KUBECTL_PLUGIN_EXECUTABLE ? "kubectl ktctl" : "ktctl";
}

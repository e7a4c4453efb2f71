// The krew plugin manifest (dist/krew/ktctl.yaml): per platform, the archive's download address and
// sha256. krew unpacks the archive, keeps `ktctl` and links it as kubectl-ktctl, so `kubectl ktctl`
// runs it. Install from a release with `kubectl krew install --manifest-url=...`, or offline with
// `kubectl krew install --manifest=dist/krew/ktctl.yaml --archive=<the archive>`.

import { dump } from "js-yaml";
import { archiveName } from "./archives.ts";
import { executableName, krewPlatform, type KtctlTarget } from "./targets.ts";

export const PROJECT_HOME = "https://github.com/ktctl/ktctl";
/** Where a release's files are downloaded from; `{version}` is replaced. Overridden with --release-url. */
export const DEFAULT_RELEASE_URL = `${PROJECT_HOME}/releases/download/v{version}`;

export type KrewArchive = { target: KtctlTarget; sha256: string };

export const releaseBase = (template: string, version: string) => template.replaceAll("{version}", version).replace(/\/+$/, "");

export function krewManifest(version: string, archives: readonly KrewArchive[], releaseUrl = DEFAULT_RELEASE_URL): string {
  const base = releaseBase(releaseUrl, version);
  const manifest = {
    apiVersion: "krew.googlecontainertools.github.com/v1alpha2",
    kind: "Plugin",
    metadata: { name: "ktctl" },
    spec: {
      version: `v${version}`,
      homepage: PROJECT_HOME,
      shortDescription: "Run one local service as if it were inside a namespace",
      description:
        "ktctl connects your laptop to a cluster's network, forwards and exchanges services,\n" +
        "and previews local changes to a workload, without touching anything it did not create.\n",
      platforms: archives.map(({ target, sha256 }) => {
        const executable = executableName(target);
        return {
          selector: { matchLabels: krewPlatform(target) },
          uri: `${base}/${archiveName(version, target)}`,
          sha256,
          files: [{ from: executable, to: "." }],
          bin: executable,
        };
      }),
    },
  };
  return dump(manifest, { lineWidth: -1, noRefs: true });
}

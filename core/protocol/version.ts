// The one place the version and the default shadow image come from. ktctl, the shadow and the
// build all import this module, so `ktctl version`, the shadow's banner and the default `--image`
// always agree with the image the build packed. A compiled binary gets the values through
// `--define` (build/build.ts, build/shadow.ts); under `bun run` they fall back to package.json,
// which is the same source the build reads. Like everything in core/protocol/ it imports nothing
// of core/ or shadow/.

import packageJson from "../../package.json" with { type: "json" };

declare const KTCTL_BUILD_VERSION: string | undefined;
declare const KTCTL_BUILD_SHADOW_IMAGE: string | undefined;

/** Where the shadow image is published; the tag is always the ktctl version. */
export const SHADOW_REPOSITORY = "docker.io/ktctl/shadow";

export const shadowImageFor = (version: string, repository = SHADOW_REPOSITORY): string => `${repository}:${version}`;

export const VERSION: string = typeof KTCTL_BUILD_VERSION === "string" ? KTCTL_BUILD_VERSION : packageJson.version;

export const DEFAULT_SHADOW_IMAGE: string =
  typeof KTCTL_BUILD_SHADOW_IMAGE === "string" ? KTCTL_BUILD_SHADOW_IMAGE : shadowImageFor(VERSION);

/** The `--define` arguments that bake these values into a compiled binary. */
export function buildDefines(version: string, shadowImage: string): Record<string, string> {
  return {
    KTCTL_BUILD_VERSION: JSON.stringify(version),
    KTCTL_BUILD_SHADOW_IMAGE: JSON.stringify(shadowImage),
  };
}

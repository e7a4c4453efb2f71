// The version and default shadow image live in build/version.ts (the build bakes them into the
// binary); this re-export keeps older imports of core/version.ts working.
export { VERSION, DEFAULT_SHADOW_IMAGE } from "../build/version.ts";

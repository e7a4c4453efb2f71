// Packs a whole directory tree (a rootfs unpacked from Debian packages) into a one-layer OCI image
// with build/oci.ts, for the benchmark anchors' images (test/bench/anchors/build.sh).
//   bun test/bench/anchors/rootfs-image.ts ROOTFS NAME OUT.tar '{"entrypoint":[...],"env":[...]}'
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { writeOciImage, type ImageConfig, type RootfsEntry } from "../../../build/oci.ts";

const [root, name, out, configJson] = process.argv.slice(2);
if (!root || !name || !out) throw new Error("usage: rootfs-image.ts ROOTFS NAME OUT.tar [CONFIG_JSON]");

function* walk(dir: string, rel: string): Generator<RootfsEntry> {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    const inImage = `${rel}/${entry}`;
    const info = lstatSync(path);
    const mode = info.mode & 0o7777;
    if (info.isSymbolicLink()) yield { type: "symlink", path: inImage, target: readlinkSync(path) };
    else if (info.isDirectory()) {
      yield { type: "dir", path: inImage, mode };
      yield* walk(path, inImage);
    } else if (info.isFile()) yield { type: "file", path: inImage, from: path, mode };
  }
}

const config: ImageConfig = configJson ? JSON.parse(configJson) : {};
const info = await writeOciImage({ name, arch: "amd64", entries: [...walk(root, "")], config }, out);
console.log(`${name}: ${(info.archiveSize / 1048576).toFixed(1)} MiB`);

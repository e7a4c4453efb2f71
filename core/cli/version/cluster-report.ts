// What `ktctl version` says about the cluster: whether the shadow image this ktctl will use is
// already on a node (or failed to pull), and which ktctl shadow pods run in the namespace, with
// which versions and images. Pure: it reads the node and pod lists the command fetched.

import { LABEL_ROLE, LABEL_SESSION } from "../../session/labels.ts";
import { ANNOTATION_SHADOW_VERSION } from "../../shadow/pod-spec.ts";

export type ShadowPodInfo = { name: string; role: string; session: string; image: string; version: string; state: string };
export type ImageAvailability = { pullable: "yes" | "no" | "unknown"; detail: string };
export type ClusterReport = { image: ImageAvailability; shadows: ShadowPodInfo[]; warnings: string[] };

type Node = { metadata?: { name?: string }; status?: { images?: { names?: string[] }[] } };
type Pod = {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { containers?: { image?: string }[] };
  status?: { phase?: string; containerStatuses?: { state?: { waiting?: { reason?: string; message?: string } } }[] };
};

/** `ktctl/shadow:1` and `docker.io/ktctl/shadow:1` name one image, as containerd records it. */
export function normalizeImage(image: string): string {
  const slash = image.indexOf("/");
  const first = slash < 0 ? "" : image.slice(0, slash);
  const hasDomain = first.includes(".") || first.includes(":") || first === "localhost";
  let named = hasDomain ? image : `docker.io/${slash < 0 ? `library/${image}` : image}`;
  const lastSlash = named.lastIndexOf("/");
  if (!named.includes("@") && !named.slice(lastSlash).includes(":")) named += ":latest";
  return named;
}

const tagOf = (image: string) => {
  const name = image.split("@")[0]!;
  const colon = name.lastIndexOf(":");
  return colon > name.lastIndexOf("/") ? name.slice(colon + 1) : "latest";
};

const PULL_FAILURES = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"]);

export function clusterReport(input: { image: string; version: string; nodes: Node[] | { error: string }; pods: Pod[] }): ClusterReport {
  const wanted = normalizeImage(input.image);
  const shadows = input.pods.map((pod): ShadowPodInfo => {
    const image = pod.spec?.containers?.[0]?.image ?? "";
    const waiting = pod.status?.containerStatuses?.find((c) => c.state?.waiting)?.state?.waiting;
    return {
      name: pod.metadata?.name ?? "?",
      role: pod.metadata?.labels?.[LABEL_ROLE] ?? "?",
      session: pod.metadata?.labels?.[LABEL_SESSION] ?? "?",
      image,
      version: pod.metadata?.annotations?.[ANNOTATION_SHADOW_VERSION] ?? tagOf(image),
      state: waiting?.reason ?? pod.status?.phase ?? "Unknown",
    };
  });

  const warnings: string[] = [];
  for (const shadow of shadows) {
    if (shadow.version !== input.version) warnings.push(`shadow ${shadow.name} is from ktctl ${shadow.version}, this is ktctl ${input.version}: end its session (ktctl clean) before mixing versions`);
    else if (normalizeImage(shadow.image) !== wanted) warnings.push(`shadow ${shadow.name} runs ${shadow.image}, this ktctl would start ${input.image}`);
  }

  const ours = input.pods.filter((pod) => normalizeImage(pod.spec?.containers?.[0]?.image ?? "") === wanted);
  const failed = ours
    .flatMap((pod) => pod.status?.containerStatuses ?? [])
    .map((status) => status.state?.waiting)
    .find((waiting) => waiting?.reason && PULL_FAILURES.has(waiting.reason));
  let image: ImageAvailability;
  if (failed) image = { pullable: "no", detail: `${failed.reason}: ${failed.message ?? "the node could not pull it"}` };
  else if ("error" in input.nodes) image = { pullable: "unknown", detail: `cannot list nodes (${input.nodes.error})` };
  else {
    const nodes = input.nodes;
    const holding = nodes.filter((node) => (node.status?.images ?? []).some((i) => (i.names ?? []).some((n) => normalizeImage(n) === wanted)));
    if (holding.length > 0) image = { pullable: "yes", detail: `present on ${holding.length} of ${nodes.length} node${nodes.length === 1 ? "" : "s"}` };
    else if (ours.some((pod) => pod.status?.phase === "Running")) image = { pullable: "yes", detail: "a shadow runs it" };
    else image = { pullable: "unknown", detail: `on none of ${nodes.length} node${nodes.length === 1 ? "" : "s"}; a node pulls it from its registry when a shadow starts` };
  }
  if (image.pullable === "no") warnings.push(`the shadow image ${input.image} cannot be pulled: ${image.detail} (load it onto the nodes, or pass --image)`);
  return { image, shadows, warnings };
}

// The pure part: which ConfigMaps a pod template uses, and the template fields a swap changes.
// Only the fields that change are returned, so the session records (and restores) exactly those.

export interface PodSpec {
  containers?: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
}

interface Container {
  name: string;
  image?: string;
  env?: { name: string; valueFrom?: { configMapKeyRef?: { name?: string } } }[];
  envFrom?: { configMapRef?: { name?: string } }[];
}

interface Volume {
  name: string;
  configMap?: { name?: string };
  projected?: { sources?: { configMap?: { name?: string } }[] };
}

/** The template fields a swap rewrites, by name, with their new values. */
export type TemplateChange = Partial<Record<"containers" | "initContainers" | "volumes", unknown[]>>;

const CONTAINER_FIELDS = ["containers", "initContainers"] as const;

/** Calls `visit` with every object of the template that names a ConfigMap in `name`. */
function eachConfigMapRef(spec: PodSpec, visit: (ref: { name?: string }) => void): void {
  for (const field of CONTAINER_FIELDS) {
    for (const container of spec[field] ?? []) {
      for (const source of container.envFrom ?? []) if (source.configMapRef) visit(source.configMapRef);
      for (const variable of container.env ?? []) if (variable.valueFrom?.configMapKeyRef) visit(variable.valueFrom.configMapKeyRef);
    }
  }
  for (const volume of spec.volumes ?? []) {
    if (volume.configMap) visit(volume.configMap);
    for (const source of volume.projected?.sources ?? []) if (source.configMap) visit(source.configMap);
  }
}

export function configMapsUsed(spec: PodSpec): string[] {
  const names = new Set<string>();
  eachConfigMapRef(spec, (ref) => ref.name && names.add(ref.name));
  return [...names].sort();
}

/** Every reference to ConfigMap `from` pointed at `to`; the fields that changed. */
export function swapConfigMap(spec: PodSpec, from: string, to: string): TemplateChange {
  const copy = structuredClone(spec);
  eachConfigMapRef(copy, (ref) => {
    if (ref.name === from) ref.name = to;
  });
  return changedFields(spec, copy);
}

/** One container's image replaced; the fields that changed. */
export function swapImage(spec: PodSpec, container: string, image: string): TemplateChange {
  const copy = structuredClone(spec);
  for (const field of CONTAINER_FIELDS) for (const c of copy[field] ?? []) if (c.name === container) c.image = image;
  return changedFields(spec, copy);
}

function changedFields(before: PodSpec, after: PodSpec): TemplateChange {
  const change: TemplateChange = {};
  for (const field of [...CONTAINER_FIELDS, "volumes"] as const) {
    if (JSON.stringify(before[field]) !== JSON.stringify(after[field])) change[field] = after[field];
  }
  return change;
}

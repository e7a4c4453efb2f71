// `--env-file`: the environment the target's container would get from the kubelet, for the local
// process. Pure: the ConfigMaps, Secrets, services and pod come in already read. Follows the
// kubelet's rules: service links first (overridable), then envFrom in order, then env in order with
// $(VAR) references expanded against what is defined so far.

export interface EnvInput {
  container: any;
  /** A real pod of the target, for fieldRefs (name, IPs, node); without it only what the template knows. */
  pod?: any;
  /** The pod template's metadata, when there is no pod. */
  templateMetadata?: any;
  namespace: string;
  /** ConfigMap name -> data (undefined: absent or unreadable). */
  configMaps: Record<string, Record<string, string> | undefined>;
  /** Secret name -> data, base64 as the API returns it. */
  secrets: Record<string, Record<string, string> | undefined>;
  /** Services of the namespace, plus `default/kubernetes` when readable. */
  services: any[];
  enableServiceLinks?: boolean;
}

export interface EnvResult {
  vars: [string, string][];
  /** What could not be computed, one line each (written as comments, and printed). */
  notes: string[];
}

/** A valid environment variable name as the kubelet accepts it for envFrom keys. */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Expands $(NAME) against `lookup`; `$$` is a literal `$`; unknown references stay as written. */
export function expandReferences(value: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch !== "$" || i + 1 >= value.length) {
      out += ch;
      continue;
    }
    const next = value[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = value.indexOf(")", i + 2);
      if (close === -1) {
        out += "$(";
        i++;
        continue;
      }
      const name = value.slice(i + 2, close);
      out += lookup(name) ?? `$(${name})`;
      i = close;
    } else {
      out += `$${next}`;
      i++;
    }
  }
  return out;
}

const serviceEnvName = (name: string) => name.toUpperCase().replace(/-/g, "_");

const hasClusterIP = (svc: any) => typeof svc?.spec?.clusterIP === "string" && svc.spec.clusterIP !== "" && svc.spec.clusterIP !== "None";

/** The variables the kubelet injects for one service (docker-links style and the *_SERVICE_* pair). */
export function serviceVariables(svc: any): [string, string][] {
  const ports: any[] = svc.spec?.ports ?? [];
  if (!hasClusterIP(svc) || !ports.length) return [];
  const prefix = serviceEnvName(svc.metadata.name);
  const ip: string = svc.spec.clusterIP;
  const host = ip.includes(":") ? `[${ip}]` : ip;
  const vars: [string, string][] = [
    [`${prefix}_SERVICE_HOST`, ip],
    [`${prefix}_SERVICE_PORT`, String(ports[0].port)],
  ];
  for (const p of ports) if (p.name) vars.push([`${prefix}_SERVICE_PORT_${serviceEnvName(p.name)}`, String(p.port)]);
  const first = ports[0];
  vars.push([`${prefix}_PORT`, `${(first.protocol ?? "TCP").toLowerCase()}://${host}:${first.port}`]);
  for (const p of ports) {
    const proto = (p.protocol ?? "TCP").toUpperCase();
    const base = `${prefix}_PORT_${p.port}_${proto}`;
    vars.push([base, `${proto.toLowerCase()}://${host}:${p.port}`], [`${base}_PROTO`, proto.toLowerCase()], [`${base}_PORT`, String(p.port)], [`${base}_ADDR`, ip]);
  }
  return vars;
}

/**
 * Service-link variables for a pod in `namespace`: the namespace's services (when links are on) and
 * the master service `kubernetes` of `default` (always), a same-named service of the namespace winning.
 */
export function serviceLinkVariables(services: any[], namespace: string, enableServiceLinks = true): [string, string][] {
  const chosen = new Map<string, any>();
  for (const svc of services) {
    if (!hasClusterIP(svc)) continue;
    const name: string = svc.metadata.name;
    if (svc.metadata.namespace === "default" && name === "kubernetes") {
      if (!chosen.has(name)) chosen.set(name, svc);
    } else if (svc.metadata.namespace === namespace && enableServiceLinks) {
      chosen.set(name, svc);
    }
  }
  return [...chosen.keys()].sort().flatMap((name) => serviceVariables(chosen.get(name)));
}

// ---- quantities, for resourceFieldRef ----------------------------------------------------------

const SUFFIX: Record<string, number> = {
  "": 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity ("500m", "1Gi", "2", "1e3") as a number; undefined when malformed. */
export function parseQuantity(text: string): number | undefined {
  const match = /^([+-]?\d+(?:\.\d+)?|[+-]?\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/.exec(String(text).trim());
  if (!match) return undefined;
  const base = Number(match[1]);
  if (match[2]) return base * 10 ** Number(match[2].slice(1));
  return base * SUFFIX[match[3] ?? ""]!;
}

function resourceValue(container: any, ref: any): string | undefined {
  const [kind, resource] = String(ref.resource ?? "").split(".", 2) as [string, string | undefined];
  if ((kind !== "limits" && kind !== "requests") || !resource) return undefined;
  const amount = container?.resources?.[kind]?.[resource] ?? (kind === "requests" ? container?.resources?.limits?.[resource] : undefined);
  if (amount === undefined) return undefined;
  const value = parseQuantity(String(amount));
  const divisor = parseQuantity(String(ref.divisor ?? "1"));
  if (value === undefined || !divisor) return undefined;
  // The kubelet rounds up, so a 250m CPU limit reads as 1 with the default divisor.
  return String(Math.ceil(value / divisor - 1e-9));
}

// ---- fieldRef ----------------------------------------------------------------------------------

function formatMap(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}="${String(map![k]).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
    .join("\n");
}

function fieldValue(path: string, input: EnvInput): string | undefined {
  const pod = input.pod;
  const meta = pod?.metadata ?? input.templateMetadata ?? {};
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (keyed) return meta[keyed[1]!]?.[keyed[2]!] ?? "";
  switch (path) {
    case "metadata.namespace":
      return input.namespace;
    case "metadata.labels":
      return formatMap(meta.labels);
    case "metadata.annotations":
      return formatMap(meta.annotations);
    case "metadata.name":
      return pod?.metadata?.name;
    case "metadata.uid":
      return pod?.metadata?.uid;
    case "spec.nodeName":
      return pod?.spec?.nodeName;
    case "spec.serviceAccountName":
      return pod?.spec?.serviceAccountName ?? "default";
    case "status.hostIP":
      return pod?.status?.hostIP;
    case "status.hostIPs":
      return pod?.status?.hostIPs?.map((i: any) => i.ip).join(",");
    case "status.podIP":
      return pod?.status?.podIP;
    case "status.podIPs":
      return pod?.status?.podIPs?.map((i: any) => i.ip).join(",");
    default:
      return undefined;
  }
}

const decodeSecret = (value: string) => Buffer.from(value, "base64").toString("utf8");

/** The container's environment as the kubelet would build it, plus notes on what is missing. */
export function buildEnvironment(input: EnvInput): EnvResult {
  const notes: string[] = [];
  const values = new Map<string, string>();
  const container = input.container ?? {};

  const service = new Map(serviceLinkVariables(input.services, input.namespace, input.enableServiceLinks ?? true));

  for (const source of container.envFrom ?? []) {
    const prefix: string = source.prefix ?? "";
    const ref = source.configMapRef ?? source.secretRef;
    if (!ref?.name) continue;
    const isSecret = Boolean(source.secretRef);
    const data = isSecret ? input.secrets[ref.name] : input.configMaps[ref.name];
    if (!data) {
      if (!ref.optional) notes.push(`${isSecret ? "secret" : "configmap"} ${ref.name} (envFrom) is missing or unreadable: its keys are not set`);
      continue;
    }
    for (const key of Object.keys(data)) {
      const name = `${prefix}${key}`;
      if (!ENV_NAME.test(name)) {
        notes.push(`${name} from ${isSecret ? "secret" : "configmap"} ${ref.name} is not a valid variable name; skipped (as the kubelet does)`);
        continue;
      }
      values.delete(name); // a later source wins and also moves to the end
      values.set(name, isSecret ? decodeSecret(data[key]!) : data[key]!);
    }
  }

  const lookup = (name: string) => values.get(name) ?? service.get(name);
  for (const entry of container.env ?? []) {
    const name: string = entry.name;
    let value: string | undefined;
    if (entry.valueFrom) {
      const from = entry.valueFrom;
      if (from.configMapKeyRef || from.secretKeyRef) {
        const ref = from.configMapKeyRef ?? from.secretKeyRef;
        const isSecret = Boolean(from.secretKeyRef);
        const data = isSecret ? input.secrets[ref.name] : input.configMaps[ref.name];
        const raw = data?.[ref.key];
        if (raw === undefined) {
          if (!ref.optional) notes.push(`${name}: key ${ref.key} of ${isSecret ? "secret" : "configmap"} ${ref.name} is missing or unreadable`);
          continue;
        }
        value = isSecret ? decodeSecret(raw) : raw;
      } else if (from.fieldRef) {
        value = fieldValue(from.fieldRef.fieldPath, input);
        if (value === undefined) {
          notes.push(`${name}: ${from.fieldRef.fieldPath} is only known for a running pod${input.pod ? "" : " (none found)"}`);
          continue;
        }
      } else if (from.resourceFieldRef) {
        const target = from.resourceFieldRef.containerName
          ? (input.pod?.spec ?? {}).containers?.find((c: any) => c.name === from.resourceFieldRef.containerName) ?? container
          : container;
        value = resourceValue(target, from.resourceFieldRef);
        if (value === undefined) {
          notes.push(`${name}: ${from.resourceFieldRef.resource} is not set on the container (the kubelet would use the node's capacity)`);
          continue;
        }
      } else {
        notes.push(`${name}: unsupported valueFrom ${Object.keys(from).join(", ")}`);
        continue;
      }
    } else {
      value = expandReferences(String(entry.value ?? ""), lookup);
    }
    values.delete(name);
    values.set(name, value);
  }

  const vars: [string, string][] = [...values.entries()];
  for (const [name, value] of service) if (!values.has(name)) vars.push([name, value]);
  return { vars, notes };
}

/** Value as written in a dotenv file: bare when plain, else double-quoted with \\, \", \n, \r, \t escaped. */
export function dotenvValue(value: string): string {
  if (/^[A-Za-z0-9_./:@%+,=\-]*$/.test(value)) return value;
  const escaped = value
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\r/g, "\\r")
    .replace(/\t/g, "\\t")
    .replace(/\$/g, "\\$");
  return `"${escaped}"`;
}

/** The file: dotenv (default) or JSON (for a .json path). Notes go in as comments (dotenv only). */
export function formatEnvFile(result: EnvResult, format: "dotenv" | "json", header: string): string {
  if (format === "json") {
    const object: Record<string, string> = {};
    for (const [k, v] of result.vars) object[k] = v;
    return `${JSON.stringify(object, null, 2)}\n`;
  }
  const lines = [`# ${header}`];
  for (const note of result.notes) lines.push(`# not set: ${note}`);
  for (const [k, v] of result.vars) lines.push(`${k}=${dotenvValue(v)}`);
  return `${lines.join("\n")}\n`;
}

/** The container whose environment to write: by name, else the one serving the exposed ports, else the first. */
export function pickContainer(containers: any[], wanted: string | undefined, targetPorts: number[]): any | undefined {
  if (wanted) return containers.find((c) => c.name === wanted);
  return containers.find((c) => (c.ports ?? []).some((p: any) => targetPorts.includes(p.containerPort))) ?? containers[0];
}

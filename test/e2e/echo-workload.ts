// The echo workload several e2e files deploy into a namespace of their own: a Deployment of the
// test cluster's echo image and a Service in front of it, as YAML documents for `kubectl apply -f -`.
// One definition, so a change to the image, its probe or its ports reaches every suite.

export interface EchoWorkload {
  namespace: string;
  /** The Deployment, its Service, its `app` label and what the pods answer as ECHO_NAME. */
  name: string;
  replicas?: number;
  /** Extra environment of the echo container. */
  env?: Record<string, string>;
  /** Also serve the raw TCP echo on 9090 (Service port 9090, targetPort `tcp`). */
  tcp?: boolean;
  /** Labels of the pods besides `app` (a selector with more than one label). */
  podLabels?: Record<string, string>;
  /** Labels of the Deployment and the Service. */
  labels?: Record<string, string>;
  serviceAnnotations?: Record<string, string>;
}

const flow = (map: Record<string, string>) =>
  `{ ${Object.entries(map)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(", ")} }`;

/** `{ name: N, namespace: NS, labels: {...}, annotations: {...} }`, leaving out what is not given. */
function metadata(fields: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }): string {
  const parts = [`name: ${fields.name}`];
  if (fields.namespace) parts.push(`namespace: ${fields.namespace}`);
  if (fields.labels) parts.push(`labels: ${flow(fields.labels)}`);
  if (fields.annotations) parts.push(`annotations: ${flow(fields.annotations)}`);
  return `{ ${parts.join(", ")} }`;
}

/** A Namespace document (with labels, e.g. to find a suite's namespaces). */
export const namespaceYaml = (namespace: string, labels?: Record<string, string>): string =>
  `apiVersion: v1\nkind: Namespace\nmetadata: ${metadata({ name: namespace, labels })}\n`;

/** The Deployment and Service documents of one echo workload. */
export function echoWorkloadYaml(w: EchoWorkload): string {
  const env = { ECHO_NAME: w.name, ...w.env };
  const envLines = [
    ...Object.entries(env).map(([k, v]) => `        - { name: ${k}, value: ${JSON.stringify(v)} }`),
    "        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }",
    "        - { name: POD_NAMESPACE, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }",
  ];
  const containerPorts = ["        - { name: http, containerPort: 8080 }", ...(w.tcp ? ["        - { name: tcp, containerPort: 9090 }"] : [])];
  const servicePorts = ["  - { name: http, port: 80, targetPort: http }", ...(w.tcp ? ["  - { name: tcp, port: 9090, targetPort: tcp }"] : [])];
  return `apiVersion: apps/v1
kind: Deployment
metadata: ${metadata({ name: w.name, namespace: w.namespace, labels: w.labels })}
spec:
  replicas: ${w.replicas ?? 1}
  selector: { matchLabels: { app: ${w.name} } }
  template:
    metadata: { labels: ${flow({ app: w.name, ...w.podLabels })} }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: ktctl.local/echo:1
        imagePullPolicy: Never
        env:
${envLines.join("\n")}
        ports:
${containerPorts.join("\n")}
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: ${metadata({ name: w.name, namespace: w.namespace, labels: w.labels, annotations: w.serviceAnnotations })}
spec:
  selector: { app: ${w.name} }
  ports:
${servicePorts.join("\n")}
`;
}

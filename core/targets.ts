// Workload targets as users type them, kubectl-style: "echo" (a service), "svc/echo",
// "deployment/echo", "pod/echo-1". One parser for every mode, so they accept and refuse the same.

import { ExitCode, KtctlError } from "./errors.ts";
import type { TargetRef, TargetKind } from "./plugin-api.ts";

const KIND_ALIASES: Record<string, TargetKind> = {
  svc: "service",
  service: "service",
  services: "service",
  deploy: "deployment",
  deployment: "deployment",
  deployments: "deployment",
  po: "pod",
  pod: "pod",
  pods: "pod",
};

export function parseTarget(text: string): TargetRef {
  const parts = text.split("/");
  if (parts.length > 2 || parts.some((p) => p === ""))
    throw new KtctlError(`invalid target "${text}": expected NAME, svc/NAME, deployment/NAME or pod/NAME`, ExitCode.usage);
  if (parts.length === 1) return { kind: "service", name: parts[0]! };
  const kind = KIND_ALIASES[parts[0]!.toLowerCase()];
  if (!kind) throw new KtctlError(`unsupported target kind "${parts[0]}" in "${text}": use svc, deployment or pod`, ExitCode.usage);
  return { kind, name: parts[1]! };
}

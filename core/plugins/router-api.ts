// The router contract and shadow pod templates as the plugin API offers them: the same checks the
// router role applies and the same pod the core makes for every shadow, so a plugin that runs a
// router (mesh, or a team's own) neither copies the contract nor assembles the shadow's environment.

import type { RouterApi, ShadowPodsApi } from "../plugin-api.ts";
import { ROUTER_CONFIG_ENV, type RouterConfig, ContractError, DEFAULT_ADMIN_PORT, DEFAULT_MARK_HEADER, checkMarkHeader, checkMarkValue, checkPathPrefix, listenerProtocolOf } from "../protocol/router.ts";
import { SHADOW_TUNNEL_PORT } from "../protocol/tunnel.ts";
import { shadowPodTemplate } from "../shadow/pod-spec.ts";

export const ROUTER_API: RouterApi = {
  defaultMarkHeader: DEFAULT_MARK_HEADER,
  defaultAdminPort: DEFAULT_ADMIN_PORT,
  checkMarkHeader,
  checkMarkValue,
  checkPathPrefix,
  listenerProtocolOf,
  ContractError,
  configOf,
};

/** As the core's template writes it (shadowPodTemplate); read leniently, the router validates it. */
function configOf(pod: any): RouterConfig | undefined {
  const env: { name: string; value?: string }[] = pod?.spec?.containers?.[0]?.env ?? [];
  const text = env.find((e) => e.name === ROUTER_CONFIG_ENV)?.value;
  if (typeof text !== "string") return undefined;
  try {
    return JSON.parse(text) as RouterConfig;
  } catch {
    return undefined;
  }
}

export const SHADOW_PODS_API: ShadowPodsApi = {
  tunnelPort: SHADOW_TUNNEL_PORT,
  template: shadowPodTemplate,
};

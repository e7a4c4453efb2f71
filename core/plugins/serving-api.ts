// `api.serving`, `api.waits` and `api.ownership`: what a mode needs whose shadow serves cluster
// traffic to the laptop (exchange and preview use exactly this; a team's mode gets the same). The
// relays and the proxy load on first use; what must answer synchronously is small and loaded now.

import type { PluginApi, ServingMembers } from "../plugin-api.ts";
import { exactly, readyEndpoints, rolloutProgress, waitForEndpoints, waitForLoadBalancer, waitForReplicas, watchUntil, without } from "../kube/collection-waits.ts";
import { cleanDeadSession, describeHolder, ensureNotHeld, findSession, formatAge } from "../serving/ownership.ts";
import { exitForSignal, listenForStop } from "../serving/stop-signals.ts";

/** The members, bound to the finished API (read on use, so this can be spread into its literal). */
export function servingMembers(api: () => PluginApi): ServingMembers {
  const servingShadow = () => import("../serving/serving-shadow.ts");
  return {
    serving: {
      stopSignals: () => listenForStop(api().logger),
      setUp: async (session, stop, setup) => (await servingShadow()).setUp(session, stop, api().logger, setup),
      startShadow: async (session, options) => (await servingShadow()).startServingShadow(api(), session, options),
      tunnelClosed: async (shadow) => (await servingShadow()).tunnelClosed(shadow),
      exitForSignal,
      requireLocalListeners: async (host, ports, wait) => (await import("../serving/local-listeners.ts")).requireLocalListeners(api(), host, ports, wait),
      connectBack: async (port) => (await import("../serving/connect-back.ts")).startConnectBack(api(), port),
    },
    waits: {
      until: watchUntil,
      forEndpoints: waitForEndpoints,
      forReplicas: waitForReplicas,
      forLoadBalancer: waitForLoadBalancer,
      readyEndpoints,
      rolloutProgress,
      exactly,
      without,
    },
    ownership: {
      ensureNotHeld: (kube, objects) => ensureNotHeld(api(), kube, objects),
      findSession: (kube, sessionId) => findSession(api(), kube, sessionId),
      cleanDeadSession: (kube, sessionId) => cleanDeadSession(api(), kube, sessionId),
      describeHolder,
      formatAge,
    },
  };
}

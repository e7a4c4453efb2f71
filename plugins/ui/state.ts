// What the page shows, kept in the `ktctl ui` process: this laptop's sessions (journals and leases,
// re-read every few seconds), the traffic the sessions report (the latest MAX_RECORDS), their
// panels, tunnel health and notices. Every change goes to the page's live stream as one message.

import type { Kube, PluginApi, SessionInfo, TrafficRecord, UiHub, UiNotice, UiPanel, UiReceivedEvent } from "../../core/plugin-api.ts";
import { hostname } from "node:os";

export const MAX_RECORDS = 2000;
const SESSIONS_REFRESH_MS = 2000;
const POD_LOOKUP_TIMEOUT_MS = 400;

export interface SessionView extends SessionInfo {
  /** Tunnel health as the session's process reports it ("connected", "reconnecting", ...). */
  tunnel?: string;
  tunnelDetail?: string;
  /** True while its process is connected to this ui. */
  reporting: boolean;
}

/** A record as the page lists it: the pod behind the remote address when it could be found. */
export type RecordView = TrafficRecord & { remotePod?: string };

export type LiveMessage =
  | { type: "sessions"; sessions: SessionView[] }
  | { type: "traffic"; record: RecordView }
  | { type: "panel"; panel: UiPanel }
  | { type: "panel-removed"; id: string; sessionId?: string }
  | { type: "notice"; notice: UiNotice & { at: number } }
  | { type: "bye"; reason: string };

const panelKey = (id: string, sessionId?: string) => `${sessionId ?? ""}/${id}`;

export class UiState {
  private sessions: SessionView[] = [];
  private readonly records: RecordView[] = [];
  private readonly byId = new Map<string, RecordView>();
  private readonly panels = new Map<string, UiPanel>();
  private readonly notices: (UiNotice & { at: number })[] = [];
  private readonly tunnels = new Map<string, { state: string; detail?: string }>();
  private readonly pods = new Map<string, string | undefined>();
  private readonly listeners = new Set<(message: LiveMessage) => void>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private refreshing = false;

  constructor(
    private readonly api: Pick<PluginApi, "sessions" | "logger" | "errors">,
    private readonly hub: UiHub,
    private readonly kube: Kube | undefined,
  ) {}

  start(): void {
    this.hub.subscribe((event) => void this.receive(event));
    this.hub.onPublisher(() => void this.refreshSessions());
    void this.refreshSessions();
    this.timer = setInterval(() => void this.refreshSessions(), SESSIONS_REFRESH_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  subscribe(listener: (message: LiveMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Everything a page needs when it (re)opens. */
  snapshot() {
    return {
      sessions: this.sessions,
      records: this.records,
      panels: [...this.panels.values()],
      notices: this.notices,
    };
  }

  record(id: string): RecordView | undefined {
    return this.byId.get(id);
  }

  /** Says goodbye to every open page (ktctl ui is ending). */
  farewell(reason: string): void {
    this.send({ type: "bye", reason });
  }

  async refreshSessions(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const here = hostname();
      // This laptop's journals first: they name the namespaces whose leases tell the health.
      const local = (await this.api.sessions.list(undefined)).filter((s) => s.host === here);
      const merged = new Map(local.map((s) => [s.id, s]));
      if (this.kube) {
        for (const namespace of new Set(local.map((s) => s.namespace))) {
          try {
            for (const s of await this.api.sessions.list(this.kube, { namespace })) {
              if (s.host === here) merged.set(s.id, { ...merged.get(s.id), ...s, seenIn: [...new Set([...(merged.get(s.id)?.seenIn ?? []), ...s.seenIn])] });
            }
          } catch (error) {
            this.api.logger.debug(`ui: leases of ${namespace} not read: ${this.api.errors.text(error)}`);
          }
        }
      }
      const reporting = new Set(this.hub.publishers());
      const sessions: SessionView[] = [...merged.values()]
        .filter((s) => s.state === "alive" || s.pendingSteps > 0)
        .sort((a, b) => (a.ageSeconds ?? 0) - (b.ageSeconds ?? 0))
        .map((s) => {
          const tunnel = this.tunnels.get(s.id);
          return { ...s, tunnel: tunnel?.state, tunnelDetail: tunnel?.detail, reporting: s.pid !== undefined && reporting.has(s.pid) };
        });
      if (JSON.stringify(sessions) !== JSON.stringify(this.sessions)) {
        this.sessions = sessions;
        this.send({ type: "sessions", sessions });
      }
    } catch (error) {
      this.api.logger.debug(`ui: sessions not read: ${this.api.errors.text(error)}`);
    } finally {
      this.refreshing = false;
    }
  }

  private async receive({ at, event }: UiReceivedEvent): Promise<void> {
    switch (event.type) {
      case "traffic": {
        const record: RecordView = { ...event.record };
        record.remotePod = await this.podOf(record);
        this.records.push(record);
        this.byId.set(record.id, record);
        while (this.records.length > MAX_RECORDS) this.byId.delete(this.records.shift()!.id);
        this.send({ type: "traffic", record });
        return;
      }
      case "tunnel":
        this.tunnels.set(event.sessionId, { state: event.state, detail: event.detail });
        void this.refreshSessions();
        return;
      case "panel":
        this.panels.set(panelKey(event.panel.id, event.panel.sessionId), event.panel);
        this.send({ type: "panel", panel: event.panel });
        return;
      case "panel-removed":
        this.panels.delete(panelKey(event.id, event.sessionId));
        this.send(event);
        return;
      case "notice": {
        const notice = { ...event.notice, at };
        this.notices.push(notice);
        if (this.notices.length > 200) this.notices.shift();
        this.send({ type: "notice", notice });
        return;
      }
    }
  }

  /** The cluster pod behind a remote address, looked up once per address and never for long. */
  private async podOf(record: TrafficRecord): Promise<string | undefined> {
    if (!record.remote || !this.kube) return undefined;
    const ip = record.remote.replace(/^::ffff:/, "").replace(/:\d+$/, "");
    if (this.pods.has(ip)) return this.pods.get(ip);
    const namespace = this.sessions.find((s) => s.id === record.sessionId)?.namespace ?? this.kube.namespace;
    const lookup = this.kube
      .request<any>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?fieldSelector=${encodeURIComponent(`status.podIP=${ip}`)}`)
      .then((list) => {
        const pod = list?.items?.[0]?.metadata?.name as string | undefined;
        const name = pod ? `${namespace}/${pod}` : undefined;
        this.pods.set(ip, name);
        return name;
      })
      .catch(() => {
        this.pods.set(ip, undefined);
        return undefined;
      });
    return Promise.race([lookup, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), POD_LOOKUP_TIMEOUT_MS))]);
  }

  private send(message: LiveMessage): void {
    for (const listener of this.listeners) listener(message);
  }
}

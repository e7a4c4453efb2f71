// The page itself: one HTML document with its script and styles inline (nothing fetched from
// anywhere else), live through server-sent events. Data is only ever put in as text, never as HTML.

const STYLE = `
:root { color-scheme: light dark; --line: #8884; --dim: #888; --bad: #d33; --ok: #2a2; --warn: #c80; }
* { box-sizing: border-box; }
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; border-bottom: 1px solid var(--line); }
header h1 { font-size: 15px; margin: 0; }
#banner { margin-left: auto; }
#banner.down { color: var(--bad); font-weight: 600; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1em; padding: 1em; }
section { border: 1px solid var(--line); border-radius: 6px; padding: .5em .75em; min-width: 0; }
section h2 { font-size: 13px; margin: .2em 0 .5em; text-transform: uppercase; letter-spacing: .05em; color: var(--dim); }
.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 28em; }
th { color: var(--dim); font-weight: 500; }
#traffic tbody tr { cursor: pointer; }
#traffic tbody tr:hover, #traffic tbody tr.selected { background: #8882; }
.s2 { color: var(--ok); } .s3 { color: var(--dim); } .s4 { color: var(--warn); } .s5, .err { color: var(--bad); }
.scroll { max-height: 24em; overflow: auto; }
pre { white-space: pre-wrap; word-break: break-all; margin: .3em 0; font-size: 12px; }
button { font: inherit; cursor: pointer; }
.muted { color: var(--dim); }
.filters { display: flex; gap: .5em; margin-bottom: .5em; }
.filters input { flex: 1; }
`;

const SCRIPT = `
const token = new URLSearchParams(location.search).get("token");
const state = { sessions: [], records: [], panels: new Map(), selected: null };
const $ = (selector) => document.querySelector(selector);
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  return node;
}
async function call(method, path) {
  const response = await fetch(path, { method, headers: { "x-ktctl-token": token } });
  return response.json();
}
const age = (s) => s === undefined ? "-" : s < 120 ? s + "s" : s < 7200 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
const time = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false }) + "." + String(ms % 1000).padStart(3, "0");
const bytes = (n) => n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
const statusClass = (r) => r.error && r.status === undefined ? "err" : r.status ? "s" + String(r.status)[0] : "";

// The list is read again every few seconds (ages and renewals change each time). A session's row
// and its End button stay the same elements while it is listed: a button replaced under the
// pointer would lose the click that was meant for it.
function renderSessions() {
  const body = $("#sessions tbody");
  const rows = new Map([...body.children].map((tr) => [tr.dataset.session, tr]));
  body.replaceChildren(...state.sessions.map((s) => {
    const tr = rows.get(s.id) || el("tr", { data: { session: s.id } });
    const button = s.state === "alive" && s.pid ? tr.querySelector("button.end") || el("button", { class: "end", onclick: () => endSession(s.id) }, "End") : "";
    tr.replaceChildren(
      el("td", {}, s.id), el("td", {}, s.mode), el("td", {}, s.target || "-"), el("td", {}, s.namespace), el("td", {}, s.owner),
      el("td", {}, age(s.ageSeconds)),
      el("td", { class: s.state === "alive" ? "s2" : "err" }, s.state + (s.renewedSecondsAgo !== undefined ? " (renewed " + age(s.renewedSecondsAgo) + " ago)" : "")),
      el("td", { class: s.tunnel === "connected" ? "s2" : s.tunnel ? "err" : "muted", title: s.tunnelDetail || "" }, s.tunnel || (s.reporting ? "no shadow" : "-")),
      el("td", {}, button),
    );
    return tr;
  }));
  $("#sessions-empty").hidden = state.sessions.length > 0;
}

async function endSession(id) {
  if (!confirm("End session " + id + "? Its undo runs as on Ctrl-C.")) return;
  const answer = await call("POST", "/api/sessions/" + id + "/end");
  notice(answer.message, answer.ok ? "info" : "warn");
}

function matches(r) {
  const text = $("#filter-text").value.trim().toLowerCase();
  const status = $("#filter-status").value;
  if (status === "errors" && !(r.error || (r.status >= 500) || (r.grpcStatus && r.grpcStatus !== "0"))) return false;
  if (/^[1-5]xx$/.test(status) && String(r.status || "")[0] !== status[0]) return false;
  if (status === "tcp" && r.protocol !== "tcp") return false;
  if (!text) return true;
  return [r.method, r.path, r.authority, r.mark, r.via, r.remote, r.remotePod, r.status, r.protocol, r.sessionId].some((v) => v !== undefined && String(v).toLowerCase().includes(text));
}

function trafficRow(r) {
  return el("tr", { data: { id: r.id }, class: state.selected === r.id ? "selected" : "", onclick: () => select(r.id) },
    el("td", {}, time(r.time)),
    el("td", { class: "proto" }, r.protocol),
    el("td", { class: "method" }, r.method || "-"),
    el("td", { class: "path", title: r.path || "" }, r.path || (r.protocol === "tcp" ? "(connection)" : "-")),
    el("td", { class: "status " + statusClass(r) }, r.status ?? (r.error ? "—" : "")),
    el("td", { class: "grpc" }, r.grpcStatus ?? ""),
    el("td", { class: "mark" }, r.mark || ""),
    el("td", {}, r.durationMs !== undefined ? r.durationMs + " ms" : ""),
    el("td", {}, bytes(r.requestBytes) + " / " + bytes(r.responseBytes)),
    el("td", { title: r.remote || "" }, r.remotePod || r.remote || ""),
    el("td", { class: "via" }, r.via),
  );
}

function renderTraffic() {
  const rows = state.records.filter(matches).slice(-500).reverse().map(trafficRow);
  $("#traffic tbody").replaceChildren(...rows);
  $("#traffic-count").textContent = rows.length + " shown of " + state.records.length;
}

function addRecord(r) {
  state.records.push(r);
  if (state.records.length > 2000) state.records.shift();
  if (!matches(r)) return void ($("#traffic-count").textContent = $("#traffic tbody").children.length + " shown of " + state.records.length);
  $("#traffic tbody").prepend(trafficRow(r));
  $("#traffic-count").textContent = $("#traffic tbody").children.length + " shown of " + state.records.length;
}

function headersBlock(title, headers) {
  return [el("h3", {}, title), el("pre", {}, (headers || []).map(([n, v]) => n + ": " + v).join("\\n") || "(none)")];
}

function decode(b64) { try { return new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))); } catch { return "(binary)"; } }

function select(id) {
  state.selected = id;
  const r = state.records.find((x) => x.id === id);
  for (const row of document.querySelectorAll("#traffic tbody tr")) row.classList.toggle("selected", row.dataset.id === id);
  if (!r) return;
  const detail = $("#detail");
  detail.replaceChildren(
    el("div", {}, el("b", {}, (r.method || r.protocol) + " " + (r.path || "")), " ", el("span", { class: statusClass(r) }, r.status ?? ""), r.grpcStatus !== undefined ? " grpc-status " + r.grpcStatus : ""),
    el("div", { class: "muted" }, r.via + (r.remote ? " · from " + (r.remotePod ? r.remotePod + " (" + r.remote + ")" : r.remote) : "") + (r.local ? " · to " + r.local.host + ":" + r.local.port : "")),
    r.error ? el("div", { class: "err" }, r.error) : "",
    ...headersBlock("Request headers", r.requestHeaders),
    r.requestBody ? el("pre", {}, decode(r.requestBody)) : "",
    ...headersBlock("Response headers", r.responseHeaders),
    r.responseBody ? el("pre", {}, decode(r.responseBody)) : "",
    r.bodyTruncated ? el("div", { class: "muted" }, "bodies cut at the limit") : "",
    r.protocol === "http1" ? el("button", { id: "replay", onclick: () => replay(r.id) }, "Replay against the local process") : "",
    el("div", { id: "replay-result" }),
  );
}

async function replay(id) {
  const out = $("#replay-result");
  out.textContent = "replaying…";
  const answer = await call("POST", "/api/records/" + id + "/replay");
  if (answer.error) return void (out.replaceChildren(el("div", { class: "err" }, answer.error)));
  out.replaceChildren(
    el("div", {}, "Replay answered ", el("b", { class: "status s" + String(answer.status)[0] }, answer.status ?? "?"), " in " + answer.durationMs + " ms"),
    ...answer.notes.map((n) => el("div", { class: "muted" }, n)),
    el("pre", {}, answer.headers.map(([n, v]) => n + ": " + v).join("\\n")),
    el("pre", {}, answer.body + (answer.bodyTruncated ? "\\n(cut)" : "")),
  );
}

function renderPanels() {
  const host = $("#panels");
  const panels = [...state.panels.values()];
  host.replaceChildren(...panels.map((p) => el("section", { class: "panel", data: { panel: p.id } },
    el("h2", {}, p.title),
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, p.columns.map((c) => el("th", {}, c)))),
      el("tbody", {}, p.rows.map((row) => el("tr", {}, row.map((cell) => el("td", { title: cell }, cell))))))),
    p.rows.length ? "" : el("div", { class: "muted" }, "(empty)"),
    p.note ? el("div", { class: "muted" }, p.note) : "",
  )));
}

function notice(text, level, at) {
  const line = el("div", { class: level === "warn" ? "err" : "" }, time(at || Date.now()) + "  " + text);
  $("#notices").prepend(line);
}

async function planClean() {
  $("#clean-out").textContent = "planning…";
  const plan = await call("POST", "/api/clean/plan");
  if (plan.error) return void ($("#clean-out").textContent = plan.error);
  $("#clean-out").replaceChildren(el("pre", {}, plan.text),
    plan.entries ? el("button", { id: "clean-execute", onclick: () => executeClean(plan.id) }, "Clean these " + plan.entries + " session(s)") : "");
}

async function executeClean(id) {
  $("#clean-out").textContent = "cleaning…";
  const result = await call("POST", "/api/clean/" + id + "/execute");
  $("#clean-out").textContent = result.error || (result.undone + " step(s) undone, " + result.failed + " failed");
}

function setBanner(text, down) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.classList.toggle("down", down);
}

let ended = false;
const events = new EventSource("/events?token=" + encodeURIComponent(token));
events.addEventListener("open", () => setBanner("live", false));
events.addEventListener("snapshot", (e) => {
  const snap = JSON.parse(e.data);
  state.sessions = snap.sessions;
  state.records = snap.records;
  state.panels = new Map(snap.panels.map((p) => [(p.sessionId || "") + "/" + p.id, p]));
  renderSessions(); renderTraffic(); renderPanels();
  for (const n of snap.notices) notice(n.source + ": " + n.text, n.level, n.at);
});
events.addEventListener("sessions", (e) => { state.sessions = JSON.parse(e.data).sessions; renderSessions(); });
events.addEventListener("traffic", (e) => addRecord(JSON.parse(e.data).record));
events.addEventListener("panel", (e) => { const p = JSON.parse(e.data).panel; state.panels.set((p.sessionId || "") + "/" + p.id, p); renderPanels(); });
events.addEventListener("panel-removed", (e) => { const m = JSON.parse(e.data); state.panels.delete((m.sessionId || "") + "/" + m.id); renderPanels(); });
events.addEventListener("notice", (e) => { const n = JSON.parse(e.data).notice; notice(n.source + ": " + n.text, n.level, n.at); });
events.addEventListener("bye", (e) => {
  ended = true;
  events.close();
  setBanner("ktctl ui has ended (" + JSON.parse(e.data).reason + "): this page is no longer live", true);
});
// The browser would retry forever; one clear line instead.
events.addEventListener("error", () => {
  if (ended) return;
  ended = true;
  events.close();
  setBanner("lost the connection to ktctl ui: it is no longer running; this page is no longer live", true);
});
$("#filter-text").addEventListener("input", renderTraffic);
$("#filter-status").addEventListener("change", renderTraffic);
$("#clean-plan").addEventListener("click", planClean);
`;

export function renderPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ktctl ui</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>${STYLE}</style></head>
<body>
<header><h1>ktctl ui</h1><span class="muted">what reaches your laptop</span><span id="banner">connecting…</span></header>
<main>
<section class="wide"><h2>Sessions</h2>
<table id="sessions"><thead><tr><th>session</th><th>mode</th><th>target</th><th>namespace</th><th>owner</th><th>age</th><th>lease</th><th>tunnel</th><th></th></tr></thead><tbody></tbody></table>
<div id="sessions-empty" class="muted">no running sessions on this laptop</div>
<div><button id="clean-plan">Plan clean of expired sessions</button> <span id="clean-out" class="muted"></span></div>
</section>
<section><h2>Traffic <span id="traffic-count" class="muted"></span></h2>
<div class="filters"><input id="filter-text" placeholder="filter: path, method, mark, pod…">
<select id="filter-status"><option value="">all</option><option>2xx</option><option>3xx</option><option>4xx</option><option>5xx</option><option value="errors">errors</option><option value="tcp">tcp</option></select></div>
<div class="scroll" style="max-height:36em"><table id="traffic"><thead><tr><th>time</th><th>proto</th><th>method</th><th>path</th><th>status</th><th>grpc</th><th>mark</th><th>took</th><th>bytes in/out</th><th>from</th><th>via</th></tr></thead><tbody></tbody></table></div>
</section>
<section><h2>Details</h2><div id="detail" class="muted">select a request</div></section>
<div id="panels" class="wide" style="display:grid;grid-template-columns:repeat(auto-fit,minmax(28em,1fr));gap:1em"></div>
<section class="wide"><h2>Events</h2><div id="notices" class="scroll"></div></section>
</main>
<script>${SCRIPT}</script>
</body></html>`;
}

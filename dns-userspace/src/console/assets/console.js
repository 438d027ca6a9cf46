// dnslb web console: one page over the control API. No framework and no
// external asset: DOM nodes are built with h() and svg(), never from HTML
// strings, so names from zones and policy files cannot inject markup.
"use strict";

const TOKEN_KEY = "dnslb-token";
const HISTORY_SECONDS = 300;
const main = document.getElementById("main");
const live = document.getElementById("live");

// ---- DOM helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAll(el, attrs);
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAll(el, attrs);
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function setAll(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function fmt(n, digits = 1) {
  if (!Number.isFinite(n)) return "–";
  return n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(digits);
}

function ago(unix) {
  if (!unix) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function scroll(...children) {
  return h("div", { class: "scroll" }, ...children);
}

function table(headers, rows, attrs) {
  return scroll(
    h("table", attrs,
      h("thead", {}, h("tr", {}, headers.map((head) =>
        h("th", { scope: "col", class: head.endsWith(" ") ? "num" : null }, head.trim())))),
      h("tbody", {}, rows)));
}

function stateOf(endpoint) {
  if (endpoint.drained) return "drained";
  if (endpoint.condition && endpoint.condition !== "ready") return endpoint.condition;
  return endpoint.healthy ? "up" : "down";
}

function badge(state, text) {
  return h("span", { class: `badge ${state}` }, text || state);
}

// ---- The API ----

class ApiError extends Error {}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("The token was refused.");
    throw new ApiError("a bearer token is required");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(body && body.error ? body.error : `HTTP ${response.status}`);
  return body;
}

// ---- Live updates: server-sent events read with fetch (EventSource
// cannot send the token). "change" when what is answered changed,
// "tick" every second. ----

const listeners = new Set();
let eventsRunning = false;

async function followEvents() {
  if (eventsRunning) return;
  eventsRunning = true;
  while (sessionStorage.getItem(TOKEN_KEY)) {
    try {
      const response = await fetch("/v1/events", {
        headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
      });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = (block.match(/^event: (.*)$/m) || [])[1];
          if (type) for (const listener of listeners) listener(type);
        }
      }
    } catch (error) {
      setLive(false);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  eventsRunning = false;
}

function setLive(on) {
  live.textContent = on ? "live" : "reconnecting";
  live.className = `live ${on ? "on" : "off"}`;
}

// Query rates by path, sampled every tick whatever the page shows, so that
// the overview's chart covers the last minutes.
const rates = { samples: [], last: null, passed: [] };

async function sampleRates() {
  const stats = await api("/v1/stats");
  const userspace = stats.userspace_answered.reduce((sum, path) => sum + path.queries, 0);
  const now = { t: stats.uptime_seconds, kernel: stats.kernel_answered, userspace,
    passed: Object.fromEntries(stats.kernel_passed.map((p) => [p.reason, p.queries])) };
  if (rates.last && now.t > rates.last.t) {
    const dt = now.t - rates.last.t;
    rates.samples.push({
      at: Date.now(),
      kernel: Math.max(0, now.kernel - rates.last.kernel) / dt,
      userspace: Math.max(0, now.userspace - rates.last.userspace) / dt,
    });
    rates.passed = stats.kernel_passed.map(({ reason, queries }) =>
      [reason, queries, Math.max(0, queries - (rates.last.passed[reason] || 0)) / dt]);
    const oldest = Date.now() - HISTORY_SECONDS * 1000;
    while (rates.samples.length && rates.samples[0].at < oldest) rates.samples.shift();
  }
  rates.last = now;
  return stats;
}

listeners.add((type) => {
  if (type === "tick") sampleRates().catch(() => {});
});

// ---- Routing ----

let current = null;

const views = {
  overview: overviewView,
  services: servicesView,
  service: serviceView,
  simulate: simulateView,
  health: healthView,
  zones: zonesView,
  zone: zoneView,
  policy: policyView,
};

listeners.add((type) => {
  if (current && current.onEvent) current.onEvent(type);
});

function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showLogin();
    return;
  }
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = (path || "overview").split("/");
  const view = views[name] || overviewView;
  for (const link of document.querySelectorAll("nav a")) {
    const here = link.getAttribute("href") === `#/${name}` ||
      (name === "service" && link.getAttribute("href") === "#/services") ||
      (name === "zone" && link.getAttribute("href") === "#/zones");
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  current = view(rest.map(decodeURIComponent));
  followEvents();
}

window.addEventListener("hashchange", route);

function showLogin(message) {
  current = null;
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password",
    required: true, "aria-describedby": "token-help" });
  main.replaceChildren(
    h("h1", {}, "Sign in"),
    h("form", { class: "panel row", id: "login", onsubmit: (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      route();
    } },
    h("label", {}, "Bearer token", input),
    h("button", { class: "primary", type: "submit" }, "Sign in")),
    h("p", { id: "token-help", class: "muted" },
      "The first line of the daemon's --control-token-file. It is kept for this tab only."),
    message ? h("div", { class: "error" }, message) : null);
  input.focus();
}

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    const done = (answer) => {
      ok.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    cancel.addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
    ok.focus();
  });
}

function errorBox(error) {
  return h("div", { class: "error", role: "alert" }, String(error.message || error));
}

// A view keeps its content in one element and re-renders on events.
function mount(title, load, render, refreshOn = ["change", "tick"]) {
  const body = h("div", { class: "view" });
  main.append(h("h1", {}, title), body);
  let loading = false;
  const refresh = async () => {
    if (loading) return;
    loading = true;
    try {
      const data = await load();
      render(body, data);
    } catch (error) {
      if (!(error instanceof ApiError) || sessionStorage.getItem(TOKEN_KEY)) {
        body.replaceChildren(errorBox(error));
      }
    } finally {
      loading = false;
    }
  };
  refresh();
  return { onEvent: (type) => { if (refreshOn.includes(type)) refresh(); }, refresh };
}

// ---- Overview ----

function overviewView() {
  return mount("Overview",
    () => Promise.all([api("/v1/status"), api("/v1/health"), api("/v1/zones"), api("/v1/services")]),
    (body, [status, health, zones, services]) => {
      const failing = health.filter((row) => !row.up);
      const latest = rates.samples[rates.samples.length - 1] || { kernel: 0, userspace: 0 };
      body.replaceChildren(
        failing.length
          ? h("div", { class: "alert", role: "alert", id: "failing" },
            h("strong", {}, `${failing.length} failing check${failing.length > 1 ? "s" : ""}: `),
            failing.map((row, i) => [i ? ", " : "", `${row.check} on ${row.address} (pool ${row.pool})`]))
          : h("div", { class: "ok", id: "failing" }, "Every check passes."),
        h("div", { class: "cards" },
          card(fmt(latest.kernel), "queries/s answered in the kernel"),
          card(fmt(latest.userspace), "queries/s answered by the daemon"),
          card(zones.length, "zones"),
          card(services.length, "services"),
          card(status.xdp_mode, status.interface ? `XDP on ${status.interface}` : "XDP"),
          card(`${Math.floor(status.uptime_seconds / 60)} min`, `up, version ${status.version}`)),
        h("h2", {}, "Queries per second, last 5 minutes"),
        h("div", { class: "panel chart", id: "qps-chart" }, chart(rates.samples)),
        h("div", { class: "legend" },
          h("span", { class: "key-kernel" }, "━ kernel (XDP)"),
          h("span", { class: "key-userspace" }, "━ daemon")),
        h("h2", {}, "Why the kernel passed queries on"),
        table(["Reason", "Total ", "Per second "], rates.passed.map(([reason, total, rate]) =>
          h("tr", {}, h("td", {}, reason.replaceAll("_", " ")), h("td", { class: "num" }, total.toLocaleString("en")),
            h("td", { class: "num" }, fmt(rate))))),
        h("h2", {}, "Kernel maps"),
        table(["Record type", "Names up to ", "Entries ", "Capacity ", "Fill"],
          status.kernel_maps.map((map) => fillRow([map.record_type, `${map.names_up_to} bytes`],
            map.entries, map.capacity)).concat(status.client_networks
            ? [fillRow(["client networks", "–"], status.client_networks.entries, status.client_networks.capacity)]
            : [])),
        h("h2", {}, "Zones"),
        table(["Zone", "Serial ", "Names ", "Signed"], zones.map((zone) => h("tr", {},
          h("td", {}, h("a", { href: `#/zone/${encodeURIComponent(zone.origin)}` }, zone.origin)),
          h("td", { class: "num" }, zone.serial), h("td", { class: "num" }, zone.names),
          h("td", {}, zone.signed ? "yes" : "no")))));
    });
}

function card(value, label) {
  return h("div", { class: "card" }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}

function fillRow(cells, entries, capacity) {
  const share = capacity ? Math.min(1, entries / capacity) : 0;
  const bar = h("div", { class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": capacity,
    "aria-valuenow": entries, title: `${(share * 100).toFixed(1)}%` }, h("div", {}));
  bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
  return h("tr", {}, cells.map((cell, i) => h("td", { class: i ? "num" : null }, cell)),
    h("td", { class: "num" }, entries.toLocaleString("en")), h("td", { class: "num" }, capacity.toLocaleString("en")),
    h("td", {}, bar));
}

function chart(samples) {
  const width = 800;
  const height = 200;
  const top = Math.max(1, ...samples.map((s) => Math.max(s.kernel, s.userspace)));
  const now = Date.now();
  const x = (at) => width - ((now - at) / (HISTORY_SECONDS * 1000)) * width;
  const y = (v) => height - 14 - (v / top) * (height - 30);
  const line = (key) => samples.map((s) => `${x(s.at).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `Queries per second; now ${fmt((samples[samples.length - 1] || {}).kernel || 0)} in the kernel` },
  svg("line", { class: "axis", x1: 0, y1: height - 14, x2: width, y2: height - 14 }),
  svg("text", { x: 4, y: 12 }, `${fmt(top)}/s`),
  svg("text", { x: 4, y: height - 2 }, "5 min ago"),
  svg("text", { x: width - 30, y: height - 2 }, "now"),
  svg("polyline", { class: "kernel", points: line("kernel") }),
  svg("polyline", { class: "userspace", points: line("userspace") }));
}

// ---- Services ----

function servicesView() {
  let filter = "";
  const input = h("input", { type: "search", id: "service-filter", placeholder: "name, label or policy",
    "aria-label": "Filter services" });
  let all = [];
  const list = h("div", {});
  const draw = () => {
    const shown = all.filter((s) => !filter || `${s.label} ${s.name} ${s.policy}`.toLowerCase().includes(filter));
    list.replaceChildren(
      h("p", { class: "muted", id: "service-count" }, `${shown.length} of ${all.length} services`),
      table(["Service", "Name", "Type", "Policy", "TTL ", "State"], shown.map((s) => h("tr", {},
        h("td", {}, h("a", { href: `#/service/${encodeURIComponent(s.label)}` }, s.label)),
        h("td", { class: "mono" }, s.name), h("td", {}, s.record_type), h("td", {}, s.policy),
        h("td", { class: "num" }, s.ttl), h("td", {}, standingBadge(s)))), { id: "services" }));
  };
  input.addEventListener("input", () => { filter = input.value.trim().toLowerCase(); draw(); });
  main.append(h("h1", {}, "Services"), h("div", { class: "row" }, h("label", {}, "Filter", input)), list);
  api("/v1/services").then((services) => { all = services; draw(); }).catch((e) => list.replaceChildren(errorBox(e)));
  return { onEvent: () => {} };
}

function serviceView([label]) {
  const answersBefore = new Map();
  const status = h("div", { role: "status", "aria-live": "polite", id: "action-result" });
  const view = mount(`Service ${label}`, () => api(`/v1/services/${encodeURIComponent(label)}`),
    (body, detail) => {
      const rate = new Map();
      const now = performance.now();
      for (const node of detail.graph) {
        if (node.kind !== "pool") continue;
        const before = answersBefore.get(node.id);
        if (before) rate.set(node.id, (node.answers - before.answers) / ((now - before.at) / 1000));
        answersBefore.set(node.id, { answers: node.answers, at: now });
      }
      const s = detail.service;
      body.replaceChildren(
        h("p", {}, h("span", { class: "mono" }, s.name), ` ${s.record_type}, TTL ${s.ttl}, ${s.policy}`,
          s.fail_closed ? ", fails closed" : ""),
        s.standing_reason ? h("div", { class: "error", id: "service-standing" },
          standingBadge(s), ` ${s.standing_reason}`) : "",
        legend(),
        graph(detail.graph, { rate }),
        status,
        h("h2", {}, "Endpoints"),
        table(["Pool", "Address", "State", "Weight", "Actions"], detail.endpoints.map((e) => endpointRow(e, view, status)),
          { id: "endpoints" }),
        h("h2", {}, "What each client network gets now"),
        table(["Client network", "Branch", "Addresses"], detail.networks.map((n) => h("tr", {},
          h("td", { class: "mono" }, n.network), h("td", {}, n.branch), h("td", { class: "mono" }, n.addresses.join(", "))))));
    });
  return view;
}

// A service's standing: healthy, or failing open or closed (the reason on hover).
function standingBadge(service) {
  const state = service.standing === "healthy" ? "up" : service.standing === "failing open" ? "starting" : "down";
  const badgeEl = badge(state, service.standing || "healthy");
  if (service.standing_reason) badgeEl.title = service.standing_reason;
  return badgeEl;
}

function legend() {
  return h("div", { class: "legend", "aria-hidden": "true" },
    badge("up", "healthy"), badge("down", "unhealthy"), badge("drained", "drained"),
    badge("starting", "starting or draining"));
}

// What load and slow start make of an endpoint's weight, for a title or a
// table cell: empty where they do not weigh it.
function weighing(endpoint) {
  if (!endpoint.weighing) return "";
  const load = endpoint.load !== null && endpoint.load !== undefined ? `, load ${endpoint.load.toFixed(2)}` : "";
  return `, effective weight ${endpoint.effective_weight.toFixed(2)}${load} (${endpoint.weighing})`;
}

function endpointRow(endpoint, view, status) {
  const state = stateOf(endpoint);
  const weight = h("input", { type: "number", min: 0, max: 255, value: endpoint.weight, class: "weight",
    "aria-label": `Weight of ${endpoint.address} in pool ${endpoint.pool}` });
  const ref = { address: endpoint.address, pool: endpoint.pool };
  const act = async (question, path, body, done) => {
    if (!(await confirmAction(question))) return;
    try {
      await api(path, { method: "POST", body });
      status.replaceChildren(h("div", { class: "ok" }, done));
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
    view.refresh();
  };
  const drain = endpoint.drained
    ? h("button", { type: "button", class: "undrain", "data-address": endpoint.address,
      onclick: () => act(`Undrain ${endpoint.address} in pool ${endpoint.pool}? It is answered again while healthy.`,
        "/v1/endpoints/undrain", ref, `Undrained ${endpoint.address} in pool ${endpoint.pool}.`) }, "Undrain")
    : h("button", { type: "button", class: "drain danger", "data-address": endpoint.address,
      onclick: () => act(`Drain ${endpoint.address} in pool ${endpoint.pool}? It leaves every answer at once.`,
        "/v1/endpoints/drain", ref, `Drained ${endpoint.address} in pool ${endpoint.pool}.`) }, "Drain");
  const setWeight = h("button", { type: "button", class: "set-weight", onclick: () => {
    const value = Number(weight.value);
    if (!Number.isInteger(value) || value < 0 || value > 255) {
      status.replaceChildren(errorBox(new Error("A weight is a whole number from 0 to 255.")));
      return;
    }
    act(`Set the weight of ${endpoint.address} in pool ${endpoint.pool} to ${value} (from ${endpoint.weight})?`,
      "/v1/endpoints/weight", Object.assign({ weight: value }, ref),
      `Weight of ${endpoint.address} in pool ${endpoint.pool} is now ${value}.`);
  } }, "Set weight");
  return h("tr", { "data-address": endpoint.address, "data-state": state },
    h("td", {}, endpoint.pool), h("td", { class: "mono" }, endpoint.address), h("td", {}, badge(state)),
    h("td", {}, h("div", { class: "row" }, weight, setWeight,
      endpoint.weight !== endpoint.file_weight ? h("span", { class: "muted" }, `file: ${endpoint.file_weight}`) : null),
      endpoint.weighing ? h("div", { class: "muted weighing" }, weighing(endpoint).replace(/^, /, "")) : null),
    h("td", {}, drain));
}

// The policy tree as Traffic Flow draws it: columns by depth, leaves one
// row each, a parent centred on its children.
function graph(nodes, { rate = new Map(), path = null } = {}) {
  const col = 250;
  const row = 56;
  const boxW = 210;
  const boxH = 40;
  // Room above the first box for its edge's label.
  const top = 16;
  const children = new Map(nodes.map((n) => [n.id, []]));
  const depth = new Map();
  for (const n of nodes) {
    if (n.parent !== null) children.get(n.parent).push(n);
    depth.set(n.id, n.parent === null ? 0 : depth.get(n.parent) + 1);
  }
  const y = new Map();
  let leaf = 0;
  const place = (n) => {
    const kids = children.get(n.id);
    if (!kids.length) {
      y.set(n.id, top + leaf++ * row + row / 2);
      return;
    }
    kids.forEach(place);
    y.set(n.id, (y.get(kids[0].id) + y.get(kids[kids.length - 1].id)) / 2);
  };
  nodes.filter((n) => n.parent === null).forEach(place);
  const maxDepth = Math.max(0, ...depth.values());
  const width = maxDepth * col + boxW + 20;
  const height = top + Math.max(1, leaf) * row + 4;
  const x = (n) => 10 + depth.get(n.id) * col;
  const onPath = (n) => path !== null && path.has(n.id);
  const edges = [];
  const boxes = [];
  for (const n of nodes) {
    if (n.parent !== null) {
      const p = nodes[n.parent];
      const x1 = x(p) + boxW;
      const y1 = y.get(p.id);
      const x2 = x(n);
      const y2 = y.get(n.id);
      const mid = (x1 + x2) / 2;
      edges.push(svg("path", { class: `edge${onPath(n) ? " on-path" : ""}`,
        d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
      const perSecond = rate.has(n.id) ? ` ${fmt(rate.get(n.id))}/s` : "";
      edges.push(svg("text", { class: "edge-label", x: x2 - 4, y: y2 - boxH / 2 - 2, "text-anchor": "end" },
        n.edge, perSecond ? svg("tspan", { class: "rate" }, perSecond) : null));
    }
    const state = n.endpoint ? stateOf(n.endpoint) : "";
    const short = (text) => (text.length > 30 ? `${text.slice(0, 29)}…` : text);
    const label = short(n.endpoint ? `${n.label} · ${state}` : n.label);
    const lines = n.detail
      ? [svg("text", { x: 10, y: 17 }, label), svg("text", { class: "detail", x: 10, y: 32 }, short(n.detail))]
      : [svg("text", { x: 10, y: boxH / 2 + 4 }, label)];
    boxes.push(svg("g", { class: `node ${n.kind} ${state}${onPath(n) ? " on-path" : ""}`,
      "data-kind": n.kind, "data-state": state || null, "data-address": n.endpoint ? n.endpoint.address : null,
      "data-pool": n.endpoint ? n.endpoint.pool : null, "data-branch": n.branch || null,
      "data-effective-weight": n.endpoint && n.endpoint.weighing ? n.endpoint.effective_weight : null,
      "data-load": n.endpoint && n.endpoint.load !== null && n.endpoint.load !== undefined ? n.endpoint.load : null,
      transform: `translate(${x(n)},${y.get(n.id) - boxH / 2})` },
    svg("title", {}, n.endpoint ? `${n.label}: ${state}, pool ${n.endpoint.pool}, weight ${n.endpoint.weight}${weighing(n.endpoint)}`
      : `${n.label} ${n.detail}`),
    svg("rect", { width: boxW, height: boxH, rx: 6 }),
    lines));
  }
  return h("div", { class: "graph", id: "graph" },
    svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `Policy graph of ${nodes.length ? nodes[0].label : ""}` }, edges, boxes));
}

// ---- What does this client get? ----

function simulateView() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const name = h("input", { id: "sim-name", required: true, placeholder: "www.example.com", value: params.get("name") || "" });
  const client = h("input", { id: "sim-client", required: true, placeholder: "198.18.0.10 or 198.18.0.0/24",
    value: params.get("client") || "" });
  const qtype = h("input", { id: "sim-qtype", placeholder: "A", list: "qtypes", class: "weight", value: params.get("qtype") || "" });
  const result = h("div", { id: "sim-result", "aria-live": "polite" });
  const ask = async (event) => {
    event.preventDefault();
    const query = new URLSearchParams({ name: name.value.trim(), client: client.value.trim() });
    if (qtype.value.trim()) query.set("qtype", qtype.value.trim());
    try {
      const answer = await api(`/v1/simulate?${query}`);
      let drawing = null;
      if (answer.service) {
        const detail = await api(`/v1/services/${encodeURIComponent(answer.service)}`);
        drawing = graph(detail.graph, { path: pathOf(detail.graph, answer) });
      }
      result.replaceChildren(simulation(answer), drawing);
    } catch (error) {
      result.replaceChildren(errorBox(error));
    }
  };
  main.append(h("h1", {}, "What does this client get?"),
    h("form", { class: "panel row", id: "simulate", onsubmit: ask },
      h("label", {}, "Name", name), h("label", {}, "Client address or subnet", client),
      h("label", {}, "Type", qtype),
      h("datalist", { id: "qtypes" }, ["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV"].map((t) => h("option", { value: t }))),
      h("button", { class: "primary", type: "submit" }, "Ask")),
    h("p", { class: "muted" }, "A subnet is asked as a resolver sends it, in EDNS Client Subnet. The answer is the daemon's own; " +
      "whether the kernel answers is read from the kernel's maps."),
    result);
  return { onEvent: () => {} };
}

function simulation(answer) {
  return h("div", { class: "panel" },
    h("p", {}, "Answered by ", h("span", { class: `badge ${answer.answered_by}`, id: "answered-by" },
      answer.answered_by === "kernel" ? "the kernel (XDP)" : "the daemon"), " ",
    h("span", { class: "muted", id: "answered-why" }, answer.reason)),
    h("p", {}, `${answer.name} ${answer.qtype} for client ${answer.client}: `, h("strong", {}, answer.rcode)),
    answer.answers.length
      ? h("pre", { class: "mono", id: "sim-answers" }, answer.answers.join("\n"))
      : h("p", { id: "sim-answers", class: "muted" }, "No records in the answer section."),
    answer.service
      ? h("p", {}, "Decided by service ", h("a", { href: `#/service/${encodeURIComponent(answer.service)}` }, answer.service),
        answer.branches.length ? [", branch ", h("strong", { id: "sim-branches" }, answer.branches.join(" or "))] : "")
      : null);
}

// The nodes from the name down to the endpoints that answered.
function pathOf(nodes, answer) {
  const onPath = new Set();
  const addresses = new Set(answer.answers.map((record) => record.trim().split(/\s+/).pop()));
  const up = (node) => {
    for (let n = node; n && !onPath.has(n.id); n = n.parent === null ? null : nodes[n.parent]) onPath.add(n.id);
  };
  for (const node of nodes) {
    if (node.kind === "pool" && answer.branches.includes(node.branch)) {
      up(node);
      for (const e of nodes) if (e.parent === node.id && addresses.has(e.label)) onPath.add(e.id);
    }
  }
  return onPath;
}

// ---- Health ----

function healthView() {
  return mount("Health checks", () => api("/v1/health"), (body, rows) => {
    rows.sort((a, b) => Number(a.up) - Number(b.up) || a.check.localeCompare(b.check) || a.address.localeCompare(b.address));
    body.replaceChildren(
      h("p", { class: "muted" }, `${rows.length} checks on endpoints, ${rows.filter((r) => !r.up).length} failing.`),
      table(["Check", "Pool", "Endpoint", "Verdict", "Last latency ", "Latency history", "Last transition", "Failures in a row ", "Probes "],
        rows.map((r) => h("tr", { "data-address": r.address, "data-up": String(r.up) },
          h("td", {}, r.check), h("td", {}, r.pool),
          h("td", { class: "mono" }, r.port ? `${r.address}:${r.port}` : r.address),
          h("td", {}, badge(r.up ? "up" : "down", r.up ? "healthy" : "unhealthy")),
          h("td", { class: "num" }, `${fmt(r.last_latency_ms, 2)} ms`),
          h("td", {}, sparkline(r.latency_history_ms)),
          h("td", { title: r.last_transition ? new Date(r.last_transition * 1000).toISOString() : "" }, ago(r.last_transition)),
          h("td", { class: "num" }, r.failures_in_row), h("td", { class: "num" }, r.probes))), { id: "health" }));
  });
}

function sparkline(values) {
  const top = Math.max(0.001, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(22 - (v / top) * 20).toFixed(1)}`).join(" ");
  return svg("svg", { class: "spark", viewBox: "0 0 120 24", role: "img",
    "aria-label": `latency of the last ${values.length} probes, up to ${fmt(top, 2)} ms` },
  svg("polyline", { points }));
}

// ---- Zones ----

function zonesView() {
  const status = h("div", { id: "zone-result", role: "status", "aria-live": "polite" });
  const origin = h("input", { id: "zone-origin", required: true, placeholder: "example.com." });
  const file = h("input", { id: "zone-file", required: true, placeholder: "/etc/dnslb/example.com.zone" });
  const act = async (question, path, method, body, done) => {
    if (!(await confirmAction(question))) return;
    try {
      const applied = await api(path, { method, body });
      status.replaceChildren(h("div", { class: "ok" }, `${done}: ${applied.zones} zones, ${applied.kernel_written} kernel entries written, ${applied.kernel_removed} removed.`));
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
    view.refresh();
  };
  main.append(h("h1", {}, "Zones"),
    h("form", { class: "panel row", id: "load-zone", onsubmit: (event) => {
      event.preventDefault();
      const name = origin.value.trim();
      act(`Serve ${name} from ${file.value.trim()}? The zone is read and checked whole first.`,
        `/v1/zones/${encodeURIComponent(name)}`, "PUT", { file: file.value.trim() }, `Loaded ${name}`);
    } },
    h("label", {}, "Zone", origin), h("label", {}, "File on the server", file),
    h("button", { class: "primary", type: "submit" }, "Load")),
    status);
  const body = h("div", {});
  main.append(body);
  const view = {
    refresh: async () => {
      try {
        const zones = await api("/v1/zones");
        body.replaceChildren(table(["Zone", "Serial ", "Names ", "Signed", "From", "File", ""], zones.map((z) => h("tr", {},
          h("td", {}, h("a", { href: `#/zone/${encodeURIComponent(z.origin)}` }, z.origin)),
          h("td", { class: "num" }, z.serial), h("td", { class: "num" }, z.names), h("td", {}, z.signed ? "yes" : "no"),
          h("td", {}, z.source.replaceAll("-", " ")), h("td", { class: "mono" }, z.file),
          h("td", {}, h("button", { type: "button", onclick: () => act(`Read ${z.file} again for ${z.origin}?`,
            `/v1/zones/${encodeURIComponent(z.origin)}/reload`, "POST", undefined, `Reloaded ${z.origin}`) }, "Reload")))),
        { id: "zones" }));
      } catch (error) {
        body.replaceChildren(errorBox(error));
      }
    },
    onEvent: (type) => { if (type === "change") view.refresh(); },
  };
  view.refresh();
  return view;
}

function zoneView([origin]) {
  const search = h("input", { type: "search", id: "record-search", placeholder: "name, type or data", "aria-label": "Search records" });
  const body = h("div", {});
  const load = async () => {
    try {
      const query = new URLSearchParams({ search: search.value.trim() });
      const found = await api(`/v1/zones/${encodeURIComponent(origin)}/records?${query}`);
      body.replaceChildren(
        h("p", { class: "muted", id: "record-count" }, `${found.matching} records match; ${found.records.length} shown.`),
        table(["Name", "TTL ", "Type", "Data"], found.records.map((r) => h("tr", {},
          h("td", { class: "mono" }, r.name), h("td", { class: "num" }, r.ttl), h("td", {}, r.record_type),
          h("td", { class: "mono" }, r.data))), { id: "records" }));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  };
  search.addEventListener("input", debounce(load, 250));
  const signing = h("div", { id: "zone-dnssec" });
  main.append(h("h1", {}, `Zone ${origin}`), signing, h("div", { class: "row" }, h("label", {}, "Search", search)), body);
  const refresh = () => { load(); dnssecPanel(origin, signing); };
  refresh();
  return { onEvent: (type) => { if (type === "change") refresh(); } };
}

// The zone's DNSSEC: its keys and their states, the DS for the parent,
// the online signer's cache; for a zone dnslb signs, rolls on command.
async function dnssecPanel(origin, panel) {
  const status = h("div", { id: "dnssec-result", role: "status", "aria-live": "polite" });
  let zone;
  try {
    const wanted = origin.endsWith(".") ? origin : `${origin}.`;
    zone = (await api("/v1/dnssec")).find((z) => z.origin.toLowerCase() === wanted.toLowerCase());
  } catch (error) {
    panel.replaceChildren(errorBox(error));
    return;
  }
  if (!zone) {
    panel.replaceChildren(h("p", { class: "muted" }, "Not signed."));
    return;
  }
  const when = (at) => (at ? new Date(at * 1000).toISOString() : "–");
  const roll = async (key) => {
    if (!(await confirmAction(`Start a ${key.toUpperCase()} roll of ${zone.origin}?`))) return;
    try {
      await api(`/v1/dnssec/${encodeURIComponent(zone.origin)}/roll`, { method: "POST", body: { key } });
      status.replaceChildren(h("div", { class: "ok" }, `${key.toUpperCase()} roll of ${zone.origin} started.`));
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
    dnssecPanel(origin, panel);
  };
  const signer = zone.signer;
  const parts = [
    h("h2", {}, `DNSSEC (${zone.mode === "online" ? "signed by dnslb" : "signed elsewhere"})`),
    table(["Key tag ", "Algorithm", "Role", "State", "Next event", "DS"], zone.keys.map((k) => h("tr", { "data-tag": String(k.tag) },
      h("td", { class: "num" }, k.tag), h("td", {}, `${k.algorithm_name} (${k.algorithm})`), h("td", {}, k.role.toUpperCase()),
      h("td", {}, k.state ? `${k.state}${k.cds_published ? ", CDS published" : ""}` : "–"),
      h("td", {}, when(k.next_event)), h("td", { class: "mono" }, k.ds || "–"))), { id: "dnssec-keys" }),
  ];
  if (signer) {
    const asked = signer.cache_hits + signer.cache_misses;
    parts.push(h("p", { class: "muted", id: "dnssec-signer" },
      `${signer.cache_entries} RRsets' signatures cached (${Math.ceil(signer.cache_bytes / 1024)} KiB), ` +
      `hit rate ${asked ? fmt((100 * signer.cache_hits) / asked, 1) : "–"}%; ${signer.signatures_made} signatures made, ` +
      `${signer.signing_failures} failures; next key event ${when(signer.next_key_event)}.`),
    h("div", { class: "row" },
      h("button", { type: "button", id: "roll-zsk", onclick: () => roll("zsk") }, "Roll ZSK"),
      h("button", { type: "button", id: "roll-ksk", onclick: () => roll("ksk") }, "Roll KSK")), status);
  } else {
    parts.push(h("p", { class: "muted" }, `${zone.signatures} signatures; the first expires ${when(zone.first_expiration)}.`));
  }
  panel.replaceChildren(h("section", { class: "panel" }, ...parts));
}

// ---- Policy editor ----

function policyView() {
  const editor = h("textarea", { id: "policy-text", spellcheck: "false", "aria-label": "Policy file",
    "aria-describedby": "policy-problems" });
  const problems = h("div", { id: "policy-problems", "aria-live": "polite" });
  const diff = h("div", { class: "diff", id: "policy-diff", tabindex: 0, "aria-label": "Changes against the file being served" });
  const status = h("div", { id: "policy-result", role: "status", "aria-live": "polite" });
  const apply = h("button", { class: "primary", type: "button", id: "policy-apply", disabled: true }, "Apply");
  const file = h("span", { class: "mono" });
  let served = "";
  let checked = null;

  const check = async () => {
    const text = editor.value;
    try {
      const result = await api("/v1/policy/check", { method: "POST", body: { text } });
      if (text !== editor.value) return;
      checked = result;
      problems.replaceChildren(result.problems.length
        ? h("div", { class: "error", role: "alert" }, result.problems.map((p) =>
          h("div", { class: "problem", "data-line": p.line || "" },
            p.line ? h("button", { type: "button", onclick: () => goToLine(editor, p.line) }, `line ${p.line}`) : null, " ", p.message)))
        : h("div", { class: "ok" }, "Valid: the same checks as dnslb check, against the zones being served."));
      drawDiff(diff, result.diff);
      apply.disabled = result.problems.length > 0 || text === served;
    } catch (error) {
      problems.replaceChildren(errorBox(error));
      apply.disabled = true;
    }
  };
  editor.addEventListener("input", () => { apply.disabled = true; debouncedCheck(); });
  const debouncedCheck = debounce(check, 300);
  apply.addEventListener("click", async () => {
    const text = editor.value;
    const changed = checked ? checked.diff.filter((l) => l.change !== "same").length : 0;
    if (!(await confirmAction(`Apply ${changed} changed lines to the policy file? They are checked again, written, and applied together.`))) return;
    try {
      const applied = await api("/v1/policy", { method: "PUT", body: { text } });
      served = text;
      status.replaceChildren(h("div", { class: "ok" }, `Applied: ${applied.services} services, ${applied.zones} zones.`));
      check();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  });
  main.append(h("h1", {}, "Policy"), h("p", {}, "Editing ", file, ". Changes are checked as you type."),
    h("div", { class: "editor" }, h("div", {}, editor, h("div", { class: "row" }, apply), status),
      h("div", {}, problems, h("h2", {}, "Changes"), diff)));
  api("/v1/policy").then((policy) => {
    served = policy.text;
    editor.value = policy.text;
    file.textContent = policy.file;
    check();
  }).catch((error) => status.replaceChildren(errorBox(error)));
  return { onEvent: () => {} };
}

function goToLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

// Changed lines with two lines of context; runs of unchanged lines elided.
function drawDiff(box, lines) {
  const keep = lines.map((l, i) => l.change !== "same" ||
    lines.slice(Math.max(0, i - 2), i + 3).some((n) => n.change !== "same"));
  const out = [];
  let gap = false;
  lines.forEach((l, i) => {
    if (!keep[i]) {
      if (!gap) out.push(h("div", { class: "gap" }, "…"));
      gap = true;
      return;
    }
    gap = false;
    const mark = l.change === "added" ? "+ " : l.change === "removed" ? "- " : "  ";
    out.push(h("div", { class: l.change }, mark + l.text));
  });
  box.replaceChildren(...(lines.some((l) => l.change !== "same") ? out : [h("div", { class: "gap" }, "No changes.")]));
}

// "/" focuses the page's filter or search box, as in many consoles.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.target.closest("input, textarea, select")) return;
  const box = main.querySelector("input[type=search]");
  if (box) {
    event.preventDefault();
    box.focus();
  }
});

route();

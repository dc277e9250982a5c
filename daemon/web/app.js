// Iris dashboard: polls /api/dashboard once a second and redraws.
// Plain JS, no dependencies; every string from the daemon goes into the
// page as text, never as HTML.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

// h builds an element: h("td", {class: "num"}, "text", child, ...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

function text(id, value) {
  const el = document.getElementById(id);
  if (el.textContent !== String(value)) el.textContent = value;
}

// fmtRate formats a per-second rate compactly: 0, 0.4, 12, 1.3k, 2.1M.
function fmtRate(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return Math.round(v / 1e3) + "k";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (v >= 10 || v === 0) return String(Math.round(v));
  return v.toFixed(1);
}

function fmtCount(v) {
  return v.toLocaleString("en-US");
}

// replaceRows swaps a table body's rows only when their content changed,
// so that selections and hover states survive the once-a-second refresh.
function replaceRows(tbody, rows, emptyId) {
  const next = h("tbody", {}, ...rows);
  if (tbody.innerHTML !== next.innerHTML) tbody.replaceWith(next);
  if (emptyId) document.getElementById(emptyId).hidden = rows.length > 0;
}

function stateCell(state) {
  return h("span", { class: "state state-" + state }, state);
}

function daemonChips(byDaemon, self) {
  const ids = Object.keys(byDaemon).sort();
  return h("div", { class: "chips" }, ...ids.map((id) =>
    h("span", { class: "chip" + (id === self ? " chip-self" : ""), "data-daemon": id },
      id, byDaemon[id] === null ? null : h("span", { class: "count" }, byDaemon[id]))));
}

function renderDaemons(d) {
  const rows = d.daemons.map((m) => h("tr", { "data-daemon": m.id, "data-state": m.state },
    h("td", { class: "mono" }, m.id, m.self ? h("span", { class: "self-tag" }, "this daemon") : null),
    h("td", { class: "mono" }, m.addr),
    h("td", {}, m.zone ? m.zone : h("span", { class: "zone-none" }, "—")),
    h("td", {}, stateCell(m.state))));
  replaceRows(document.querySelector("#daemons tbody"), rows);
}

function renderClusters(d) {
  const rows = d.clusters.map((c) => h("tr", { "data-cluster": c.name, "data-total": c.total },
    h("td", { class: "mono" }, c.name),
    h("td", { class: "num" }, c.total),
    h("td", {}, daemonChips(c.members, d.node))));
  replaceRows(document.querySelector("#clusters tbody"), rows, "clusters-empty");
}

function renderTopics(d) {
  const rows = d.topics.map((t) => {
    const on = {};
    for (const id of t.daemons) on[id] = null;
    return h("tr", { "data-topic": t.name },
      h("td", { class: "mono" }, t.name),
      h("td", { class: "num" }, t.local),
      h("td", {}, daemonChips(on, d.node)));
  });
  replaceRows(document.querySelector("#topics tbody"), rows, "topics-empty");
}

// Charts are built once per series and updated in place.
const charts = new Map();

function chartFor(series) {
  let c = charts.get(series.name);
  if (c) return c;
  const now = h("span", { class: "chart-now" });
  const plot = svg("svg", { viewBox: "0 0 300 60", preserveAspectRatio: "none", role: "img", "aria-label": series.label + " per second" });
  const area = svg("path", { class: "area" });
  const line = svg("path", { class: "line" });
  plot.append(svg("line", { class: "base", x1: 0, y1: 59.5, x2: 300, y2: 59.5 }), area, line);
  const peak = h("span");
  const total = h("span");
  const el = h("div", { class: "chart", "data-series": series.name },
    h("div", { class: "chart-head" }, h("span", { class: "chart-title" }, series.label), now),
    plot,
    h("div", { class: "chart-foot" }, peak, total));
  document.getElementById("rates").append(el);
  c = { el, now, area, line, peak, total };
  charts.set(series.name, c);
  return c;
}

// fmtSpan names a chart's time span: "1 min", "2.5 min", "5 min".
function fmtSpan(seconds) {
  const m = seconds / 60;
  return (Number.isInteger(m) ? m : m.toFixed(1)) + " min";
}

function renderRates(d) {
  const seen = new Set();
  for (const s of d.rates.series) {
    seen.add(s.name);
    const c = chartFor(s);
    const rates = s.rates;
    // The window grows from one minute to all the history the daemon keeps;
    // the line fills it from the right.
    const span = Math.max(60, rates.length);
    const last = rates.length ? rates[rates.length - 1] : 0;
    const peak = Math.max(0, ...rates);
    const top = Math.max(1, peak * 1.15);
    const x0 = span - rates.length;
    const xOf = (i) => (((x0 + i) * 300) / Math.max(1, span - 1)).toFixed(1);
    let p = "";
    rates.forEach((v, i) => {
      p += (i ? "L" : "M") + xOf(i) + " " + (59 - (v / top) * 56).toFixed(1);
    });
    c.line.setAttribute("d", p);
    c.area.setAttribute("d", rates.length ? p + "L300 60L" + xOf(0) + " 60Z" : "");
    c.now.replaceChildren(fmtRate(last), h("small", {}, "/s"));
    c.peak.textContent = "peak " + fmtRate(peak) + "/s · last " + fmtSpan(span * d.rates.step);
    c.total.textContent = fmtCount(s.total) + " total";
    c.el.dataset.samples = rates.length;
  }
  for (const [name, c] of charts) {
    if (!seen.has(name)) { c.el.remove(); charts.delete(name); }
  }
}

function renderHeader(d) {
  text("network", d.network);
  text("node", d.node);
  document.title = "Iris · " + d.network + " · " + d.node;
  const ready = document.getElementById("ready");
  ready.className = "badge " + (d.ready.ready ? "badge-ok" : "badge-wait");
  ready.textContent = d.ready.ready ? "ready" : "not ready";
  ready.title = d.ready.reason || "";
  const alive = d.daemons.filter((m) => m.state === "alive").length;
  text("stat-daemons", alive + " / " + d.daemons.length);
  text("stat-clusters", d.clusters.length);
  text("stat-members", d.clusters.reduce((n, c) => n + c.total, 0));
  text("stat-topics", d.topics.length);
  text("stat-tunnels", d.tunnels);
  text("stat-apps", d.apps);
  text("updated", "updated " + new Date(d.rates.end || Date.now()).toLocaleTimeString("en-GB"));
}

function render(d) {
  renderHeader(d);
  renderRates(d);
  renderDaemons(d);
  renderClusters(d);
  renderTopics(d);
  document.body.dataset.loaded = "true";
}

async function poll() {
  try {
    const resp = await fetch("api/dashboard", { cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    render(await resp.json());
  } catch (err) {
    const ready = document.getElementById("ready");
    ready.className = "badge badge-bad";
    ready.textContent = "disconnected";
    ready.title = String(err);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();

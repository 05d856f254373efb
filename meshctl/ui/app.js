// meshctl web view: the topology graph, contracts, proxy sync status, live over SSE, and a time
// slider over the recorded history. No build step; cytoscape.js is vendored in vendor/.
//
// Auth: the page reads ?token= from its own URL. fetch() sends it as a bearer header; the event
// stream gets it as ?token= because EventSource cannot set headers (the API accepts that on
// /v1/topology/stream only).
"use strict";

(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const { STYLE, LIVE_STATES, elements, fmtNum } = window.MeshGraph;
  const PROXY_POLL_MS = 2000;

  const ui = {
    history: [],        // summaries, oldest first: {version, at, cause, detail, providers, contracts}
    live: null,         // newest snapshot seen on the stream
    shown: null,        // snapshot drawn now
    following: true,    // true: redraw on every live change; false: looking at an older version
    proxies: [],
    proxiesByService: new Map(),
    selected: null,     // contract id highlighted
    cy: null,
    drawCount: 0,
  };
  window.meshctl = ui; // for operators' consoles and the browser test

  // -- small helpers ----------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(epoch) {
    if (epoch === null || epoch === undefined) return "–";
    const d = new Date(epoch * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtAgo(epoch) {
    const s = Math.round(Date.now() / 1000 - epoch);
    if (s < 60) return `${Math.max(s, 0)}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    return `${Math.round(s / 3600)}h ago`;
  }
  const detailText = (d) => Object.entries(d || {}).map(([k, v]) => `${k}=${v}`).join(" ");

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: `Bearer ${TOKEN}` } });
    if (!resp.ok) {
      let msg = `${resp.status}`;
      try { msg = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }

  function banner(text, kind) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
    b.className = `banner ${kind || ""}`;
  }

  // -- graph (layout and style live in graph.js) ---------------------------------------------
  function draw(snap) {
    ui.shown = snap;
    ui.drawCount += 1;
    const { els, positions } = elements(snap, { showLinks: $("show-links").checked });
    const cy = ui.cy;
    const before = cy.nodes().length;
    cy.batch(() => {
      cy.elements().remove();
      cy.add(els);
      cy.nodes().forEach((n) => { if (positions[n.id()]) n.position(positions[n.id()]); });
    });
    markProxySync();
    // Refit when the set of boxes changed (a provider came or went), not on every flow change,
    // so an operator's zoom survives routine updates.
    if (cy.nodes().length !== before) cy.fit(undefined, 40);
    applySelection();
    renderHeader(snap);
    renderContracts(snap);
    syncSlider();
  }

  function applySelection() {
    const cy = ui.cy;
    cy.elements().removeClass("dim focus");
    if (!ui.selected) return;
    const edges = cy.edges(`[contract = "${ui.selected}"]`);
    if (!edges.length) return;
    cy.elements().addClass("dim");
    edges.removeClass("dim").addClass("focus");
    edges.connectedNodes().removeClass("dim");
    edges.connectedNodes().ancestors().removeClass("dim");
  }

  function markProxySync() {
    ui.cy.nodes(".consumer").forEach((n) => {
      n.removeClass("sync-nacked sync-behind");
      const states = ui.proxiesByService.get(n.data("service")) || [];
      if (states.includes("nacked")) n.addClass("sync-nacked");
      else if (states.includes("behind")) n.addClass("sync-behind");
    });
  }

  // -- panels -----------------------------------------------------------------------------------
  function renderHeader(snap) {
    $("view-version").textContent = `v${snap.version}`;
    $("view-time").textContent = snap.cause === "current" ? "now" : fmtTime(snap.at);
    $("view-cause").textContent = snap.cause === "current" ? "" : snap.cause;
    const live = snap.contracts.filter((c) => LIVE_STATES.has(c.state)).length;
    const stats = $("stats");
    stats.replaceChildren(
      el("span", {}, el("b", {}, snap.zones.length), " zones"),
      el("span", {}, el("b", {}, snap.providers.length), " providers"),
      el("span", {}, el("b", {}, live), " live contracts"),
    );
    $("back-live").hidden = ui.following;
    document.body.classList.toggle("past", !ui.following);
    if (!ui.following) banner(`Viewing the topology of v${snap.version} · ${fmtTime(snap.at)} · ${snap.cause}`, "past");
    else banner("");
  }

  const badge = (state) => el("span", { class: `badge b-${state}` }, state.replace("_", " "));

  function renderContracts(snap) {
    const order = { active: 0, degraded: 1, pending_approval: 2, rejected: 3, revoked: 4, expired: 5 };
    const rows = [...snap.contracts].sort((a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || a.id.localeCompare(b.id));
    $("contracts-count").textContent = `${rows.filter((c) => LIVE_STATES.has(c.state)).length} live / ${rows.length}`;
    const body = $("contracts").tBodies[0];
    body.replaceChildren(...rows.map((c) => {
      const a = c.allocation;
      const alloc = a ? a.shares.map((s) => `${s.provider_id} ${s.weight}%`).join(", ") + ((a.failover || []).length ? ` (+${a.failover.length} failover)` : "") : "–";
      const tr = el("tr", {
        class: [LIVE_STATES.has(c.state) ? "" : "ended", ui.selected === c.id ? "selected" : ""].join(" ").trim(),
        "data-contract": c.id,
        title: a ? `expected p99 ${fmtNum(a.expected_p99_ms)} ms · ${fmtNum(a.cost_per_1k)}/1k · expires ${fmtTime(c.expires_at)}` : "",
        onclick: () => { ui.selected = ui.selected === c.id ? null : c.id; renderContracts(ui.shown); applySelection(); },
      },
      el("td", { class: "mono nowrap" }, c.id),
      el("td", {}, c.consumer, el("span", { class: "muted" }, " → "), c.capability),
      el("td", {}, badge(c.state)),
      el("td", { class: "mono nowrap" }, `${fmtNum(c.sla.rps)} rps`, el("br"), el("span", { class: "muted" }, `p99 ≤ ${fmtNum(c.sla.p99_latency_ms)} ms`)),
      el("td", { class: "mono small" }, alloc));
      return tr;
    }));
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted empty-row" }, "no contracts in this version")));
  }

  function renderProxies() {
    const body = $("proxies").tBodies[0];
    $("proxies-count").textContent = ui.proxies.length ? `${ui.proxies.filter((p) => p.sync === "synced").length}/${ui.proxies.length} synced` : "";
    const rows = [];
    for (const p of ui.proxies) {
      const versions = Object.entries(p.expected || {}).map(([t, v]) => `${t.slice(0, 1).toUpperCase()}:${String(v).slice(0, 6)}`).join(" ");
      rows.push(el("tr", { "data-node": p.node.id },
        el("td", { class: "mono nowrap" }, p.node.id),
        el("td", {}, p.node.cluster),
        el("td", { class: "nowrap" }, p.node.zone || "–"),
        el("td", {}, badge(p.sync === "synced" ? "acked" : p.sync)),
        el("td", { class: "mono small muted" }, versions)));
      for (const t of Object.values(p.types || {})) {
        if (t.last_nack && p.sync === "nacked") {
          rows.push(el("tr", { class: "nack-row" }, el("td", { colspan: 5 },
            el("b", {}, `NACK ${t.type} ${String(t.last_nack.version).slice(0, 10)}: `), t.last_nack.error)));
        }
      }
    }
    body.replaceChildren(...rows);
    if (!ui.proxies.length && $("proxies-note").hidden) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted empty-row" }, "no proxy connected")));
  }

  function renderChanges() {
    const list = $("changes");
    const recent = ui.history.slice(-14).reverse();
    list.replaceChildren(...recent.map((h) => el("li", {
      class: ui.shown && ui.shown.version === h.version && !ui.following ? "current" : "",
      title: fmtTime(h.at),
      onclick: () => showVersion(h.version),
    },
    el("span", { class: "mono v" }, `v${h.version}`),
    el("span", { class: "cause" }, h.cause),
    el("span", { class: "muted small" }, detailText(h.detail)),
    el("span", { class: "muted small ago" }, fmtAgo(h.at)))));
  }

  // -- history and the slider -----------------------------------------------------------------------
  function syncSlider() {
    const s = $("slider");
    s.max = String(Math.max(ui.history.length - 1, 0));
    if (ui.following) s.value = s.max;
    else if (ui.shown) {
      const i = ui.history.findIndex((h) => h.version === ui.shown.version);
      if (i >= 0) s.value = String(i);
    }
    const h = ui.history[Number(s.value)];
    $("slider-label").textContent = h
      ? `${ui.following ? "LIVE · " : ""}v${h.version} of ${ui.history.at(-1).version} · ${fmtTime(h.at)} · ${h.cause}`
      : "";
    renderChanges();
  }

  let sliderTimer = null;
  let wanted = null;
  function onSlider() {
    const i = Number($("slider").value);
    const h = ui.history[i];
    if (!h) return;
    $("slider-label").textContent = `v${h.version} · ${fmtTime(h.at)} · ${h.cause}`;
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(() => {
      if (i === ui.history.length - 1) goLive();
      else showVersion(h.version);
    }, 120);
  }

  async function showVersion(version) {
    wanted = version;
    try {
      const snap = await api(`/v1/topology?version=${encodeURIComponent(version)}`);
      if (wanted !== version) return; // the slider moved on meanwhile
      ui.following = false;
      draw(snap);
    } catch (e) {
      banner(`cannot load v${version}: ${e.message}`, "error");
    }
  }

  function goLive() {
    wanted = null;
    ui.following = true;
    if (ui.live) draw(ui.live);
  }

  function addSummary(snap) {
    if (snap.cause === "current") return;
    const last = ui.history.at(-1);
    if (last && last.version >= snap.version) return;
    ui.history.push({
      version: snap.version, at: snap.at, cause: snap.cause, detail: snap.detail || {},
      providers: snap.providers.length, contracts: snap.contracts.filter((c) => LIVE_STATES.has(c.state)).length,
    });
  }

  // -- live -------------------------------------------------------------------------------------------
  function connect() {
    const es = new EventSource(`/v1/topology/stream?token=${encodeURIComponent(TOKEN)}`);
    const conn = $("conn");
    es.addEventListener("open", () => { conn.textContent = "● live"; conn.className = "pill pill-live"; });
    es.addEventListener("error", () => {
      conn.textContent = "reconnecting…";
      conn.className = "pill pill-wait";
    });
    es.addEventListener("topology", (ev) => {
      const snap = JSON.parse(ev.data);
      addSummary(snap);
      ui.live = snap;
      if (ui.following) draw(snap);
      else syncSlider();
    });
    ui.es = es;
  }

  async function pollProxies() {
    try {
      ui.proxies = await api("/v1/proxies");
      $("proxies-note").hidden = true;
    } catch (e) {
      ui.proxies = [];
      const note = $("proxies-note");
      note.hidden = false;
      note.textContent = e.status === 403 ? "Proxy sync status needs an operator token." : `proxies: ${e.message}`;
    }
    ui.proxiesByService = new Map();
    for (const p of ui.proxies) {
      const list = ui.proxiesByService.get(p.node.cluster) || [];
      list.push(p.sync);
      ui.proxiesByService.set(p.node.cluster, list);
    }
    renderProxies();
    if (ui.cy) markProxySync();
    setTimeout(pollProxies, PROXY_POLL_MS);
  }

  // -- start ------------------------------------------------------------------------------------------
  async function start() {
    if (!TOKEN) {
      $("login").hidden = false;
      $("login-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        const t = $("login-token").value.trim();
        if (t) location.search = `?token=${encodeURIComponent(t)}`;
      });
      return;
    }
    ui.cy = cytoscape({
      container: $("cy"), style: STYLE, elements: [], layout: { name: "preset" },
      minZoom: 0.15, maxZoom: 3, boxSelectionEnabled: false, autoungrabify: true,
    });
    ui.cy.on("tap", "edge", (ev) => {
      ui.selected = ev.target.data("contract") || null;
      renderContracts(ui.shown);
      applySelection();
    });
    ui.cy.on("tap", (ev) => {
      if (ev.target === ui.cy) { ui.selected = null; renderContracts(ui.shown); applySelection(); }
    });
    $("slider").addEventListener("input", onSlider);
    $("step-back").addEventListener("click", () => { const s = $("slider"); s.value = String(Math.max(0, Number(s.value) - 1)); onSlider(); });
    $("step-fwd").addEventListener("click", () => { const s = $("slider"); s.value = String(Math.min(Number(s.max), Number(s.value) + 1)); onSlider(); });
    $("back-live").addEventListener("click", goLive);
    $("fit").addEventListener("click", () => ui.cy.fit(undefined, 40));
    $("show-links").addEventListener("change", () => ui.shown && draw(ui.shown));
    window.addEventListener("resize", () => { ui.cy.resize(); ui.cy.fit(undefined, 40); });
    try {
      ui.history = await api("/v1/topology/history");
    } catch (e) {
      banner(`cannot read the topology: ${e.message}`, "error");
      if (e.status === 401) { $("login").hidden = false; return; }
    }
    connect();
    pollProxies();
    setInterval(() => ui.history.length && renderChanges(), 15000); // keep "5m ago" honest
  }

  document.addEventListener("DOMContentLoaded", start);
})();

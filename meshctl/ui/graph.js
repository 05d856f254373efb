// meshctl web view: how a topology snapshot becomes cytoscape elements (pure: snapshot in,
// elements and preset positions out) and how they look. Loaded before app.js.
"use strict";

window.MeshGraph = (() => {
  const LIVE_STATES = new Set(["active", "degraded"]);
  const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en", { maximumFractionDigits: 1 }));

  const STYLE = [
    { selector: "node", style: {
      "font-family": "Inter, ui-sans-serif, system-ui, sans-serif", "font-size": 12, color: "#f1f5f9",
      "text-wrap": "wrap", "text-valign": "center", "text-halign": "center", label: "data(label)",
    } },
    { selector: "node.region", style: {
      shape: "round-rectangle", "background-color": "#0b1220", "background-opacity": 0.6,
      "border-width": 1, "border-color": "#1e293b", "border-style": "dashed",
      "text-valign": "top", "text-halign": "center", "text-margin-y": -6, "font-size": 13,
      "font-weight": 600, color: "#94a3b8", padding: 18, "text-transform": "uppercase",
    } },
    { selector: "node.zone", style: {
      shape: "round-rectangle", "background-color": "#111c2e", "border-width": 1, "border-color": "#334155",
      "text-valign": "top", "text-halign": "center", "text-margin-y": -4, color: "#cbd5e1",
      "font-size": 11, padding: 14,
    } },
    { selector: "node.zone.empty", style: { width: 150, height: 46, "text-valign": "center", "text-margin-y": 0, color: "#64748b" } },
    { selector: "node.provider", style: {
      shape: "round-rectangle", width: 154, height: 60, "background-color": "#1e40af",
      "border-width": 2, "border-color": "#60a5fa",
    } },
    { selector: "node.provider.leased", style: { "border-style": "dashed" } },
    // Headroom, not health: a provider near or at its capacity cannot take the next contract.
    { selector: "node.provider.hot", style: { "background-color": "#854d0e", "border-color": "#facc15" } },
    { selector: "node.provider.full", style: { "background-color": "#9a3412", "border-color": "#fb923c" } },
    { selector: "node.provider.gone", style: { "background-color": "#1f2937", "border-color": "#6b7280", color: "#9ca3af" } },
    { selector: "node.consumer", style: {
      shape: "round-tag", width: 150, height: 46, "background-color": "#0f766e",
      "border-width": 2, "border-color": "#2dd4bf",
    } },
    { selector: "node.consumer.sync-nacked", style: { "border-color": "#f87171", "border-width": 3 } },
    { selector: "node.consumer.sync-behind", style: { "border-color": "#fbbf24", "border-width": 3 } },
    { selector: "edge", style: {
      // A slight arc keeps a flow from running straight through the boxes in between.
      "curve-style": "unbundled-bezier", "control-point-distances": 36, "control-point-weights": 0.5,
      width: "mapData(weight, 0, 100, 1.5, 7)", "line-color": "#22c55e",
      "target-arrow-color": "#22c55e", "target-arrow-shape": "triangle", "arrow-scale": 0.9,
      label: "data(label)", "font-size": 10, color: "#e2e8f0", "text-background-color": "#0f172a",
      "text-background-opacity": 0.85, "text-background-padding": 2, "text-rotation": "autorotate",
      opacity: 0.9, "z-compound-depth": "top",
    } },
    { selector: "edge.degraded", style: { "line-color": "#f59e0b", "target-arrow-color": "#f59e0b" } },
    { selector: "edge.pending", style: { "line-color": "#64748b", "target-arrow-color": "#64748b", "line-style": "dashed" } },
    { selector: "edge.failover", style: { "line-style": "dashed", width: 1.5, "line-color": "#a78bfa", "target-arrow-color": "#a78bfa" } },
    { selector: "edge.link", style: {
      "curve-style": "straight", width: 1, "line-color": "#334155", "target-arrow-shape": "none",
      "line-style": "dotted", color: "#64748b", "font-size": 9,
    } },
    { selector: ".dim", style: { opacity: 0.15 } },
    { selector: "edge.focus", style: { opacity: 1, "z-index": 10 } },
  ];

  const CELL_W = 172, CELL_H = 78, PER_ROW = 2, ZONE_GAP = 70, REGION_GAP = 120, EMPTY_W = 150;

  function consumerZones(snap) {
    const zones = new Map();
    for (const c of snap.contracts) if (c.consumer_zone && !zones.has(c.consumer)) zones.set(c.consumer, c.consumer_zone);
    for (const [svc, zone] of Object.entries(snap.consumers || {})) zones.set(svc, zone);
    return zones;
  }

  function heldByProvider(snap) {
    const held = new Map(); // provider -> rps held by live contracts
    for (const c of snap.contracts) {
      if (!LIVE_STATES.has(c.state) || !c.allocation) continue;
      for (const s of c.allocation.shares) held.set(s.provider_id, (held.get(s.provider_id) || 0) + s.rps);
    }
    return held;
  }

  function memberNode(it, zone) {
    if (it.kind === "consumer") {
      return { group: "nodes", data: { id: `consumer:${it.id}`, parent: zone, label: it.id, kind: "consumer", service: it.id }, classes: "consumer" };
    }
    const { p, used } = it;
    const ratio = used / p.capacity_rps;
    const classes = ["provider"];
    if (p.ttl_s) classes.push("leased");
    if (ratio >= 0.999) classes.push("full");
    else if (ratio >= 0.8) classes.push("hot");
    return {
      group: "nodes",
      data: {
        id: `provider:${p.id}`, parent: zone, kind: "provider", provider: p.id,
        label: `${p.id}\n${p.capabilities.join(", ")}\n${fmtNum(used)} / ${fmtNum(p.capacity_rps)} rps`,
      },
      classes: classes.join(" "),
    };
  }

  // Deterministic positions (one row per region, its zones side by side, members in a grid inside
  // each zone) so that moving the slider changes what is drawn, not where everything is.
  function elements(snap, opts) {
    const els = [];
    const positions = {};
    const members = new Map(snap.zones.map((z) => [z.name, []]));
    const held = heldByProvider(snap);
    for (const [svc, zone] of [...consumerZones(snap).entries()].sort()) members.get(zone)?.push({ kind: "consumer", id: svc });
    for (const p of snap.providers) members.get(p.zone)?.push({ kind: "provider", p, used: held.get(p.id) || 0 });
    const known = new Set(snap.providers.map((p) => p.id));

    const regions = new Map();
    for (const z of snap.zones) {
      if (!regions.has(z.region)) regions.set(z.region, []);
      regions.get(z.region).push(z);
    }
    let y = 0;
    for (const region of [...regions.keys()].sort()) {
      els.push({ group: "nodes", data: { id: `region:${region}`, label: region, kind: "region" }, classes: "region" });
      let x = 0;
      let rowHeight = CELL_H;
      for (const z of regions.get(region).sort((a, b) => a.name.localeCompare(b.name))) {
        const zone = `zone:${z.name}`;
        const items = members.get(z.name);
        els.push({ group: "nodes", data: { id: zone, parent: `region:${region}`, label: z.name, kind: "zone" }, classes: items.length ? "zone" : "zone empty" });
        if (!items.length) {
          positions[zone] = { x: x + EMPTY_W / 2 - CELL_W / 2, y };
          x += EMPTY_W + ZONE_GAP;
          continue;
        }
        // Consumers get rows of their own above the providers: flows leave a consumer without
        // crossing the provider boxes (and their numbers) beside it.
        const consumers = items.filter((it) => it.kind === "consumer").length;
        const skip = consumers % PER_ROW ? PER_ROW - (consumers % PER_ROW) : 0;
        let slot = 0;
        items.forEach((it, i) => {
          if (i === consumers) slot += skip;
          const node = memberNode(it, zone);
          els.push(node);
          positions[node.data.id] = { x: x + (slot % PER_ROW) * CELL_W, y: y + Math.floor(slot / PER_ROW) * CELL_H };
          slot += 1;
        });
        x += Math.min(Math.max(items.length - consumers, consumers, 1), PER_ROW) * CELL_W + ZONE_GAP;
        rowHeight = Math.max(rowHeight, Math.ceil(slot / PER_ROW) * CELL_H);
      }
      y += rowHeight + REGION_GAP;
    }

    for (const c of snap.contracts) {
      const a = c.allocation;
      const pending = c.state === "pending_approval";
      if (!a || (!LIVE_STATES.has(c.state) && !pending)) continue;
      const src = `consumer:${c.consumer}`;
      if (!positions[src]) continue; // consumer zone unknown in this version
      const shares = [...a.shares.map((s) => [s, false]), ...(a.failover || []).map((s) => [s, true])];
      for (const [s, failover] of shares) {
        const tgt = `provider:${s.provider_id}`;
        if (!known.has(s.provider_id)) continue; // provider already gone at this version
        const classes = [failover ? "failover" : "", pending ? "pending" : "", c.state === "degraded" ? "degraded" : ""];
        els.push({
          group: "edges",
          data: {
            id: `flow:${c.id}:${s.provider_id}`, source: src, target: tgt, contract: c.id,
            weight: failover ? 0 : s.weight,
            label: failover ? "" : `${s.weight}% · ${fmtNum(s.rps)} rps`,
          },
          classes: classes.filter(Boolean).join(" "),
        });
      }
    }
    if (opts.showLinks) {
      for (const l of snap.links) {
        els.push({
          group: "edges",
          data: { id: `link:${l.a}|${l.b}`, source: `zone:${l.a}`, target: `zone:${l.b}`, weight: 0, label: `${l.latency_ms} ms` },
          classes: "link",
        });
      }
    }
    return { els, positions };
  }

  return { STYLE, LIVE_STATES, elements, fmtNum };
})();

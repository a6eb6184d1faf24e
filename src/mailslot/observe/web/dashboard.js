// mailslot live dashboard: polls /dashboard/data every second and draws small charts.
// No build step and no dependencies: plain DOM and <canvas>.
"use strict";

(function () {
  const POLL_MS = 1000;
  const POINTS = 120; // two minutes of history per series
  const history = new Map(); // series key -> array of numbers (null for gaps)

  function push(key, value) {
    let h = history.get(key);
    if (!h) { h = []; history.set(key, h); }
    h.push(value === undefined ? null : value);
    if (h.length > POINTS) h.shift();
    return h;
  }

  // ---- formatting -----------------------------------------------------------------------
  function num(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
    return v.toFixed(1);
  }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1e-3) return (v * 1e6).toFixed(0) + " µs";
    if (v < 1) return (v * 1e3).toFixed(v < 0.01 ? 2 : 1) + " ms";
    return v.toFixed(2) + " s";
  }
  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(0) + "%"; }

  // ---- drawing --------------------------------------------------------------------------
  function sparkline(canvas, values, opts) {
    const o = opts || {};
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (w === 0 || h === 0) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    let max = o.max !== undefined ? o.max : Math.max(0, ...finite);
    if (o.threshold !== undefined) max = Math.max(max, o.threshold * 1.1);
    if (max <= 0) max = 1;
    // a fresh page spreads its first points over a quarter of the window, then scrolls
    const span = Math.max(values.length, POINTS / 4);
    const step = w / (span - 1);
    const x0 = w - (values.length - 1) * step;
    const y = (v) => h - 1 - (v / max) * (h - 3);
    const color = o.color || "#2f6fdf";
    if (o.threshold !== undefined) {
      ctx.strokeStyle = "#d6342c";
      ctx.setLineDash([3, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(0, y(o.threshold));
      ctx.lineTo(w, y(o.threshold));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // area then line, broken at gaps
    let segment = [];
    const flush = () => {
      if (segment.length === 0) return;
      ctx.beginPath();
      ctx.moveTo(segment[0][0], h);
      for (const [px, py] of segment) ctx.lineTo(px, py);
      ctx.lineTo(segment[segment.length - 1][0], h);
      ctx.closePath();
      ctx.globalAlpha = 0.15;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.beginPath();
      segment.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      segment = [];
    };
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { flush(); return; }
      segment.push([x0 + i * step, y(v)]);
    });
    flush();
  }

  // ---- DOM helpers ----------------------------------------------------------------------
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(c);
    return e;
  }

  // ---- totals ---------------------------------------------------------------------------
  const tiles = new Map();
  function tile(key, label) {
    let entry = tiles.get(key);
    if (!entry) {
      const value = el("div", { class: "value", "data-field": "value" });
      const canvas = el("canvas");
      const node = el("div", { class: "tile", "data-tile": key }, [
        el("div", { class: "label", text: label }), value, canvas,
      ]);
      document.getElementById("totals").appendChild(node);
      entry = { value, canvas };
      tiles.set(key, entry);
    }
    return entry;
  }
  function setTile(key, label, value, text, color) {
    const entry = tile(key, label);
    entry.value.textContent = text;
    sparkline(entry.canvas, push("tile:" + key, value), { color });
  }

  function renderTotals(d) {
    const t = d.totals;
    setTile("rate", "messages / s", t.messages_per_sec, num(t.messages_per_sec));
    setTile("actors", "actors", t.actors, num(t.actors));
    setTile("depth", "messages waiting", t.mailbox_depth, num(t.mailbox_depth), "#d97706");
    setTile("dead", "dead letters", t.dead_letters, num(t.dead_letters), "#d6342c");
    setTile("failures", "failures", t.failures, num(t.failures), "#d6342c");
    setTile("restarts", "restarts", t.restarts, num(t.restarts), "#d6342c");
    for (const [name, value] of Object.entries(d.gauges || {})) {
      setTile("gauge:" + name, name.replaceAll("_", " "), value, num(value), "#1f9d55");
    }
  }

  // ---- actor types ----------------------------------------------------------------------
  const cards = new Map();
  function card(name) {
    let c = cards.get(name);
    if (c) return c;
    const chart = (key, label) => {
      const value = el("b");
      const canvas = el("canvas");
      const node = el("div", { class: "chart", "data-chart": key }, [
        el("div", { class: "label", text: label }), el("div", { class: "reading" }, [value]), canvas,
      ]);
      return { node, value, canvas };
    };
    const fill = chart("fill", "mailbox");
    const rate = chart("rate", "msg/s");
    const p99 = chart("p99", "p99");
    const count = el("span", { class: "count" });
    const badges = el("div", { class: "badges" });
    const facts = el("div", { class: "facts" });
    const node = el("div", { class: "card", "data-type": name }, [
      el("div", { class: "head" }, [el("span", { class: "name", text: name }), count]),
      badges,
      el("div", { class: "charts" }, [fill.node, rate.node, p99.node]),
      facts,
    ]);
    c = { node, count, badges, facts, fill, rate, p99 };
    cards.set(name, c);
    return c;
  }
  function fact(label, value, bad) {
    const s = el("span", bad ? { class: "bad" } : {});
    s.append(label + " ", el("b", { text: value }));
    return s;
  }

  function renderTypes(d) {
    const container = document.getElementById("types");
    const seen = new Set();
    const types = [...d.types].sort(
      (a, b) => (b.hot - a.hot) || a.actor_type.localeCompare(b.actor_type));
    for (const t of types) {
      seen.add(t.actor_type);
      const c = card(t.actor_type);
      c.node.classList.toggle("hot", t.hot);
      c.count.textContent = `${num(t.actors)} actor${t.actors === 1 ? "" : "s"}`;
      c.badges.replaceChildren(...t.hot_reasons.map((r) => el("span", {
        class: "badge", text: r === "mailbox" ? `mailbox ${pct(t.fill_ratio)}` : `p99 ${secs(t.p99)}`,
      })));
      c.fill.value.textContent = `${num(t.mailbox_depth)} · ${pct(t.fill_ratio)}`;
      sparkline(c.fill.canvas, push("fill:" + t.actor_type, t.fill_ratio),
        { max: 1, threshold: d.thresholds.fill_ratio, color: "#d97706" });
      c.rate.value.textContent = num(t.messages_per_sec);
      sparkline(c.rate.canvas, push("rate:" + t.actor_type, t.messages_per_sec));
      c.p99.value.textContent = secs(t.p99);
      sparkline(c.p99.canvas, push("p99:" + t.actor_type, t.p99),
        { threshold: d.thresholds.p99_seconds, color: "#7c3aed" });
      c.facts.replaceChildren(
        fact("processed", num(t.processed)),
        fact("p50", secs(t.p50)),
        fact("p90", secs(t.p90)),
        fact("high water", num(t.mailbox_high_water)),
        fact("failures", num(t.failures), t.failures > 0),
        fact("restarts", num(t.restarts), t.restarts > 0),
        fact("dead letters", num(t.dead_letters), t.dead_letters > 0),
        fact("slow-downs", num(t.slow_downs), t.slow_downs > 0),
      );
      container.appendChild(c.node); // re-appending keeps the sorted order
    }
    for (const [name, c] of cards) {
      if (!seen.has(name)) { c.node.remove(); cards.delete(name); }
    }
    document.getElementById("no-types").hidden = types.length > 0;
  }

  function renderDeadLetters(d) {
    const entries = Object.entries(d.dead_letters || {});
    const max = Math.max(1, ...entries.map(([, n]) => n));
    document.getElementById("dead-letters").replaceChildren(...entries.map(([reason, n]) => {
      const fillBar = el("div", { class: "fill" });
      fillBar.style.width = `${(100 * n) / max}%`;
      return el("div", { class: "bar", "data-reason": reason }, [
        el("span", { text: reason }), el("div", { class: "track" }, [fillBar]),
        el("span", { class: "n", text: num(n) }),
      ]);
    }));
    document.getElementById("no-dead-letters").hidden = entries.length > 0;
  }

  // ---- polling --------------------------------------------------------------------------
  function setStatus(kind, text) {
    const s = document.getElementById("status");
    s.className = "status " + kind;
    document.getElementById("status-text").textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch("/dashboard/data", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const d = await response.json();
      document.getElementById("system-name").textContent = d.system;
      renderTotals(d);
      renderTypes(d);
      renderDeadLetters(d);
      const at = new Date(d.time * 1000).toLocaleTimeString();
      setStatus("live", `live · ${at}`);
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (err) {
      setStatus("down", `disconnected (${err.message})`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();

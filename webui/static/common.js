// Shared by every page: formatting, the one websocket (reconnecting, with the
// status pill and the "daemon unreachable" banner), JSON calls with the CSRF
// header, the "not available from this daemon yet" notice and a small SVG chart.
// Data only ever reaches the page through textContent, never as HTML.
"use strict";

window.AB = (function () {
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 15000;
  const BUSY_MIN_MS = 5000;          // the server said "try again later" (1013)
  const CLOSE_TRY_AGAIN_LATER = 1013;
  const CLOSE_SESSION_ENDED = 4401;  // new password or session too old (live.py)
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  // ---- formatting -----------------------------------------------------------

  function si(value, units) {
    let v = Number(value) || 0;
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    const digits = i === 0 || Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    return v.toFixed(digits) + " " + units[i];
  }
  const rate = (bps) => si(bps, ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"]);
  const bytes = (n) => si(n, ["B", "kB", "MB", "GB", "TB"]);
  const count = (n) => (Number(n) || 0).toLocaleString("en-US");
  const mbit = (n) => (n === null || n === undefined ? "—" : Number(n).toFixed(Number(n) < 10 ? 2 : 1) + " Mbit/s");
  const ms = (n) => (n === null || n === undefined ? "—" : Number(n).toFixed(1) + " ms");
  const pct = (n) => (n === null || n === undefined ? "—" : (Number(n) * 100).toFixed(Number(n) < 0.1 ? 2 : 1) + " %");

  function duration(seconds) {
    let s = Math.max(0, Math.floor(Number(seconds) || 0));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(s).padStart(2, "0") + " s";
    return s + " s";
  }

  function clock(ts) {
    if (!ts) return "—";
    return new Date(Number(ts) * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function when(ts) {
    if (!ts) return "—";
    const t = new Date(Number(ts) * 1000);
    return t.toLocaleDateString("en-CA") + " " + t.toLocaleTimeString("en-GB", { hour12: false });
  }

  function endpoint(addr, port, family, proto) {
    const host = family === 6 ? "[" + addr + "]" : String(addr);
    const hasPorts = proto === "tcp" || proto === "udp";
    return hasPorts && port !== undefined && port !== null ? host + ":" + port : host;
  }

  const CLASS_COLORS = {
    voice: "#a3238a", video: "#1565c0", interactive: "#0f7a55", file: "#b26a00",
    background: "#5b6675", unclassified: "#8a98a8",
  };
  const classColor = (name) => CLASS_COLORS[name] || "#6b4fbb";
  const CLASS_PRIORITY = { voice: 3, video: 3, interactive: 2, file: 1, background: 0 };

  // A link's path measurements, normalised (as webui/api.py path_of): the daemon puts the
  // controller's path statistics under `quality` (loss_pct, score 0-100), or null.
  function path(link) {
    const stats = link && link.quality;
    if (!stats || typeof stats !== "object") {
      return { rtt_p50_ms: null, rtt_p95_ms: null, jitter_ms: null, loss: null,
        quality: stats === null || stats === undefined ? null : Number(stats) };
    }
    const scaled = (v) => (v === null || v === undefined ? null : Number(v) / 100);
    return { rtt_p50_ms: stats.rtt_p50_ms ?? null, rtt_p95_ms: stats.rtt_p95_ms ?? null,
      jitter_ms: stats.jitter_ms ?? null, loss: scaled(stats.loss_pct), quality: scaled(stats.score) };
  }

  // ---- DOM helpers ----------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function cell(row, text, className, tag) {
    const td = el(tag || "td", className ? { class: className } : {}, text);
    row.appendChild(td);
    return td;
  }

  function badge(name) {
    const cls = name || "unclassified";
    return el("span", { class: "badge badge-" + cls.replace(/[^a-z0-9_-]/gi, "") }, cls);
  }

  function emptyRow(tbody, colspan, text) {
    const row = el("tr", { class: "empty" });
    cell(row, text).colSpan = colspan;
    tbody.appendChild(row);
  }

  function replaceBody(table, rows, colspan, emptyText) {
    const body = document.createElement("tbody");
    rows.forEach((row) => body.appendChild(row));
    if (!rows.length) emptyRow(body, colspan, emptyText);
    table.replaceChild(body, table.tBodies[0]);
    return body;
  }

  const isAdmin = () => document.body.dataset.role === "admin";

  // ---- REST -----------------------------------------------------------------

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // Resolves to {ok, status, body}; never throws for HTTP errors.
  async function api(url, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const init = { method: opts.method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (opts.method !== "GET") init.headers["X-CSRF-Token"] = csrfToken();
    if (opts.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return { ok: false, status: 0, body: { error: { code: "offline", message: "the web UI is unreachable" } } };
    }
    if (response.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname));
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    return { ok: response.ok, status: response.status, body: body };
  }

  // A panel (element with data-source) shows either its content or a notice.
  function setAvailability(panel, reply) {
    if (!panel) return;
    let notice = panel.querySelector(":scope > .unavailable");
    if (reply.ok) {
      if (notice) notice.remove();
      panel.classList.remove("is-unavailable");
      return;
    }
    if (!notice) {
      notice = el("p", { class: "unavailable", role: "status" });
      panel.prepend(notice);
    }
    const error = (reply.body && reply.body.error) || {};
    notice.textContent = reply.status === 503
      ? error.message || "Not available from this daemon yet."
      : "Could not load: " + (error.message || "HTTP " + reply.status);
    panel.classList.add("is-unavailable");
  }

  // Fetch `url` into `render` when it answers; mark `panelId` available or not.
  async function load(url, panelId, render) {
    const reply = await api(url);
    setAvailability($(panelId), reply);
    if (reply.ok && reply.body) render(reply.body);
    return reply;
  }

  // ---- connection status and the websocket ---------------------------------

  let daemonReachable = null;
  let socketOpen = false;
  let lastStateTs = null;

  function showStatus(kind, text) {
    const pill = $("link-status");
    if (!pill) return;
    pill.dataset.status = kind;
    pill.querySelector(".status-text").textContent = text;
  }

  function refreshStatus(retryMs) {
    if (!socketOpen) {
      const secs = Math.max(1, Math.round((retryMs || 0) / 1000));
      showStatus("offline", retryMs ? "Web UI unreachable, retrying in " + secs + " s" : "Connecting…");
    } else if (daemonReachable === false) {
      showStatus("unreachable", "Daemon unreachable");
    } else if (daemonReachable === true) {
      showStatus("live", "Live");
    } else {
      showStatus("connecting", "Waiting for the daemon…");
    }
    const banner = $("daemon-banner");
    const down = socketOpen && daemonReachable === false;
    if (banner) banner.hidden = !down;
    document.body.classList.toggle("stale", down || !socketOpen);
    if (down && $("daemon-banner-text")) {
      $("daemon-banner-text").textContent = lastStateTs
        ? "No data from anabranchd since " + clock(lastStateTs) + "; the figures below are the last ones received."
        : "No data from anabranchd yet. Is it running?";
    }
  }

  let attempt = 0;

  function retryDelay(minimum) {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
    attempt += 1;
    return Math.max(minimum, base * (0.75 + Math.random() * 0.5));
  }

  async function stillSignedIn() {
    try {
      const response = await fetch("/api/v1/status", { credentials: "same-origin", cache: "no-store" });
      return response.status !== 401;
    } catch (err) {
      return true;                    // the web UI itself is down: keep retrying
    }
  }

  // One websocket per page; `handlers[type](message)` for each frame type.
  function connect(handlers) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws");
    ws.addEventListener("open", () => { socketOpen = true; refreshStatus(); });
    ws.addEventListener("message", (event) => {
      attempt = 0;
      let msg;
      try { msg = JSON.parse(event.data); } catch (err) { return; }
      if (msg.type === "daemon") daemonReachable = Boolean(msg.reachable);
      if (msg.type === "state") lastStateTs = msg.ts;
      const handler = handlers[msg.type];
      if (handler) handler(msg);
      refreshStatus();
    });
    ws.addEventListener("close", async (event) => {
      socketOpen = false;
      if (event.code === CLOSE_SESSION_ENDED || !(await stillSignedIn())) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      const delay = retryDelay(event.code === CLOSE_TRY_AGAIN_LATER ? BUSY_MIN_MS : 0);
      refreshStatus(delay);
      setTimeout(() => connect(handlers), delay);
    });
  }

  // ---- charts ---------------------------------------------------------------

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const mag = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * mag) return m * mag;
    return 10 * mag;
  }

  // series: [{name, color, points: [[t, v], ...]}]; format(v) labels the y axis.
  function lineChart(target, series, format, options) {
    // Drawn in the element's own pixels, so text is never stretched.
    const opts = Object.assign({}, options || {});
    const W = Math.max(240, Math.round(target.clientWidth || 760));
    const H = Math.max(120, Math.round(target.clientHeight || 240));
    const L = 74, R = 12, T = 12, B = 26;
    target.setAttribute("viewBox", "0 0 " + W + " " + H);
    while (target.firstChild) target.removeChild(target.firstChild);
    const all = series.flatMap((s) => s.points);
    if (!all.length) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" });
      t.textContent = opts.emptyText || "No data yet";
      target.appendChild(t);
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
    const top = niceMax(Math.max(...all.map((p) => p[1])));
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    for (let i = 0; i <= 4; i += 1) {
      const v = (top * i) / 4;
      target.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }));
      const label = svg("text", { x: L - 8, y: y(v) + 4, "text-anchor": "end", class: "axis-label" });
      label.textContent = format(v);
      target.appendChild(label);
    }
    for (const tick of [t0, (t0 + t1) / 2, t1]) {
      const label = svg("text", { x: x(tick), y: H - 6, "text-anchor": tick === t0 ? "start" : tick === t1 ? "end" : "middle", class: "axis-label" });
      label.textContent = clock(tick);
      target.appendChild(label);
    }
    for (const s of series) {
      if (!s.points.length) continue;
      const d = s.points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
      const path = svg("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 2.2, "vector-effect": "non-scaling-stroke" });
      const title = svg("title");
      title.textContent = s.name;
      path.appendChild(title);
      target.appendChild(path);
    }
  }

  // Horizontal bars as HTML: items [{label, value, text, color}].
  function bars(container, items, emptyText) {
    container.textContent = "";
    if (!items.length) {
      container.appendChild(el("p", { class: "empty-note" }, emptyText || "Nothing yet."));
      return;
    }
    const max = Math.max(...items.map((i) => i.value), 0) || 1;
    const list = el("ul", { class: "bar-list" });
    for (const item of items) {
      const li = el("li");
      const head = el("div", { class: "bar-head" });
      head.appendChild(el("span", { class: "bar-label" }, item.label));
      head.appendChild(el("span", { class: "bar-value" }, item.text));
      li.appendChild(head);
      const track = el("div", { class: "bar-track" });
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = Math.max(1, (100 * item.value) / max).toFixed(1) + "%";
      fill.style.background = item.color || "#0b6f6a";
      track.appendChild(fill);
      li.appendChild(track);
      list.appendChild(li);
    }
    container.appendChild(list);
  }

  // Sort buttons in a table's header cells that carry data-sort. The returned
  // state says which key is chosen (null until a press; updated before onChange()
  // runs) and orders two values by it: numerically under a "num" header, which
  // sorts descending first, as text (ascending first) otherwise.
  function sortable(table, onChange) {
    const state = {
      key: null, descending: true, numeric: false,
      order(va, vb) {
        const order = state.numeric
          ? (Number(va) || 0) - (Number(vb) || 0)
          : String(va ?? "").localeCompare(String(vb ?? ""), "en", { numeric: true });
        return state.descending ? -order : order;
      },
    };
    for (const th of table.tHead.rows[0].cells) {
      const key = th.dataset.sort;
      if (!key) continue;
      const button = el("button", { type: "button", class: "sort" }, th.textContent);
      th.textContent = "";
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", () => {
        state.numeric = th.classList.contains("num");
        state.descending = state.key === key ? !state.descending : state.numeric;
        state.key = key;
        for (const other of table.tHead.rows[0].cells) other.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", state.descending ? "descending" : "ascending");
        onChange();
      });
    }
    return state;
  }

  return {
    $, rate, bytes, count, mbit, ms, pct, duration, clock, when, endpoint, classColor, CLASS_PRIORITY, path,
    el, cell, badge, emptyRow, replaceBody, sortable, isAdmin, api, load, setAvailability, connect, lineChart, bars,
  };
})();

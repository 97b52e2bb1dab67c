// The live dashboard: one websocket to /ws, reconnecting with backoff; every
// frame is a JSON message of type "state", "flows" or "daemon" (see relay.py).
// Data only ever reaches the page through textContent, never as HTML.
"use strict";

(function () {
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 15000;
  const BUSY_MIN_MS = 5000;          // the server said "try again later" (1013)
  const CLOSE_TRY_AGAIN_LATER = 1013;
  const CLOSE_SESSION_ENDED = 4401;  // new password or session too old (live.py)

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
    const t = new Date((Number(ts) || 0) * 1000);
    return t.toLocaleTimeString("en-GB", { hour12: false });
  }

  function endpoint(addr, port, family, proto) {
    const host = family === 6 ? "[" + addr + "]" : String(addr);
    const hasPorts = proto === "tcp" || proto === "udp";
    return hasPorts && port !== undefined && port !== null ? host + ":" + port : host;
  }

  // ---- connection status ----------------------------------------------------

  const pill = $("link-status");
  const banner = $("daemon-banner");
  let daemonReachable = null;
  let socketOpen = false;
  let lastStateTs = null;

  function showStatus(kind, text) {
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
    const down = socketOpen && daemonReachable === false;
    banner.hidden = !down;
    document.body.classList.toggle("stale", down || !socketOpen);
    if (down) {
      $("daemon-banner-text").textContent = lastStateTs
        ? "No data from anabranchd since " + clock(lastStateTs) + "; the figures below are the last ones received."
        : "No data from anabranchd yet. Is it running?";
    }
  }

  // ---- state: totals and interfaces -----------------------------------------

  function cell(row, text, className, tag) {
    const td = document.createElement(tag || "td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function renderState(msg) {
    const totals = msg.totals || {};
    const daemon = msg.daemon || {};
    lastStateTs = msg.ts;
    $("total-flows").textContent = count(totals.flows);
    $("total-packets").textContent =
      count(Math.round(totals.up_pps || 0)) + " pkt/s up · " + count(Math.round(totals.down_pps || 0)) + " pkt/s down";
    $("total-up").textContent = rate(totals.up_bps);
    $("total-down").textContent = rate(totals.down_bps);
    $("total-bytes-up").textContent = bytes(totals.bytes_up) + " sent in total";
    $("total-bytes-down").textContent = bytes(totals.bytes_down) + " received in total";
    $("daemon-version").textContent = daemon.version ? "anabranchd " + daemon.version : "anabranchd";
    $("daemon-uptime").textContent = "up " + duration(daemon.uptime_s) + (daemon.pid ? " · pid " + daemon.pid : "");
    $("updated-at").textContent = "Updated " + clock(msg.ts);

    const body = document.createElement("tbody");
    const ifaces = Array.isArray(msg.interfaces) ? msg.interfaces : [];
    for (const iface of ifaces) {
      const row = document.createElement("tr");
      cell(row, iface.name, "mono", "th").setAttribute("scope", "row");
      cell(row, String(iface.role || "").toUpperCase());
      const attached = cell(row, iface.attached ? "attached" : "not attached");
      attached.className = iface.attached ? "ok" : "warn";
      cell(row, rate(iface.up_bps), "num up");
      cell(row, rate(iface.down_bps), "num down");
      body.appendChild(row);
    }
    if (!ifaces.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      cell(row, "The daemon reports no interfaces.").colSpan = 5;
      body.appendChild(row);
    }
    $("ifaces").replaceChild(body, $("ifaces").tBodies[0]);
  }

  // ---- flows table ----------------------------------------------------------

  const flowsTable = $("flows");
  const filterInput = $("flow-filter");
  const rows = new Map();            // flow id -> <tr>, reused between updates
  let lastFlows = null;
  let sortKey = null;                // null: busiest first
  let sortDescending = true;

  const TEXT_KEYS = new Set(["src", "dst", "proto", "iface", "class"]);

  function compareFlows(a, b) {
    if (sortKey === null) {
      const ra = (a.bps_up || 0) + (a.bps_down || 0);
      const rb = (b.bps_up || 0) + (b.bps_down || 0);
      return rb - ra || ((b.bytes_up || 0) + (b.bytes_down || 0)) - ((a.bytes_up || 0) + (a.bytes_down || 0));
    }
    let order;
    if (TEXT_KEYS.has(sortKey)) {
      order = String(a[sortKey] ?? "").localeCompare(String(b[sortKey] ?? ""), "en", { numeric: true });
    } else {
      order = (Number(a[sortKey]) || 0) - (Number(b[sortKey]) || 0);
    }
    return sortDescending ? -order : order;
  }

  function flowRow(flow) {
    let row = rows.get(flow.id);
    if (!row) {
      row = document.createElement("tr");
      for (let i = 0; i < 9; i += 1) row.appendChild(document.createElement("td"));
      const c = row.cells;
      c[0].className = "mono"; c[1].className = "mono";
      for (let i = 4; i < 8; i += 1) c[i].className = "num";
      c[6].classList.add("up"); c[7].classList.add("down");
      const badge = document.createElement("span");
      c[8].appendChild(badge);
      rows.set(flow.id, row);
    }
    const texts = [
      endpoint(flow.src, flow.sport, flow.family, flow.proto),
      endpoint(flow.dst, flow.dport, flow.family, flow.proto),
      String(flow.proto).toUpperCase(),
      flow.iface,
      bytes(flow.bytes_up),
      bytes(flow.bytes_down),
      rate(flow.bps_up),
      rate(flow.bps_down),
    ];
    texts.forEach((text, i) => {
      if (row.cells[i].textContent !== text) row.cells[i].textContent = text;
    });
    const badge = row.cells[8].firstChild;
    const cls = flow.class || "unclassified";
    if (badge.textContent !== cls) {
      badge.textContent = cls;
      badge.className = "badge badge-" + cls.replace(/[^a-z0-9_-]/gi, "");
    }
    row.title = flow.reason ? "class " + cls + ": " + flow.reason : "";
    return row;
  }

  function matches(flow, needle) {
    if (!needle) return true;
    const hay = [flow.src, flow.sport, flow.dst, flow.dport, flow.proto, flow.iface, flow.class]
      .join(" ").toLowerCase();
    return hay.includes(needle);
  }

  function renderFlows(msg) {
    lastFlows = msg;
    const flows = Array.isArray(msg.flows) ? msg.flows.slice() : [];
    const needle = filterInput.value.trim().toLowerCase();
    const shown = flows.filter((f) => matches(f, needle)).sort(compareFlows);
    const body = flowsTable.tBodies[0];
    const keep = new Set();
    const fragment = document.createDocumentFragment();
    for (const flow of shown) {
      keep.add(flow.id);
      fragment.appendChild(flowRow(flow));
    }
    for (const [id, row] of rows) {
      if (!keep.has(id)) { row.remove(); rows.delete(id); }
    }
    body.querySelectorAll("tr.empty").forEach((r) => r.remove());
    body.appendChild(fragment);
    if (!shown.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      cell(row, flows.length ? "No flow matches the filter." : "No active flows.").colSpan = 9;
      body.appendChild(row);
    }
    const total = Number(msg.count ?? flows.length);
    let caption = count(total) + " active";
    if (flows.length < total) caption += ", the busiest " + count(flows.length) + " listed";
    if (needle) caption += ", " + count(shown.length) + " match the filter";
    $("flows-caption").textContent = caption;
  }

  function setUpSorting() {
    for (const th of flowsTable.tHead.rows[0].cells) {
      const key = th.dataset.sort;
      if (!key) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", () => {
        if (sortKey === key) {
          sortDescending = !sortDescending;
        } else {
          sortKey = key;
          sortDescending = !TEXT_KEYS.has(key);
        }
        for (const other of flowsTable.tHead.rows[0].cells) other.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", sortDescending ? "descending" : "ascending");
        if (lastFlows) renderFlows(lastFlows);
      });
    }
  }

  // ---- the websocket --------------------------------------------------------

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

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws");
    ws.addEventListener("open", () => { socketOpen = true; refreshStatus(); });
    ws.addEventListener("message", (event) => {
      attempt = 0;
      let msg;
      try { msg = JSON.parse(event.data); } catch (err) { return; }
      if (msg.type === "state") renderState(msg);
      else if (msg.type === "flows") renderFlows(msg);
      else if (msg.type === "daemon") daemonReachable = Boolean(msg.reachable);
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
      setTimeout(connect, delay);
    });
  }

  setUpSorting();
  filterInput.addEventListener("input", () => { if (lastFlows) renderFlows(lastFlows); });
  refreshStatus();
  connect();
})();

// The overview: totals, bandwidth per class over time, the class mix, interfaces
// with path quality, and the busiest flows; live from the page's one websocket,
// plus links, MPTCP and alerts from /api/v1 on each state tick (when offered).
"use strict";

(function () {
  const { $, rate, bytes, count, duration, clock, endpoint, cell, el } = AB;
  const HISTORY_S = 120;
  const REST_EVERY_MS = 2000;

  // ---- state: totals and interfaces -----------------------------------------

  let links = {};                    // name -> link from /api/v1/links
  let lastState = null;

  function renderState(msg) {
    lastState = msg;
    const totals = msg.totals || {};
    const daemon = msg.daemon || {};
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
    renderInterfaces();
    maybeRefreshRest();
  }

  function renderInterfaces() {
    if (!lastState) return;
    const ifaces = Array.isArray(lastState.interfaces) ? lastState.interfaces : [];
    const rows = ifaces.map((iface) => {
      const row = el("tr");
      cell(row, iface.name, "mono", "th").setAttribute("scope", "row");
      cell(row, String(iface.role || "").toUpperCase());
      cell(row, iface.attached ? "attached" : "not attached", iface.attached ? "ok" : "warn");
      cell(row, rate(iface.up_bps), "num up");
      cell(row, rate(iface.down_bps), "num down");
      // Utilisation: the busier direction against its capacity (none while "auto" has no estimate).
      const link = links[iface.name] || iface;
      const shares = ["up", "down"].filter((d) => link[d + "_mbit"])
        .map((d) => (iface[d + "_bps"] || 0) / (link[d + "_mbit"] * 1e6));
      cell(row, shares.length ? AB.pct(Math.max(...shares)) : "—", "num");
      const quality = AB.path(links[iface.name]).quality;
      cell(row, quality === null ? "—" : quality.toFixed(2), "num");
      return row;
    });
    AB.replaceBody($("ifaces"), rows, 7, "The daemon reports no interfaces.");
  }

  // ---- links, MPTCP and alerts from the REST API ------------------------------

  let restDueAt = 0;

  function maybeRefreshRest() {
    const now = Date.now();
    if (now < restDueAt) return;
    restDueAt = now + REST_EVERY_MS;
    AB.api("/api/v1/links").then((reply) => {
      links = {};
      if (reply.ok) for (const link of reply.body.links || []) links[link.name] = link;
      renderInterfaces();
    });
    AB.api("/api/v1/connections").then((reply) => {
      if (!reply.ok) {
        $("mptcp-count").textContent = "n/a";
        $("mptcp-note").textContent = "not available from this daemon yet";
        return;
      }
      const conns = reply.body.connections || [];
      const subflows = conns.reduce((n, c) => n + (c.subflows || []).length, 0);
      $("mptcp-count").textContent = count(conns.length);
      $("mptcp-note").textContent = count(subflows) + " subflows";
    });
    AB.api("/api/v1/alerts?state=active").then((reply) => {
      const card = $("alert-count").closest(".card");
      if (!reply.ok) {
        $("alert-count").textContent = "n/a";
        $("alert-note").textContent = "not available from this daemon yet";
        card.dataset.level = "";
        return;
      }
      const active = (reply.body.alerts || []).filter((a) => a.state === "active");
      $("alert-count").textContent = count(active.length);
      const critical = active.filter((a) => a.severity === "critical").length;
      $("alert-note").textContent = active.length ? critical + " critical · " + active[0].message : "all clear";
      card.dataset.level = critical ? "critical" : active.length ? "warning" : "ok";
    });
  }

  // ---- bandwidth per class over time, and the class mix ----------------------

  const classHistory = new Map();    // class -> [[t, bps], ...]

  function recordClasses(msg) {
    const now = Number(msg.ts) || Date.now() / 1000;
    const sums = {};
    for (const flow of msg.flows || []) {
      const name = flow.class || "unclassified";
      sums[name] = (sums[name] || 0) + (flow.bps_up || 0) + (flow.bps_down || 0);
    }
    for (const name of Object.keys(sums)) if (!classHistory.has(name)) classHistory.set(name, []);
    for (const [name, points] of classHistory) {
      points.push([now, sums[name] || 0]);
      while (points.length && points[0][0] < now - HISTORY_S) points.shift();
    }
    const series = [...classHistory].map(([name, points]) => ({ name, color: AB.classColor(name), points }));
    AB.lineChart($("class-chart"), series, rate);
    const legend = $("class-legend");
    legend.textContent = "";
    for (const s of series) {
      const li = el("li");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = s.color;
      li.appendChild(swatch);
      li.appendChild(document.createTextNode(s.name + " " + rate(sums[s.name] || 0)));
      legend.appendChild(li);
    }
    const mix = Object.entries(sums).sort((a, b) =>
      (AB.CLASS_PRIORITY[b[0]] ?? -1) - (AB.CLASS_PRIORITY[a[0]] ?? -1) || b[1] - a[1]);
    AB.bars($("class-mix"), mix.map(([name, bps]) => ({
      label: name + (name in AB.CLASS_PRIORITY ? " · priority " + AB.CLASS_PRIORITY[name] : ""),
      value: bps, text: rate(bps), color: AB.classColor(name),
    })), "No traffic.");
  }

  // ---- flows table ----------------------------------------------------------

  const flowsTable = $("flows");
  const filterInput = $("flow-filter");
  const rows = new Map();            // flow id -> <tr>, reused between updates
  let lastFlows = null;
  // Until a header is clicked (key null), busiest first.
  const sorting = AB.sortable(flowsTable, () => { if (lastFlows) renderFlows(lastFlows); });

  function compareFlows(a, b) {
    if (sorting.key === null) {
      const ra = (a.bps_up || 0) + (a.bps_down || 0);
      const rb = (b.bps_up || 0) + (b.bps_down || 0);
      return rb - ra || ((b.bytes_up || 0) + (b.bytes_down || 0)) - ((a.bytes_up || 0) + (a.bytes_down || 0));
    }
    return sorting.order(a[sorting.key], b[sorting.key]);
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
      c[8].appendChild(document.createElement("span"));
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
    const hay = [flow.src, flow.sport, flow.dst, flow.dport, flow.proto, flow.iface, flow.class || "unclassified"]
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
    if (!shown.length) AB.emptyRow(body, 9, flows.length ? "No flow matches the filter." : "No active flows.");
    const total = Number(msg.count ?? flows.length);
    let caption = count(total) + " active";
    if (flows.length < total) caption += ", the busiest " + count(flows.length) + " listed";
    if (needle) caption += ", " + count(shown.length) + " match the filter";
    $("flows-caption").textContent = caption;
  }

  filterInput.addEventListener("input", () => { if (lastFlows) renderFlows(lastFlows); });
  AB.lineChart($("class-chart"), [], rate, { emptyText: "Waiting for flows…" });
  AB.connect({
    state: renderState,
    flows: (msg) => { renderFlows(msg); recordClasses(msg); },
  });
})();

// The pages other than the overview (body[data-page] picks one).  Each fills its
// tables from /api/v1 and refreshes on the live websocket's state ticks; a
// command this daemon lacks shows "not available from this daemon yet".
"use strict";

(function () {
  const { $, rate, bytes, count, mbit, ms, pct, when, endpoint, cell, el, badge } = AB;
  // The predictor's confidence is a percentage (controller/predict/runtime.py).
  const confidence = (c) => (c === null || c === undefined ? "—" : Number(c).toFixed(0) + " %");
  const REST_EVERY_MS = 2000;

  // Refresh `fn` at most every REST_EVERY_MS, driven by the websocket's ticks.
  function ticking(fn) {
    let dueAt = 0;
    let busy = false;
    return function () {
      const now = Date.now();
      if (busy || now < dueAt) return;
      dueAt = now + REST_EVERY_MS;
      busy = true;
      Promise.resolve(fn()).finally(() => { busy = false; });
    };
  }

  function fieldError(form, message) {
    const box = form.querySelector(".form-error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  function errorText(reply) {
    const error = (reply.body && reply.body.error) || {};
    if (reply.status === 403) return "Read-only: sign in as admin to change this.";
    if (reply.status === 503) return "Not available from this daemon yet.";
    return error.message || "HTTP " + reply.status;
  }

  // ---- flows and MPTCP connections --------------------------------------------

  // The daemon sends RTT and retransmissions per direction, [up, down]; a cell shows
  // the larger RTT and the sum of retransmissions (null: not measured).
  function worstRtt(f) {
    const values = [].concat(f.rtt_ms ?? []).filter((v) => v !== null && v !== undefined);
    return values.length ? Math.max(...values) : null;
  }
  function retransmits(f) {
    if (f.retransmits === null || f.retransmits === undefined) return null;
    return [].concat(f.retransmits).reduce((n, v) => n + (Number(v) || 0), 0);
  }

  // Why a flow is in its class: the controller's rule id or heuristic (controller/classify.py,
  // controller/tick.py), or the datapath's reason (kstructs.REASONS) before the controller ran.
  const REASONS = { none: "not classified yet", default: "no rule matched: default class", port: "port rule",
    prefix: "network rule", token: "its MPTCP connection's class", override: "set for this flow",
    "mptcp:join": "joined an MPTCP connection: its class" };
  const REASON_KINDS = { "port:": "port table: ", "service:": "known service: ", "heuristic:": "behaves like ",
    "api:": "your rule " };
  function reasonText(f) {
    if (!f.reason) return "";
    if (REASONS[f.reason]) return REASONS[f.reason];
    const kind = Object.keys(REASON_KINDS).find((k) => f.reason.startsWith(k));
    return kind ? REASON_KINDS[kind] + f.reason.slice(kind.length) : f.reason;
  }

  function flowsPage() {
    const table = $("all-flows");
    let lastFlows = [];
    const sortState = AB.sortable(table, () => render());
    const value = (f, key) => ({
      host: f.src, remote: endpoint(f.dst, f.dport, f.family, f.proto), class: f.class || "unclassified",
      rate: (f.bps_up || 0) + (f.bps_down || 0), bytes: (f.bytes_up || 0) + (f.bytes_down || 0),
      reason: reasonText(f), rtt_ms: worstRtt(f), retrans: retransmits(f),
    }[key] ?? f[key]);

    function render() {
      const wanted = $("class-filter").value;
      const needle = $("flow-filter").value.trim().toLowerCase();
      let shown = lastFlows.filter((f) => (!wanted || (f.class || "unclassified") === wanted) &&
        (!needle || [f.src, f.sport, f.dst, f.dport, f.proto, f.iface, reasonText(f)].join(" ").toLowerCase().includes(needle)));
      if (sortState.key) {
        shown = shown.slice().sort((a, b) => sortState.order(value(a, sortState.key), value(b, sortState.key)));
      }
      const rows = shown.map((f) => {
        const row = el("tr");
        cell(row, endpoint(f.src, f.sport, f.family, f.proto), "mono");
        cell(row, endpoint(f.dst, f.dport, f.family, f.proto), "mono");
        cell(row, "").appendChild(badge(f.class));
        cell(row, f.iface);
        cell(row, String(f.proto).toUpperCase());
        cell(row, rate((f.bps_up || 0) + (f.bps_down || 0)), "num");
        cell(row, bytes((f.bytes_up || 0) + (f.bytes_down || 0)), "num");
        cell(row, ms(worstRtt(f)), "num");
        const lost = retransmits(f);
        cell(row, lost === null ? "—" : count(lost), "num");
        cell(row, reasonText(f) || "unclassified", f.reason ? "reason" : "reason muted");
        return row;
      });
      AB.replaceBody(table, rows, 10, lastFlows.length ? "No flow matches the filter." : "No active flows.");
      $("flows-caption").textContent = count(lastFlows.length) + " listed" +
        (shown.length !== lastFlows.length ? ", " + count(shown.length) + " match" : "");
    }

    const expanded = new Set();

    function renderConnections(reply) {
      const mptcp = $("mptcp");
      const conns = reply.connections || [];
      $("mptcp-caption").textContent = reply.available === false
        ? "MPTCP correlation is not running in this daemon" : count(reply.count ?? conns.length) + " connections";
      const body = document.createElement("tbody");
      for (const conn of conns) {
        const subflows = conn.subflows || [];
        const total = conn.bytes_up !== undefined ? (conn.bytes_up || 0) + (conn.bytes_down || 0)
          : subflows.reduce((n, s) => n + (s.bytes_up || 0) + (s.bytes_down || 0), 0);
        const row = el("tr", { class: "conn", "data-conn": String(conn.id) });
        const th = cell(row, "", "", "th");
        th.setAttribute("scope", "row");
        const id = String(conn.id);
        const open = expanded.has(id);
        const tokens = conn.tokens || [];
        const toggle = el("button", { type: "button", class: "expander", "aria-expanded": String(open),
          "aria-controls": "subflows-" + id },
          (open ? "▾ " : "▸ ") + (tokens.length ? "token " + tokens.join(" / ") : "connection " + id));
        toggle.addEventListener("click", () => {
          if (expanded.has(id)) expanded.delete(id); else expanded.add(id);
          renderConnections(reply);
          $("mptcp").querySelector('[aria-controls="subflows-' + id + '"]').focus();
        });
        th.appendChild(toggle);
        if (conn.class) th.appendChild(badge(conn.class));
        cell(row, conn.version === null || conn.version === undefined ? "—" : "v" + conn.version);
        cell(row, conn.state || (conn.ended ? "ended" + (conn.end_reason ? " (" + conn.end_reason + ")" : "") : "open"));
        cell(row, count(subflows.length), "num");
        cell(row, bytes(total), "num");
        const paths = cell(row, "", "share-cell");
        const strip = el("div", { class: "share-strip", role: "img",
          "aria-label": subflows.map((s) => (s.iface || "?") + " " + pct(s.share)).join(", ") });
        for (const s of subflows) {
          const part = el("span", { class: "share-part", title: (s.iface || "?") + " " + pct(s.share) });
          part.style.width = (100 * (Number(s.share) || 0)).toFixed(1) + "%";
          strip.appendChild(part);
        }
        paths.appendChild(strip);
        body.appendChild(row);
        const detail = el("tr", { class: "subflows", id: "subflows-" + id });
        detail.hidden = !open;
        const td = cell(detail, "");
        td.colSpan = 6;
        const inner = el("table", { class: "grid inner" });
        const head = el("tr");
        for (const h of ["Subflow", "Path", "Sent", "Received", "RTT", "Share"]) cell(head, h, "", "th").setAttribute("scope", "col");
        inner.appendChild(el("thead")).appendChild(head);
        const ib = inner.appendChild(el("tbody"));
        for (const s of subflows) {
          const r = el("tr", { class: "subflow" + (s.ended ? " ended" : "") });
          const lan = s.lan ?? s.src, lanPort = s.lan_port ?? s.sport;
          const remote = s.remote ?? s.dst, remotePort = s.remote_port ?? s.dport;
          const ends = lan === undefined ? "flow " + s.flow_id
            : endpoint(lan, lanPort, String(lan).includes(":") ? 6 : 4, "tcp") + " → " +
              endpoint(remote, remotePort, String(remote).includes(":") ? 6 : 4, "tcp");
          cell(r, ends + (s.role ? " (" + s.role + ")" : "") + (s.ended ? " · ended" : ""), "mono");
          cell(r, s.iface || "—", "mono");
          cell(r, bytes(s.bytes_up), "num");
          cell(r, bytes(s.bytes_down), "num");
          cell(r, ms(s.rtt_ms), "num");
          cell(r, pct(s.share), "num");
          ib.appendChild(r);
        }
        td.appendChild(inner);
        body.appendChild(detail);
      }
      if (!conns.length) AB.emptyRow(body, 6, "No MPTCP connections.");
      mptcp.replaceChild(body, mptcp.tBodies[0]);
    }

    const refresh = ticking(() => AB.load("/api/v1/connections", "mptcp-panel", renderConnections));
    $("class-filter").addEventListener("change", render);
    $("flow-filter").addEventListener("input", render);
    AB.connect({ flows: (msg) => { lastFlows = msg.flows || []; render(); }, state: refresh });
    refresh();
  }

  // ---- links -------------------------------------------------------------------

  function linksPage() {
    // Capacity one way: null means "auto" (estimated; none yet).
    const capacity = (l, dir) => (l[dir + "_mbit"] === null || l[dir + "_mbit"] === undefined ? null : Number(l[dir + "_mbit"]));
    function utilisation(l) {
      const shares = ["up", "down"].filter((d) => capacity(l, d)).map((d) => (l[d + "_bps"] || 0) / (capacity(l, d) * 1e6));
      return shares.length ? Math.max(...shares) : null;
    }
    function render(reply) {
      const rows = (reply.links || []).map((l) => {
        const row = el("tr", { "data-link": l.name });
        const name = cell(row, l.name, "mono", "th");
        name.setAttribute("scope", "row");
        name.appendChild(el("span", { class: "cell-note" }, String(l.role || "").toUpperCase()));
        const cap = ["up", "down"].map((d) => (capacity(l, d) === null ? "auto" : mbit(capacity(l, d)))).join(" / ");
        cell(row, cap, "num").title = "up from " + (l.up_source || "?") + ", down from " + (l.down_source || "?");
        const forecast = l.prediction || {};
        cell(row, forecast.next_1s_mbit === undefined || forecast.next_1s_mbit === null ? "—"
          : mbit(forecast.next_1s_mbit) + (forecast.confidence !== undefined && forecast.confidence !== null
            ? " (" + confidence(forecast.confidence) + ")" : ""), "num");
        cell(row, rate(l.up_bps), "num up");
        cell(row, rate(l.down_bps), "num down");
        cell(row, pct(utilisation(l)), "num");
        const p = AB.path(l);
        cell(row, ms(p.rtt_p50_ms) + " / " + ms(p.rtt_p95_ms), "num");
        cell(row, ms(p.jitter_ms), "num");
        cell(row, pct(p.loss), "num");
        const q = cell(row, "");
        if (p.quality === null) {
          q.textContent = "—";
        } else {
          q.appendChild(el("meter", { min: "0", max: "1", low: "0.5", high: "0.8", optimum: "1",
            value: String(p.quality), "aria-label": "quality of " + l.name }));
          q.appendChild(document.createTextNode(" " + p.quality.toFixed(2)));
        }
        return row;
      });
      AB.replaceBody($("links"), rows, 10, "The daemon reports no links.");
    }
    function renderLb(reply) {
      AB.bars($("lb"), (reply.links || []).map((l) => ({
        label: l.link + (l.link === reply.prefer ? " (preferred)" : ""),
        value: l.weight, text: pct(l.weight) + " of new flows · headroom " + mbit(l.headroom_mbit),
        color: "#0b6f6a",
      })), "No links.");
    }
    const refresh = ticking(() => Promise.all([
      AB.load("/api/v1/links", "links-panel", render),
      AB.load("/api/v1/recommendations/load-balancing", "lb-panel", renderLb)]));
    AB.connect({ state: refresh });
    refresh();
  }

  // ---- classes and the class editor --------------------------------------------

  function classesPage() {
    let editing = null;              // class name whose editor row is open
    let lastReply = null;
    const errors = {};               // class name -> inline error text

    function editor(cls) {
      const row = el("tr", { class: "editor-row" });
      const td = cell(row, "");
      td.colSpan = 9;
      const form = el("form", { class: "inline-form class-editor", novalidate: "", "aria-label": "Edit class " + cls.name });
      const fields = el("div", { class: "fields" });
      for (const [name, label, v] of [["priority", "Priority", cls.priority], ["min_mbit", "Minimum (Mbit/s)", cls.min_mbit],
        ["max_mbit", "Maximum (Mbit/s)", cls.max_mbit], ["dscp", "DSCP", cls.dscp]]) {
        const lab = el("label", {}, label + " ");
        const input = el("input", { name: name, type: "text", inputmode: "decimal", value: v ?? "" });
        lab.appendChild(input);
        fields.appendChild(lab);
      }
      fields.appendChild(el("button", { type: "submit", class: "button button-primary" }, "Apply"));
      const cancel = el("button", { type: "button", class: "button button-plain" }, "Cancel");
      cancel.addEventListener("click", () => { editing = null; render(lastReply); });
      fields.appendChild(cancel);
      form.appendChild(fields);
      const err = el("p", { class: "form-error", role: "alert" });
      err.hidden = true;
      form.appendChild(err);
      if (errors[cls.name]) fieldError(form, errors[cls.name]);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = {};
        for (const input of form.querySelectorAll("input")) {
          input.removeAttribute("aria-invalid");
          if (input.value.trim() !== "") body[input.name] = input.value.trim();
        }
        const reply = await AB.api("/api/v1/classes/" + encodeURIComponent(cls.name), { method: "POST", json: body });
        if (reply.ok) {
          delete errors[cls.name];
          editing = null;
          await AB.load("/api/v1/classes", "classes-panel", render);
          const done = $("classes").querySelector('[data-class="' + cls.name + '"] .edit');
          if (done) done.focus();
          return;
        }
        errors[cls.name] = errorText(reply);
        fieldError(form, errors[cls.name]);
        const field = reply.body && reply.body.error && reply.body.error.field;
        const bad = field && form.querySelector('input[name="' + field + '"]');
        if (bad) { bad.setAttribute("aria-invalid", "true"); bad.focus(); }
      });
      td.appendChild(form);
      return row;
    }

    function render(reply) {
      lastReply = reply;
      renderShaping(reply.shaping);
      if (editing) return;           // never redraw under the admin's typing
      const rows = [];
      for (const c of reply.classes || []) {
        const row = el("tr", { "data-class": c.name });
        cell(row, "", "", "th").appendChild(badge(c.name));
        row.cells[0].setAttribute("scope", "row");
        cell(row, c.priority, "num");
        cell(row, mbit(c.min_mbit), "num");
        cell(row, c.max_mbit === null || c.max_mbit === undefined ? "link" : mbit(c.max_mbit), "num");
        cell(row, c.dscp, "num");
        cell(row, count(c.flows), "num");
        cell(row, rate(c.up_bps), "num up");
        cell(row, rate(c.down_bps), "num down");
        const actions = cell(row, "");
        if (AB.isAdmin()) {
          const edit = el("button", { type: "button", class: "button button-small edit", "aria-label": "Edit " + c.name }, "Edit");
          edit.addEventListener("click", () => {
            editing = c.name;
            const target = $("classes").querySelector('[data-class="' + c.name + '"]');
            target.after(editor(c));
            target.nextElementSibling.querySelector("input").focus();
          });
          actions.appendChild(edit);
        }
        rows.push(row);
      }
      AB.replaceBody($("classes"), rows, 9, "No classes reported.");
    }

    // The HTB classes as the kernel has them, per shaped egress (null: shaping is off).
    function renderShaping(shaping) {
      $("htb-caption").textContent = shaping ? "leaf qdisc " + (shaping.leaf_qdisc || "—") : "shaping is off";
      const rows = [];
      for (const link of (shaping && shaping.links) || []) {
        if (link.error) {
          const row = el("tr", { class: "warn" });
          cell(row, link.iface, "mono", "th").setAttribute("scope", "row");
          cell(row, link.direction);
          cell(row, link.error).colSpan = 7;
          rows.push(row);
        }
        for (const c of link.classes || []) {
          const row = el("tr", { "data-htb": link.iface + "/" + c.name });
          cell(row, link.iface, "mono", "th").setAttribute("scope", "row");
          cell(row, link.direction + (link.link && link.link !== link.iface ? " (" + link.link + ")" : ""));
          cell(row, "").appendChild(badge(c.name));
          cell(row, c.classid, "mono");
          cell(row, rate(c.rate_bps), "num");
          cell(row, rate(c.ceil_bps), "num");
          cell(row, bytes(c.sent_bytes), "num");
          cell(row, count(c.dropped), "num");
          cell(row, count(c.overlimits), "num");
          rows.push(row);
        }
      }
      AB.replaceBody($("htb"), rows, 9, shaping ? "No shaped links." : "Shaping is off: no link has a configured rate.");
    }

    // A rule's match in one line; long lists (the built-in services) show their first items.
    function matchText(match, limit) {
      const some = (items) => (limit && items.length > limit
        ? items.slice(0, limit).join(", ") + " … (" + (items.length - limit) + " more)" : items.join(", "));
      const parts = [];
      const proto = match.proto && match.proto !== "any" ? match.proto + " " : "";
      if ((match.ports || []).length) {
        parts.push(proto + "port " + some(match.ports.map((p) => (Array.isArray(p) ? (p[0] === p[1] ? p[0] : p[0] + "-" + p[1]) : p))));
      } else if (proto) {
        parts.push(proto.trim());
      }
      if ((match.cidrs || []).length) parts.push("net " + some(match.cidrs));
      if ((match.hosts || []).length) parts.push("host " + some(match.hosts));
      return parts.join(" · ");
    }

    function renderRules(reply) {
      const ruleRows = (reply.rules || []).map((r, i) => {
        const row = el("tr", { "data-rule": r.id });
        cell(row, String(i + 1), "num");
        cell(row, matchText(r.match || {}) + (r.enabled === false ? " (disabled)" : ""), "mono match");
        cell(row, "").appendChild(badge(r.class));
        cell(row, r.comment || "", "muted wrap");
        const actions = cell(row, "");
        if (AB.isAdmin()) {
          const del = el("button", { type: "button", class: "button button-small",
            "aria-label": "Delete rule " + (i + 1) }, "Delete");
          del.addEventListener("click", async () => {
            const r2 = await AB.api("/api/v1/rules/" + encodeURIComponent(r.id), { method: "DELETE" });
            if (!r2.ok) actions.textContent = errorText(r2);
            else loadRules();
          });
          actions.appendChild(del);
        }
        return row;
      });
      // After the admin's rules the daemon's own apply: configured, known services, the port table.
      const first = ruleRows.length;
      const builtin = (reply.builtin || []).map((r, i) => {
        const row = el("tr", { "data-rule": r.id, class: "builtin" });
        cell(row, String(first + i + 1), "num");
        const text = cell(row, matchText(r.match || r, 6) || "(heuristic)", "mono match");
        text.title = matchText(r.match || r);
        cell(row, "").appendChild(badge(r.class));
        cell(row, "built in: " + r.id, "muted wrap");
        cell(row, "");
        return row;
      });
      AB.replaceBody($("rules"), ruleRows.concat(builtin), 5, "No rules: every flow goes to the default class.");
    }
    const loadRules = () => AB.load("/api/v1/rules", "rules-panel", renderRules);
    const load = () => Promise.all([AB.load("/api/v1/classes", "classes-panel", render), loadRules()]);
    const refresh = ticking(load);
    const ruleForm = $("rule-add");
    ruleForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(ruleForm));
      if (!data.position) delete data.position;
      const reply = await AB.api("/api/v1/rules", { method: "POST", json: data });
      fieldError(ruleForm, reply.ok ? "" : errorText(reply));
      const field = !reply.ok && reply.body && reply.body.error && reply.body.error.field;
      for (const input of ruleForm.querySelectorAll("input")) {
        if (input.name === field) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      }
      if (reply.ok) { ruleForm.reset(); loadRules(); }
    });
    AB.connect({ state: refresh });
    refresh();
  }

  // ---- predictions ------------------------------------------------------------

  function predictionsPage() {
    function render(reply) {
      const error = reply.error || {};
      const parts = [];
      if (reply.method) parts.push("method: " + reply.method + (reply.model ? " (" + reply.model + ")" : ""));
      if (error.mae_mbit !== undefined && error.mae_mbit !== null) {
        parts.push("rolling error of the next-second prediction: " + mbit(error.mae_mbit) + " mean absolute" +
          (error.nmae !== undefined && error.nmae !== null ? ", " + pct(error.nmae) + " normalised" : ""));
      }
      $("predict-model").textContent = parts.join(" · ");
      AB.replaceBody($("demand"), (reply.classes || []).map((c) => {
        const row = el("tr", { "data-class": c.name });
        cell(row, "", "", "th").appendChild(badge(c.name));
        cell(row, mbit(c.now_mbit), "num");
        cell(row, mbit(c.next_1s_mbit), "num");
        cell(row, mbit(c.next_5s_mbit), "num");
        cell(row, confidence(c.confidence), "num");
        return row;
      }), 5, "No class predictions.");
      AB.replaceBody($("capacity"), (reply.links || []).map((l) => {
        const row = el("tr", { "data-link": l.name });
        cell(row, l.name, "mono", "th");
        cell(row, mbit(l.now_mbit), "num");
        cell(row, mbit(l.next_1s_mbit), "num");
        cell(row, mbit(l.next_5s_mbit), "num");
        cell(row, mbit(l.capacity_mbit ?? l.predicted_mbit), "num");
        cell(row, confidence(l.confidence), "num");
        return row;
      }), 6, "No link predictions.");
    }
    const refresh = ticking(() => AB.load("/api/v1/predictions", "predictions-panel", render));
    AB.connect({ state: refresh });
    refresh();
  }

  // ---- alerts -----------------------------------------------------------------

  function alertsPage() {
    function severity(row, s) {
      cell(row, "").appendChild(el("span", { class: "sev sev-" + String(s).replace(/[^a-z]/g, "") }, s));
    }
    function render(reply) {
      const alerts = reply.alerts || [];
      AB.replaceBody($("active-alerts"), alerts.filter((a) => a.state === "active").map((a) => {
        const row = el("tr", { "data-alert": a.id });
        severity(row, a.severity);
        cell(row, a.rule + (a.subject ? " · " + a.subject : ""), "mono");
        cell(row, a.message + (a.value !== undefined && a.value !== null ? " (" + Number(a.value).toPrecision(3) + ")" : ""));
        cell(row, when(a.raised_at));
        const acked = a.acked_at !== null && a.acked_at !== undefined;
        const ack = cell(row, acked ? "yes, " + when(a.acked_at) : "");
        if (!acked && AB.isAdmin()) {
          const button = el("button", { type: "button", class: "button button-small",
            "aria-label": "Acknowledge " + a.rule + (a.subject ? " " + a.subject : "") }, "Acknowledge");
          button.addEventListener("click", async () => {
            const r = await AB.api("/api/v1/alerts/" + encodeURIComponent(a.id) + "/ack", { method: "POST" });
            if (!r.ok) ack.textContent = errorText(r);
            refresh.now();
          });
          ack.appendChild(button);
        } else if (!acked) {
          ack.textContent = "no";
        }
        return row;
      }), 5, "No active alerts.");
      AB.replaceBody($("alert-history"), alerts.filter((a) => a.state === "resolved").map((a) => {
        const row = el("tr");
        severity(row, a.severity);
        cell(row, a.rule + (a.subject ? " · " + a.subject : ""), "mono");
        cell(row, a.message);
        cell(row, when(a.raised_at));
        cell(row, when(a.resolved_at));
        return row;
      }), 5, "No alerts so far.");
    }
    function renderRules(reply) {
      AB.replaceBody($("alert-rules"), (reply.rules || []).map((r) => {
        const row = el("tr");
        cell(row, r.name, "mono", "th");
        const condition = cell(row, r.metric + " " + r.op + " " + r.threshold + (r.enabled === false ? " (off)" : ""), "mono");
        if (r.summary) condition.appendChild(el("span", { class: "cell-note" }, r.summary));
        if (r.source) row.title = r.source === "api" ? "set here (the API)" : "from the configuration";
        cell(row, r.for_s + " s", "num");
        severity(row, r.severity);
        const actions = cell(row, "");
        if (AB.isAdmin()) {
          // A configured rule (defaults, TOML) is switched off; a rule set here is deleted.
          const verb = r.source === "config" ? "Turn off" : "Delete";
          const del = el("button", { type: "button", class: "button button-small", "aria-label": verb + " rule " + r.name }, verb);
          del.addEventListener("click", async () => {
            await AB.api("/api/v1/alert-rules/" + encodeURIComponent(r.name), { method: "DELETE" });
            refresh.now();
          });
          actions.appendChild(del);
        }
        return row;
      }), 5, "No alert rules.");
    }
    const load = () => Promise.all([AB.load("/api/v1/alerts", "alerts-panel", render),
      AB.load("/api/v1/alert-rules", "arules-panel", renderRules)]);
    const refresh = ticking(load);
    refresh.now = load;
    const form = $("rule-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const name = (data.name || "").trim();
      if (!name) { fieldError(form, "name: is required"); return; }
      delete data.name;
      const reply = await AB.api("/api/v1/alert-rules/" + encodeURIComponent(name), { method: "POST", json: data });
      fieldError(form, reply.ok ? "" : errorText(reply));
      if (reply.ok) { form.reset(); load(); }
    });
    AB.connect({ state: refresh, alerts: () => load() });
    refresh();
  }

  // ---- usage --------------------------------------------------------------------

  function usagePage() {
    function render(reply) {
      const period = [reply.day && "today is " + reply.day, reply.month && "month " + reply.month].filter(Boolean).join(", ");
      $("usage-caption").textContent = count(reply.count) + " hosts with active flows" + (period ? "; " + period : "");
      AB.replaceBody($("usage"), (reply.hosts || []).map((h) => {
        const row = el("tr", { "data-host": h.host });
        cell(row, h.gateway ? h.host + " (gateway)" : h.host, "mono", "th").setAttribute("scope", "row");
        cell(row, count(h.flows), "num");
        cell(row, rate(h.bps_up), "num up");
        cell(row, rate(h.bps_down), "num down");
        cell(row, h.day_up === undefined ? "—" : bytes(h.day_up), "num up");
        cell(row, h.day_down === undefined ? "—" : bytes(h.day_down), "num down");
        cell(row, h.month_up === undefined ? "—" : bytes(h.month_up), "num up");
        cell(row, h.month_down === undefined ? "—" : bytes(h.month_down), "num down");
        return row;
      }), 8, "No traffic yet.");
      AB.replaceBody($("quotas"), (reply.quotas || []).map((q) => {
        const row = el("tr");
        cell(row, q.quota, "mono", "th").setAttribute("scope", "row");
        cell(row, q.subject, "mono");
        cell(row, q.period);
        const used = cell(row, "");
        used.appendChild(el("meter", { min: "0", max: String(q.limit_bytes), value: String(Math.min(q.used_bytes, q.limit_bytes)),
          high: String(0.9 * q.limit_bytes), "aria-label": "quota " + q.quota + " used by " + q.subject }));
        used.appendChild(document.createTextNode(" " + bytes(q.used_bytes) + " of " + bytes(q.limit_bytes) +
          " (" + Number(q.used_pct).toFixed(1) + " %)"));
        return row;
      }), 4, "No quotas configured (controller.usage.quotas in the configuration).");
    }
    const refresh = ticking(() => AB.load("/api/v1/usage", "usage-panel", render));
    AB.connect({ state: refresh });
    refresh();
  }

  // ---- history ------------------------------------------------------------------

  function historyPage() {
    const form = $("history-form");
    function query() {
      const data = new FormData(form);
      const end = Math.floor(Date.now() / 1000);
      const start = end - Number(data.get("range"));
      return "series=" + encodeURIComponent(data.get("series")) + "&start=" + start + "&end=" + end;
    }
    async function show() {
      const q = query();
      $("export-csv").href = "/api/v1/export?format=csv&" + q;
      $("export-json").href = "/api/v1/export?format=json&" + q;
      const range = q.slice(q.indexOf("&start=") + 1);
      $("export-db-csv").href = "/api/v1/export/history?format=csv&" + range;
      $("export-db-json").href = "/api/v1/export/history?format=json&" + range;
      const series = new FormData(form).get("series");
      const format = /bps$/.test(series) ? rate : (v) => Number(v).toPrecision(3);
      const reply = await AB.load("/api/v1/metrics/history?" + q, "history-panel", (body) => {
        AB.lineChart($("history-chart"), [{ name: series, color: "#0b6f6a", points: body.points || [] }], format,
          { emptyText: "No points in this range" });
      });
      if (!reply.ok) AB.lineChart($("history-chart"), [], format, { emptyText: "No history available" });
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); show(); });
    AB.api("/api/v1/links").then((reply) => {
      if (!reply.ok) return;
      for (const link of reply.body.links || []) {
        for (const dir of ["down", "up"]) $("series-names").appendChild(el("option", { value: "link." + link.name + "." + dir + "_bps" }));
      }
    });
    AB.connect({});
    show();
  }

  const PAGES = { flows: flowsPage, links: linksPage, classes: classesPage, predictions: predictionsPage,
    alerts: alertsPage, usage: usagePage, history: historyPage };
  const page = PAGES[document.body.dataset.page];
  if (page) page();
})();

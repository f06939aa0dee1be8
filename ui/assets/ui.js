// weft UI: live updates from /v2/events (through /ui/events), and logs
// that follow. No framework, no external files.
(function () {
  "use strict";
  // The page loads this script async, so that DOMContentLoaded waits for
  // neither it nor the stylesheet; it starts once the document is parsed.
  var start = function () {
    var main = document.getElementById("main");

    // Live pages re-render their <main> from the server shortly after an
    // event; at most one refresh is in flight, and one more is queued. The
    // apps page instead asks for what changed since its store index
    // (X-Weft-Since) and replaces just those rows; it also fetches the rows
    // after its first screenful once it is up.
    if (main && main.dataset.live && window.EventSource) {
      var busy = false, again = false, timer = null;
      var get = function (headers) {
        headers["X-Weft-Partial"] = "1";
        return fetch(location.href, { headers: headers, credentials: "same-origin" });
      };
      var full = function () {
        return get({}).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
          if (html === null) { return; }
          // Unchanged (as the browser reads it): keep the nodes, so a
          // selection, a hover or a test's query is not cut short.
          var tmp = document.createElement("div");
          tmp.innerHTML = html;
          if (tmp.innerHTML !== main.innerHTML) {
            main.innerHTML = html;
            main.dataset.updated = String(Date.now());
            if (document.querySelector("#apps tr.more")) { again = true; }
          }
        });
      };
      // rest appends the apps after the first screenful, then catches up.
      var rest = function (table, more) {
        return get({ "X-Weft-Rows-After": more.dataset.after }).then(function (r) {
          if (!r.ok) { return full(); }
          return r.text().then(function (html) {
            more.insertAdjacentHTML("beforebegin", html);
            more.remove();
            table.dataset.complete = "1";
            return delta(table);
          });
        });
      };
      var delta = function (table) {
        return get({ "X-Weft-Since": table.dataset.index }).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
          if (!d) { return full(); }
          if (d.full !== undefined) {
            main.innerHTML = d.full;
            main.dataset.updated = String(Date.now());
            if (document.querySelector("#apps tr.more")) { again = true; }
            return null;
          }
          var body = table.tBodies[0], byId = {}, broken = false;
          Array.prototype.forEach.call(body.rows, function (tr) { if (tr.dataset.app) { byId[tr.dataset.app] = tr; } });
          d.removed.forEach(function (id) { if (byId[id]) { byId[id].remove(); delete byId[id]; } });
          d.rows.forEach(function (u) {
            if (broken) { return; }
            var tmp = document.createElement("tbody");
            tmp.innerHTML = u.html;
            var tr = tmp.firstElementChild;
            if (byId[u.id]) {
              byId[u.id].replaceWith(tr);
            } else if (u.after === "") {
              body.insertBefore(tr, body.firstChild);
            } else if (byId[u.after]) {
              byId[u.after].after(tr);
            } else {
              broken = true; // the page is not what the server thinks
              return;
            }
            byId[u.id] = tr;
          });
          if (d.aside) { document.getElementById("apps-aside").innerHTML = d.aside; }
          if (d.count) { document.getElementById("apps-count").textContent = d.count; }
          table.dataset.index = d.index;
          if (d.rows.length || d.removed.length) { main.dataset.updated = String(Date.now()); }
          var none = body.querySelector("tr.none"), any = Object.keys(byId).length > 0;
          if (broken || (none && any) || (!none && !any && !body.querySelector("tr.more"))) { return full(); }
          return null;
        });
      };
      var refresh = function () {
        timer = null;
        var a = document.activeElement;
        if (a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) {
          timer = setTimeout(refresh, 1000); // the user is typing: later
          return;
        }
        if (busy) { again = true; return; }
        busy = true;
        var table = document.getElementById("apps"), p;
        if (table && table.dataset.index) {
          var more = table.querySelector("tr.more");
          p = more ? rest(table, more) : delta(table);
        } else {
          p = full();
        }
        p.catch(function () {}).then(function () {
          busy = false;
          if (again) { again = false; schedule(0); }
        });
      };
      var schedule = function (ms) {
        if (!timer) { timer = setTimeout(refresh, typeof ms === "number" ? ms : 50); }
      };
      var types = ["status_update_event", "instance_changed_event", "health_status_changed_event",
        "deployment_info", "deployment_success", "deployment_failed", "deployment_step_success",
        "deployment_step_failure", "api_post_event", "group_change_success", "app_terminated_event",
        "weft_job_run_event", "unhealthy_instance_kill_event"];
      var es = new EventSource("/ui/events");
      types.forEach(function (t) { es.addEventListener(t, schedule); });
      es.onmessage = schedule;
      // What changed between the render and the stream's (re)connection
      // came as no event: refresh once on every open.
      es.onopen = function () { main.dataset.stream = "open"; schedule(); };
      // The apps page fetches the rest of its rows at once.
      if (document.querySelector("#apps tr.more")) { schedule(0); }
      // Nodes and the mesh change without Marathon events, and so does
      // why an app waits (offers declined): such pages are polled too.
      var polled = /^\/ui\/(nodes|mesh)/.test(location.pathname);
      setInterval(function () { if (polled || document.getElementById("poll")) { schedule(); } }, 3000);
    }

    // Logs: fetch the tail, then what was appended, once a second.
    var log = document.getElementById("log");
    if (log && log.dataset.src) {
      var next = null, state = document.getElementById("log-state");
      var follow = document.getElementById("follow");
      var poll = function () {
        var url = log.dataset.src + (next === null ? "" : "&offset=" + next);
        fetch(url, { credentials: "same-origin" })
          .then(function (r) {
            return r.text().then(function (t) {
              if (!r.ok) { state.textContent = t; return; }
              state.textContent = "";
              var n = r.headers.get("X-Log-Next");
              if (n !== null) { next = n; }
              if (t) {
                var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
                log.appendChild(document.createTextNode(t));
                if (atEnd) { log.scrollTop = log.scrollHeight; }
              }
            });
          })
          .catch(function (e) { state.textContent = String(e); })
          .then(function () { if (!follow || follow.checked) { setTimeout(poll, 1000); } });
      };
      if (follow) { follow.addEventListener("change", function () { if (follow.checked) { poll(); } }); }
      poll();
    }
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// weft UI: live updates from /v2/events (through /ui/events), and logs
// that follow. No framework, no external files.
(function () {
  "use strict";
  var main = document.getElementById("main");

  // Live pages re-render their <main> from the server shortly after an
  // event; at most one refresh is in flight, and one more is queued.
  if (main && main.dataset.live && window.EventSource) {
    var busy = false, again = false, timer = null;
    var refresh = function () {
      timer = null;
      var a = document.activeElement;
      if (a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) {
        timer = setTimeout(refresh, 1000); // the user is typing: later
        return;
      }
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { headers: { "X-Weft-Partial": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            main.innerHTML = html;
            main.dataset.updated = String(Date.now());
          }
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) { again = false; schedule(); }
        });
    };
    var schedule = function () { if (!timer) { timer = setTimeout(refresh, 100); } };
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
})();

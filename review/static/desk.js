// The desk's only script: keyboard shortcuts, the lease timer and heartbeat, and small form helpers.
// Loaded from /static (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function byId(id) { return document.getElementById(id); }

  function say(text) {
    var box = byId("key-message");
    if (box) { box.textContent = text; }
  }

  function submit(form) {
    if (!form) { return; }
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  // --- keyboard shortcuts (review screen) --------------------------------------------------------
  var editor = byId("editor");
  var editForm = byId("edit-form");

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function dirty() { return editor && editor.value !== editor.defaultValue; }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && editForm) {
      event.preventDefault();
      submit(editForm);
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return; // letters typed into a field are text, not commands
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    switch (event.key) {
      case "a":
        if (!byId("approve-form")) { return; }
        event.preventDefault();
        // approving would drop the unsaved text: the editor decides what they meant
        if (dirty()) { say("You have unsaved changes: save them (Ctrl+Enter) before approving."); return; }
        submit(byId("approve-form"));
        break;
      case "r":
        if (!byId("reason")) { return; }
        event.preventDefault();
        byId("reason").focus();
        say("Choose a reason, then press Enter or click Reject.");
        break;
      case "s":
        if (!byId("skip-form")) { return; }
        event.preventDefault();
        submit(byId("skip-form"));
        break;
      case "e":
        if (!editor) { return; }
        event.preventDefault();
        editor.focus();
        break;
      case "h":
        var history = document.querySelector('a[href$="/history"]');
        if (history) { window.location.assign(history.href); }
        break;
      default:
        break;
    }
  });

  // Enter on the reason select submits the rejection (selects do not submit forms by themselves).
  var reason = byId("reason");
  if (reason) {
    reason.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && reason.value) { event.preventDefault(); submit(byId("reject-form")); }
    });
  }

  // --- lease timer and heartbeat -----------------------------------------------------------------
  var lease = byId("lease");
  if (lease) {
    var left = byId("lease-left");
    var expires = Date.parse(lease.dataset.expires);
    var leaseMs = (parseInt(lease.dataset.minutes, 10) || 15) * 60000;
    var lastActivity = Date.now();
    var lost = false;

    ["keydown", "input", "pointerdown", "scroll"].forEach(function (name) {
      document.addEventListener(name, function () { lastActivity = Date.now(); }, { passive: true });
    });

    var tick = function () {
      var ms = expires - Date.now();
      if (lost || ms <= 0) {
        left.textContent = lost ? "lost" : "expired";
        lease.classList.add("expired");
        return;
      }
      var s = Math.floor(ms / 1000);
      left.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") + " left";
      lease.classList.toggle("ending", ms < 120000);
    };

    // Renew every minute, but only for an editor who is still there: a tab left open overnight lets
    // its lease run out, and the draft goes back to the queue for someone else.
    var beat = function () {
      if (lost || Date.now() - lastActivity > leaseMs) { return; }
      fetch("/drafts/" + lease.dataset.draft + "/heartbeat", {
        method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin"
      }).then(function (response) {
        return response.json().then(function (body) {
          if (response.ok && body.expires_at) {
            expires = Date.parse(body.expires_at);
          } else {
            lost = true;
            say(body.error || "The lease on this draft was lost: take the next draft.");
          }
          tick();
        });
      }).catch(function () { /* offline for a moment: the next beat tries again */ });
    };

    tick();
    window.setInterval(tick, 1000);
    window.setInterval(beat, 60000);
  }

  // --- small helpers -----------------------------------------------------------------------------
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { submit(select.form); });
  });
})();

// The desk's only script: unsaved-text guard, keyboard shortcuts, the lease timer, heartbeat and
// warnings, and small form helpers.
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

  // --- unsaved text (review screen) ---------------------------------------------------------------
  // The review form posts the text box with every decision (the server saves it first), so only
  // leaving the page some other way can lose typed text: the browser asks before that happens.
  var editor = byId("editor");
  var reviewForm = byId("review-form");
  var submitting = false;

  function dirty() { return !!editor && editor.value !== editor.dataset.stored; }

  if (reviewForm) {
    reviewForm.addEventListener("submit", function () { submitting = true; });
  }
  window.addEventListener("beforeunload", function (event) {
    if (dirty() && !submitting) {
      event.preventDefault();
      event.returnValue = "";  // older browsers need it set to show their "leave the page?" prompt
    }
  });
  window.addEventListener("pageshow", function () { submitting = false; });  // back button: armed again

  function click(id) {
    var button = byId(id);
    if (button && !button.disabled) { button.click(); return true; }
    return false;
  }

  // --- keyboard shortcuts (review screen) --------------------------------------------------------
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && reviewForm) {
      event.preventDefault();
      submit(reviewForm);  // the form's own action: save the edit
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return; // letters typed into a field are text, not commands
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    switch (event.key) {
      case "a":
        if (click("approve")) { event.preventDefault(); }
        break;
      case "r":
        if (!byId("reason")) { return; }
        event.preventDefault();
        byId("reason").focus();
        say("Choose a reason, then press Enter or click Reject.");
        break;
      case "s":
        if (click("skip")) { event.preventDefault(); }
        break;
      case "u":
        if (byId("undo-form")) { event.preventDefault(); submit(byId("undo-form")); }
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

  // Enter on the reason select rejects (selects do not submit forms by themselves).
  var reason = byId("reason");
  if (reason) {
    reason.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && reason.value) { event.preventDefault(); click("reject"); }
    });
  }
  // Enter in the decision note would submit the form's first button (Save): ask which decision instead.
  var decisionNote = byId("decision-note");
  if (decisionNote) {
    decisionNote.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        say("The note goes with your decision: click Approve, or choose a reason and Reject.");
      }
    });
  }

  // --- lease timer, heartbeat, warning and loss ---------------------------------------------------
  var lease = byId("lease");
  if (lease) {
    var left = byId("lease-left");
    var warning = byId("lease-warning");
    var lostBox = byId("lease-lost");
    var expires = Date.now() + (parseInt(lease.dataset.leftMs, 10) || 0);
    var leaseMs = (parseInt(lease.dataset.minutes, 10) || 15) * 60000;
    var beatMs = Math.max(10000, Math.floor(leaseMs / 3));  // a third of the lease: two beats can fail
    var lastActivity = Date.now();
    var lastBeat = 0;
    var lost = false;

    // While the lost-lease box blocks the page, keyboard focus cannot reach what is behind it either.
    var behind = document.querySelectorAll(".review-grid, .draft-head, header.topbar, #progress, #undo-form");
    var setInert = function (on) {
      behind.forEach(function (element) { element.inert = on; });
    };

    var clock = function (ms) {
      var s = Math.max(0, Math.floor(ms / 1000));
      return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    };

    var loseLease = function (message) {
      if (lost) { return; }
      lost = true;
      ["approve", "reject", "skip"].forEach(function (id) { if (byId(id)) { byId(id).disabled = true; } });
      if (warning) { warning.hidden = true; }
      if (message) { byId("lease-lost-message").textContent = message; }
      lostBox.hidden = false;
      lostBox.classList.remove("collapsed");
      setInert(true);
      byId("take-back").focus();
    };

    var tick = function () {
      var ms = expires - Date.now();
      if (lost || ms <= 0) {
        left.textContent = lost ? "lost" : "expired";
        lease.classList.add("expired");
        loseLease(null);
        return;
      }
      left.textContent = clock(ms) + " left";
      var ending = ms < beatMs;  // a beat should have renewed it by now: the editor is away
      lease.classList.toggle("ending", ending);
      if (warning) {
        warning.hidden = !ending;
        if (ending) {
          warning.textContent = "Your lease on this draft ends in " + clock(ms) +
            ": type, click or scroll to keep it, or it goes back to the queue.";
        }
      }
    };

    // Renew only for an editor who is still there: a tab left open overnight lets its lease run
    // out, and the draft goes back to the queue for someone else.
    // The cut-off sits half a beat before the lease length, away from any beat's time, so an idle
    // editor's last renewal is always the same one (the lease then ends a lease after it).
    var beat = function () {
      if (lost || Date.now() - lastActivity > leaseMs - beatMs / 2) { return; }
      var sentAt = lastBeat = Date.now();
      fetch("/drafts/" + lease.dataset.draft + "/heartbeat", {
        method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin"
      }).then(function (response) {
        return response.json().then(function (body) {
          if (response.ok && typeof body.left_ms === "number") {
            // counted from the send: a slow answer never shows more time than the server gave
            expires = sentAt + body.left_ms;
          } else {
            loseLease(body.error || "The lease on this draft was lost.");
          }
          tick();
        });
      }).catch(function () { /* offline for a moment: the next beat tries again */ });
    };

    ["keydown", "input", "pointerdown", "scroll"].forEach(function (name) {
      document.addEventListener(name, function () {
        lastActivity = Date.now();
        // back from a pause with the warning showing: renew now rather than at the next beat
        if (!lost && expires - Date.now() < beatMs && Date.now() - lastBeat > 5000) { beat(); }
      }, { passive: true, capture: true });
    });

    var showText = byId("show-text");
    if (showText) {
      // The box steps aside to a bar (Take it back stays in reach) so the editor can copy their text.
      showText.addEventListener("click", function () {
        lostBox.classList.add("collapsed");
        lostBox.setAttribute("aria-modal", "false");
        setInert(false);
        if (editor) { editor.focus(); editor.select(); }
      });
    }

    tick();
    window.setInterval(tick, 1000);
    window.setInterval(beat, beatMs);
  }

  // --- small helpers -----------------------------------------------------------------------------
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { submit(select.form); });
  });
})();

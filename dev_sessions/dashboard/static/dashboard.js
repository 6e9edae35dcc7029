// dev-sessions dashboard: follows the page's event stream (Server-Sent Events pushed by the server
// on file-system events; nothing polls), sends forms with the CSRF token, shows times as "3 min ago".
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const live = document.getElementById("live");
  const flash = document.getElementById("flash");

  function say(text, ok) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = ok ? "ok" : "bad";
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { flash.textContent = ""; flash.className = ""; }, ok ? 4000 : 12000);
  }

  // -- times ---------------------------------------------------------------------------------------
  function ago(iso) {
    const then = Date.parse(iso);
    if (isNaN(then)) return iso;
    const s = Math.max(0, Math.round((Date.now() - then) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function times(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      t.title = t.getAttribute("datetime");
      t.textContent = ago(t.getAttribute("datetime"));
    });
  }
  times();
  setInterval(times, 15000);

  // -- the conversation log --------------------------------------------------------------------------
  const log = document.getElementById("log");
  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
  }
  function toBottom() { window.scrollTo(0, document.body.scrollHeight); }
  if (log) toBottom();

  // -- the event stream ------------------------------------------------------------------------------
  const streamUrl = document.body.dataset.stream;
  if (streamUrl && window.EventSource) {
    const source = new EventSource(streamUrl);
    source.onopen = function () { if (live) { live.className = "live on"; live.title = "live"; } };
    source.onerror = function () {
      if (!live) return;
      live.className = "live off";
      live.title = source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting";
    };
    source.addEventListener("sessions", function (e) {
      const data = JSON.parse(e.data);
      const body = document.getElementById("sessions");
      if (body) { body.innerHTML = data.html; times(body); }
      const total = document.getElementById("total");
      if (total && data.total) total.textContent = data.total;
    });
    source.addEventListener("items", function (e) {
      const data = JSON.parse(e.data);
      if (!log) return;
      const follow = nearBottom();
      // The items from `from` on are sent again (a log that changed in place, or a new one).
      log.querySelectorAll("article[data-index]").forEach(function (a) {
        if (Number(a.dataset.index) >= data.from) a.remove();
      });
      log.insertAdjacentHTML("beforeend", data.html);
      times(log);
      if (follow) toBottom();
    });
    // A question's dialog is drawn as the hooks announce it, then again with the options as the
    // agent's screen numbers them. A button replaced between the press and the release of a click
    // gets no click: the answer would be lost. So a status that comes while a press is on the box
    // waits until that click (and the answer it sends) is done; the same status again changes nothing.
    const statusBox = document.getElementById("status");
    let shownStatus = null;
    let pressed = false;
    let heldStatus = null;
    function showStatus(html) {
      if (statusBox && html !== shownStatus) { statusBox.innerHTML = html; times(statusBox); shownStatus = html; }
    }
    function released() {
      pressed = false;
      clearTimeout(released.timer);
      if (heldStatus !== null) { const html = heldStatus; heldStatus = null; showStatus(html); }
    }
    if (statusBox) {
      statusBox.addEventListener("pointerdown", function () {
        pressed = true;
        clearTimeout(released.timer);
        released.timer = setTimeout(released, 3000); // a press that never ends holds it back no longer
      });
    }
    // The click (and the form's submit) follow the pointerup in the same task: show what was held after.
    ["pointerup", "pointercancel"].forEach(function (name) {
      document.addEventListener(name, function () { if (pressed) setTimeout(released, 0); }, true);
    });
    window.addEventListener("blur", function () { if (pressed) released(); });
    source.addEventListener("status", function (e) {
      const data = JSON.parse(e.data);
      if (pressed) heldStatus = data.html; else showStatus(data.html);
    });
    source.addEventListener("tokens", function (e) {
      const data = JSON.parse(e.data);
      const box = document.getElementById("tokens");
      if (box) box.innerHTML = data.html;
    });
    source.addEventListener("changed", function () {
      fetch(location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          const main = document.getElementById("main");
          // Never throw away what is being written: any field of a form there that differs from
          // what the page came with (a recipient typed, not only a body) keeps the page as it is.
          const fields = main ? main.querySelectorAll("form.act input, form.act textarea") : [];
          const editing = Array.prototype.some.call(fields, function (f) {
            return f.type !== "hidden" && f.value !== f.defaultValue;
          });
          if (main && !editing) { main.innerHTML = html; times(main); }
        })
        .catch(function () {})
        .finally(function () {
          // How many changes this page has taken in (or kept its fields through): for the tests.
          document.body.dataset.changes = String(Number(document.body.dataset.changes || 0) + 1);
        });
    });
  }

  // -- forms: sent with the CSRF token, answered in the flash line ----------------------------------
  document.addEventListener("submit", function (e) {
    const form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) return;
    e.preventDefault();
    const fields = new URLSearchParams(new FormData(form, e.submitter || undefined));
    const buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: fields,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
    })
      .then(function (r) {
        return r.json().catch(function () { return { ok: false, message: "HTTP " + r.status }; });
      })
      .then(function (answer) {
        say(answer.message || (answer.ok ? "done" : "failed"), answer.ok);
        if (answer.ok) {
          form.querySelectorAll("textarea, input[type=text], input:not([type])").forEach(function (f) { f.value = ""; });
          const details = form.closest("details");
          if (details) details.open = false;
          if (answer.redirect) location.href = answer.redirect;
        }
      })
      .catch(function () { say("the dashboard did not answer", false); })
      .finally(function () { buttons.forEach(function (b) { b.disabled = false; }); });
  });
  // Ctrl+Enter / Cmd+Enter sends.
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target instanceof HTMLTextAreaElement && e.target.form) {
      e.preventDefault();
      e.target.form.requestSubmit();
    }
  });
  document.addEventListener("change", function (e) {
    if (e.target instanceof HTMLSelectElement && e.target.classList.contains("autosubmit")) e.target.form.submit();
  });
})();

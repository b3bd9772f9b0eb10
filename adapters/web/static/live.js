// Pages about pending requests follow them without a reload: every few seconds the page asks
// the inbox whether what it shows changed (a vote, a decision, a new request). If it did, the
// page reloads, unless the person is typing (a deny reason, edited params): then a notice
// offers the reload, so nothing typed is lost. Hidden tabs do not ask.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="signoff-live"]');
  if (!meta) return;
  var url = meta.getAttribute("content");
  var token = meta.getAttribute("data-token");
  var every = parseInt(meta.getAttribute("data-every"), 10) || 5000;

  function typing() {
    var fields = document.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value.trim() !== "" && fields[i].value !== fields[i].defaultValue) return true;
    }
    var active = document.activeElement;
    return Boolean(active && active.form);
  }

  function offerReload() {
    if (document.getElementById("live-changed")) return;
    var notice = document.createElement("div");
    notice.id = "live-changed";
    notice.className = "flash notice";
    notice.setAttribute("role", "status");
    notice.appendChild(document.createTextNode("This page changed since it was loaded. "));
    var link = document.createElement("a");
    link.href = window.location.pathname;
    link.textContent = "Show the new state";
    notice.appendChild(link);
    var main = document.querySelector("main");
    main.insertBefore(notice, main.firstChild);
  }

  function check() {
    if (document.hidden) return later();
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (state) {
        if (state && state.token !== token) {
          if (typing()) offerReload();
          else window.location.replace(window.location.pathname);
          return;
        }
        later();
      })
      .catch(later);
  }

  function later() { window.setTimeout(check, every); }
  later();
})();

// Live refresh: every element with data-refresh="URL" is replaced, every
// data-every milliseconds, by the HTML that URL renders on the server
// (escaped there, like the page). An element with data-stop-when stops
// refreshing once its content holds an element with data-ended. Without
// this script the pages work; they are only not live.
"use strict";
(function () {
  function live(el) {
    var url = el.getAttribute("data-refresh");
    var every = parseInt(el.getAttribute("data-every"), 10) || 2000;
    var stopWhen = el.getAttribute("data-stop-when");
    var busy = false;
    function ended() {
      return stopWhen && el.querySelector("[data-ended]") !== null;
    }
    function tick() {
      if (busy || document.hidden || ended()) {
        return;
      }
      busy = true;
      fetch(url, { headers: { "Accept": "text/html" }, cache: "no-store", credentials: "same-origin" })
        .then(function (res) {
          if (!res.ok) {
            throw new Error(res.status + " " + res.statusText);
          }
          return res.text();
        })
        .then(function (html) {
          el.innerHTML = html;
          el.removeAttribute("data-stale");
          el.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () {
          el.setAttribute("data-stale", "true");
        })
        .finally(function () {
          busy = false;
        });
    }
    setInterval(tick, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(live);
})();

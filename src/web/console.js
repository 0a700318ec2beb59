// The console's one script, inline and allowed by its hash in the Content-Security-Policy.
// Every page works without it; it adds two comforts:
// - local time: with "Times: local" chosen (an element has data-tz="local"), each
//   element with data-t (seconds since 1970) shows that instant in the browser's zone;
// - keys: "/" focuses the search, "n" the older page, "p" back, "g" the newest page,
//   Escape leaves a field.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function local(t) {
    var d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function zone() {
    var o = -new Date().getTimezoneOffset();
    var sign = o < 0 ? "-" : "+";
    o = Math.abs(o);
    return "UTC" + sign + pad(Math.floor(o / 60)) + ":" + pad(o % 60);
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector("[data-tz=local]")) return;
    document.querySelectorAll("[data-t]").forEach(function (el) {
      var s = local(Number(el.getAttribute("data-t")));
      var f = el.getAttribute("data-f");
      s = f === "date" ? s.slice(0, 10) : f === "min" ? s.slice(0, 16) : s;
      el.textContent = s + (el.getAttribute("data-s") || "");
    });
    document.querySelectorAll(".tz-name").forEach(function (el) { el.textContent = zone(); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
      if (e.key === "Escape") t.blur();
      return;
    }
    function follow(id) {
      var a = document.getElementById(id);
      if (a) { e.preventDefault(); a.click(); }
    }
    if (e.key === "/") {
      var q = document.getElementById("f-q");
      if (q) { e.preventDefault(); q.focus(); q.select(); }
    } else if (e.key === "n") {
      follow("older");
    } else if (e.key === "g") {
      follow("newest");
    } else if (e.key === "p" && document.getElementById("newest")) {
      e.preventDefault();
      history.back();
    }
  });
})();

// Small progressive enhancements; every page works without JavaScript.
(function () {
  "use strict";
  // Filter selects marked data-autosubmit apply on change (the Go/Apply buttons remain).
  document.querySelectorAll("select[data-autosubmit], #overview-filters select").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  // Destructive buttons ask first.
  document.querySelectorAll("[data-confirm]").forEach(function (el) {
    el.addEventListener("click", function (event) {
      if (!window.confirm(el.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // Show the countdown to the next auto-refresh (the reload itself is a meta refresh).
  var stamp = document.getElementById("last-refreshed");
  var seconds = stamp && parseInt(stamp.getAttribute("data-refresh") || "0", 10);
  if (seconds > 0) {
    var left = seconds, out = document.createElement("span");
    stamp.appendChild(out);
    var tick = function () { out.textContent = " · next in " + left + " s"; left = Math.max(0, left - 1); };
    tick();
    window.setInterval(tick, 1000);
  }
})();

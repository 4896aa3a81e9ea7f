// Draws the site's ```mermaid blocks (<div class="diagram">) with mermaid.js (from the npm
// registry, copied into the site by scripts/docs_hooks.py),
// on the first load and after every instant navigation of the theme.
(function () {
  function draw() {
    if (typeof window.mermaid === "undefined") return;
    var dark = document.body.getAttribute("data-md-color-scheme") === "slate";
    window.mermaid.initialize({ startOnLoad: false, theme: dark ? "dark" : "default" });
    window.mermaid.run({ querySelector: "div.diagram:not([data-processed])" });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(draw);
  } else {
    document.addEventListener("DOMContentLoaded", draw);
  }
})();

// Draws every chart whose plotly.js figure is embedded in the page as JSON. The tables on the page hold
// the same numbers, so without JavaScript (or if this fails) the page still says everything.
(function () {
  "use strict";
  window.cifarBenchScriptAt = performance.now(); // plotly.js is parsed and run by now: the benchmark splits on it
  var drawn = [];
  document.querySelectorAll("script.chart-data").forEach(function (spec) {
    var target = document.getElementById(spec.dataset.target);
    if (!window.Plotly || !target) {
      return;
    }
    var figure = JSON.parse(spec.textContent);
    drawn.push(window.Plotly.newPlot(target, figure.data, figure.layout, {
      responsive: true,
      displaylogo: false,
    }));
  });
  // Marks the page once every chart is on screen: tests and the load-time benchmark wait for it.
  Promise.all(drawn).then(function () {
    document.body.setAttribute("data-charts", "drawn");
    window.cifarBenchDrawnAt = performance.now();
  });
})();

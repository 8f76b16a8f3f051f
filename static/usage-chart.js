// The usage page's daily chart (uPlot, vendored). Data comes from the element's data-chart
// attribute: no inline script under the strict CSP.
(function () {
  "use strict";
  var el = document.getElementById("usage-chart");
  if (!el || !window.uPlot || el.dataset.drawn) {
    return;
  }
  el.dataset.drawn = "1";
  var chart = JSON.parse(el.dataset.chart);
  var colors = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f"];
  var xs = chart.days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
  var series = [{}];
  var data = [xs];
  chart.series.forEach(function (s, i) {
    series.push({label: s.label, stroke: colors[i % colors.length], width: 2});
    data.push(s.values);
  });
  var width = Math.max(el.clientWidth || 0, 320);
  var span = [chart.start, chart.end];
  var scales = {x: {time: true, range: function () { return span; }}};
  // Kept on the element for the browser tests, which read the drawn scale.
  el.uplot = new window.uPlot({width: width, height: 280, series: series, axes: [{}, {}], scales: scales}, data, el);
})();

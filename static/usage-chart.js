// The usage page's daily charts (uPlot, vendored), one per feature on its own scale and unit.
// Counters (runs, hours, requests) are daily bars; levels (storage, pipelines running) a stepped
// line that holds between reports, with the quota as a dashed line. Data comes from the
// element's data-chart attribute: no inline script under the strict CSP.
(function () {
  "use strict";
  var el = document.getElementById("usage-chart");
  if (!el || !window.uPlot || el.dataset.drawn) {
    return;
  }
  el.dataset.drawn = "1";
  var chart = JSON.parse(el.dataset.chart);
  var colors = ["#1565c0", "#2e7d32", "#b45309", "#6a1b9a", "#c62828", "#00838f"];
  var xs = chart.days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
  var span = [chart.start, chart.end];
  // The same date format as the rest of the portal ("Dec 6, 2026"), not an ambiguous "12/6".
  var dayLabel = window.uPlot.fmtDate("{MMM} {D}, {YYYY}");
  var tickLabel = window.uPlot.fmtDate("{MMM} {D}");
  var utc = function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
  var charts = [];

  chart.series.forEach(function (s, i) {
    if (!s.values.some(function (v) { return v; })) {
      return; // a feature with nothing recorded gets no empty chart; the table above says 0
    }
    var figure = document.createElement("figure");
    figure.dataset.feature = s.key;
    var caption = document.createElement("figcaption");
    caption.textContent = s.label + (s.kind === "level" ? " (level, " + s.unit + ")" : " (per day, " + s.unit + ")");
    figure.appendChild(caption);
    el.appendChild(figure);

    var color = colors[i % colors.length];
    var level = s.kind === "level";
    var series = [
      {label: "Day", value: function (u, ts) { return ts == null ? "" : dayLabel(utc(ts)); }},
      {
        label: s.label,
        stroke: color,
        width: level ? 2 : 1,
        fill: level ? null : color + "55",
        paths: level ? window.uPlot.paths.stepped({align: 1}) : window.uPlot.paths.bars({size: [0.7, 40]}),
        points: {show: false},
        value: function (u, v) { return v == null ? "–" : v.toLocaleString() + " " + s.unit; }
      }
    ];
    var data = [xs, s.values];
    if (level && s.quota != null) {
      series.push({label: "Quota", stroke: "#c62828", dash: [6, 4], width: 1, points: {show: false}});
      data.push(xs.map(function () { return s.quota; }));
    }
    var width = Math.max(figure.clientWidth || 0, 200);
    var u = new window.uPlot({
      width: width,
      height: 200,
      tzDate: utc,
      series: series,
      axes: [
        {values: function (u, ticks) { return ticks.map(function (t) { return tickLabel(utc(t)); }); }},
        {size: 56}
      ],
      scales: {x: {time: true, range: function () { return span; }}, y: {range: function (u, min, max) { return [0, Math.max(max, level ? s.quota || 0 : 0, 1) * 1.1]; }}}
    }, data, figure);
    charts.push(u);
  });
  // Kept on the element for the browser tests, which read the drawn scale.
  el.uplot = charts[0];
  el.charts = charts;

  // Charts are drawn at the width they found; follow their box when it changes (a phone turned
  // sideways, a window resized), so a chart never sticks out of the page.
  if (window.ResizeObserver) {
    new window.ResizeObserver(function () {
      charts.forEach(function (u) {
        var width = Math.max(u.root.parentNode.clientWidth || 0, 200);
        if (Math.abs(width - u.width) > 1) {
          u.setSize({width: width, height: 200});
        }
      });
    }).observe(el);
  }
})();

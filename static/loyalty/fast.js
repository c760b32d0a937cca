// The FAST panel's two charts, from the figures the page embeds; every figure is also in a
// table below, so the page reads without JavaScript.
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }
  var data = JSON.parse(document.getElementById("fast-data").textContent);
  var base = { responsive: true, maintainAspectRatio: false, animation: false };  // fixed-height boxes
  new Chart(document.getElementById("fast-trend"), {
    type: "line",
    data: {
      labels: data.months,
      datasets: [
        { label: data.labels.reachable, data: data.reachable, borderColor: "#1e3a8a", backgroundColor: "#1e3a8a", yAxisID: "y" },
        { label: data.labels.super_users, data: data.super_users, borderColor: "#b45309", backgroundColor: "#b45309", yAxisID: "y" },
        { label: data.labels.share, data: data.share, borderColor: "#0f766e", backgroundColor: "#0f766e", borderDash: [6, 4], yAxisID: "share" }
      ]
    },
    options: Object.assign({}, base, {
      scales: {
        y: { beginAtZero: true, ticks: { precision: 0 } },
        share: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, ticks: { callback: function (v) { return v + "%"; } } }
      }
    })
  });
  new Chart(document.getElementById("fast-returning-chart"), {
    type: "bar",
    data: {
      labels: data.months,
      datasets: [
        { label: data.labels.first, data: data.first_revenue, backgroundColor: "#60a5fa" },
        { label: data.labels.repeat, data: data.repeat_revenue, backgroundColor: "#1e3a8a" }
      ]
    },
    options: Object.assign({}, base, {
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { callback: function (v) { return "¥" + v.toLocaleString(); } } } }
    })
  });
})();

// Draws the dashboard's two charts from the figures the page embeds (no request of its own).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  if (typeof Chart === "undefined") { return; }  // the tables still show every figure
  new Chart(document.getElementById("points-chart"), {
    type: "bar",
    data: {
      labels: data.months,
      datasets: [
        { label: data.labels.issued, data: data.issued, backgroundColor: "#417690" },
        { label: data.labels.redeemed, data: data.redeemed, backgroundColor: "#79aec8" },
        { label: data.labels.expired, data: data.expired, backgroundColor: "#c4b08a" }
      ]
    },
    options: { responsive: true, animation: false, scales: { y: { beginAtZero: true } } }
  });
  if (!document.getElementById("tier-chart")) { return; }  // nobody holds a tier: the page says so
  new Chart(document.getElementById("tier-chart"), {
    type: "doughnut",
    data: {
      labels: data.tiers,
      datasets: [{ data: data.tier_members, backgroundColor: ["#b0a999", "#9ea7ad", "#d4af37", "#6b8fb3", "#8a6bb3", "#5f9e6e"] }]
    },
    options: { responsive: true, animation: false }
  });
})();

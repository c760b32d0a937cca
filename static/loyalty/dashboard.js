// The dashboard's charts (from the figures the page embeds: no request of its own), the
// period picker's custom dates, and the drill-down dialog: a figure opens a small dialog
// to open its members in the member list or save them as a segment. Without JavaScript
// the tables show every figure and each link opens the member list directly.
(function () {
  "use strict";

  // --- the period picker: the custom dates only for "Custom" ---
  var period = document.getElementById("id_period");
  var custom = document.getElementById("dash-custom");
  function showCustom() {
    if (period.value === "custom") { custom.removeAttribute("data-hidden"); } else { custom.setAttribute("data-hidden", "1"); }
  }
  if (period && custom) { period.addEventListener("change", showCustom); showCustom(); }

  // --- the drill-down dialog ---
  var dialog = document.getElementById("drill-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    document.querySelectorAll(".lc-dash a[data-rules]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        if (event.ctrlKey || event.metaKey || event.shiftKey) { return; }  // a new tab: the list itself
        event.preventDefault();
        document.getElementById("drill-title").textContent = link.dataset.label;
        document.getElementById("drill-count").textContent = dialog.dataset.countText.replace("__N__", link.dataset.count);
        document.getElementById("drill-open").href = link.href;
        var rules = document.getElementById("drill-rules");
        if (rules) {
          rules.value = link.dataset.rules;
          document.getElementById("drill-name").value = link.dataset.label;
        }
        dialog.showModal();
        document.getElementById("drill-open").focus();
      });
    });
  }

  if (typeof Chart === "undefined") { return; }  // the tables still show every figure
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var lifecycle = JSON.parse(document.getElementById("lifecycle-data").textContent);
  // Fixed-height boxes (dashboard.css): the charts fill them instead of keeping a ratio.
  var base = { responsive: true, maintainAspectRatio: false, animation: false };
  function options(extra) { return Object.assign({}, base, extra); }
  var colours = ["#1e3a8a", "#2563eb", "#0f766e", "#b45309", "#b91c1c"];

  if (document.getElementById("points-chart")) {
    new Chart(document.getElementById("points-chart"), {
      type: "bar",
      data: {
        labels: data.months,
        datasets: [
          { label: data.labels.issued, data: data.issued, backgroundColor: "#1e3a8a" },
          { label: data.labels.redeemed, data: data.redeemed, backgroundColor: "#60a5fa" },
          { label: data.labels.expired, data: data.expired, backgroundColor: "#b45309" }
        ]
      },
      options: options({ scales: { y: { beginAtZero: true } } })
    });
  }
  if (document.getElementById("tier-chart")) {
    new Chart(document.getElementById("tier-chart"), {
      type: "doughnut",
      data: {
        labels: data.tiers,
        datasets: [{ data: data.tier_members, backgroundColor: ["#94a3b8", "#64748b", "#b45309", "#1e3a8a", "#6d28d9", "#0f766e"] }]
      },
      options: options({})
    });
  }
  if (document.getElementById("funnel-chart")) {
    new Chart(document.getElementById("funnel-chart"), {
      type: "bar",
      data: { labels: lifecycle.stages, datasets: [{ label: lifecycle.labels.members, data: lifecycle.stage_members, backgroundColor: colours }] },
      options: options({ indexAxis: "y", plugins: { legend: { display: false } } })
    });
  }
  if (document.getElementById("moves-chart")) {  // no moves: the page says so instead of an empty axis
    new Chart(document.getElementById("moves-chart"), {
      type: "bar",
      data: {
        labels: lifecycle.move_days,
        datasets: lifecycle.moves_into.map(function (set, i) { return { label: set.label, data: set.data, backgroundColor: colours[i] }; })
      },
      options: options({ scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } })
    });
  }
})();

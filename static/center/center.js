// Member center: the one bit of script. A button marked data-once is disabled after its
// form is submitted, so an impatient second tap does not send the form again (the server
// would redeem once anyway: the form carries an idempotency key).
document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("button[data-once]");
  if (button) {
    window.setTimeout(function () { button.disabled = true; }, 0);
  }
});

// "Send a new code" waits out the resend interval: a button with data-countdown="N" counts
// down once a second and becomes usable at zero (the server refuses an earlier resend anyway).
document.querySelectorAll("button[data-countdown]").forEach(function (button) {
  var left = parseInt(button.getAttribute("data-countdown"), 10) || 0;
  var label = button.querySelector(".countdown");
  var tick = window.setInterval(function () {
    left -= 1;
    if (left <= 0) {
      window.clearInterval(tick);
      button.disabled = false;
      if (label) { label.remove(); }
    } else if (label) {
      label.textContent = label.textContent.replace(/\d+/, String(left));
    }
  }, 1000);
});

// The member code (/me/card/): a fresh code from the server when the current one's time
// step ends, without reloading the page; when no fresh code arrives (offline) the code is
// greyed out once it expires, because the till would refuse it.
document.querySelectorAll("[data-member-code]").forEach(function (panel) {
  var url = panel.getAttribute("data-url");
  var expiresAt = Date.parse(panel.getAttribute("data-expires-at"));
  var timer = null;
  function slot(name) { return panel.querySelector('[data-slot="' + name + '"]'); }
  function markStale(stale) {
    panel.classList.toggle("member-code--stale", stale);
    slot("fresh").hidden = stale;
    slot("stale").hidden = !stale;
  }
  function schedule(seconds) {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, Math.max(1, seconds) * 1000);
  }
  function refresh() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) {
        slot("qr").innerHTML = data.qr;
        slot("barcode").innerHTML = data.barcode;
        slot("grouped").textContent = data.grouped;
        panel.setAttribute("data-code", data.code);
        expiresAt = Date.parse(data.expires_at);
        markStale(false);
        schedule(data.refresh_in);
      })
      .catch(function () { schedule(10); });
  }
  window.setInterval(function () { if (Date.now() > expiresAt) { markStale(true); } }, 1000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); }
  });
  schedule(parseInt(panel.getAttribute("data-refresh-in"), 10) || 30);
});

// "Show full screen": the element named by data-fullscreen fills the screen (Fullscreen
// API), drawn black on white for the scanner; the button shows only where the browser can.
document.querySelectorAll("button[data-fullscreen]").forEach(function (button) {
  var target = document.querySelector(button.getAttribute("data-fullscreen"));
  var request = target && (target.requestFullscreen || target.webkitRequestFullscreen);
  if (!request) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var active = document.fullscreenElement || document.webkitFullscreenElement;
    if (active) {
      (document.exitFullscreen || document.webkitExitFullscreen).call(document);
    } else {
      var asked = request.call(target, { navigationUI: "hide" });
      if (asked && asked.catch) { asked.catch(function () { target.classList.add("is-fullscreen"); }); }
    }
  });
});

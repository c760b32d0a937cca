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

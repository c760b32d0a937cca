// Member center: the one bit of script. A button marked data-once is disabled after its
// form is submitted, so an impatient second tap does not send the form again (the server
// would redeem once anyway: the form carries an idempotency key).
document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("button[data-once]");
  if (button) {
    window.setTimeout(function () { button.disabled = true; }, 0);
  }
});

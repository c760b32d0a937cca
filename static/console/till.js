/* The till's keyboard flow (templates/admin/loyalty/till.html, docs/till.md).
 *
 * - The focus lands where the clerk works next: the field a refusal is about, the lookup
 *   box after an action (the next customer), else the order number (data-focus on #till).
 * - Enter moves to the next field of the order form and sends it from the last one.
 * - Esc closes the confirmation (cancel); elsewhere it clears the form being filled and
 *   goes back to the lookup box.
 * - Alt+L look up, Alt+O order, Alt+R refund, Alt+C coupons.
 * - Forms with data-confirm ask in a dialog in the page (not window.confirm): Enter
 *   confirms, Esc cancels. Without this script every form still works, unconfirmed.
 */
(function () {
  "use strict";
  var till = document.getElementById("till");
  if (!till) return;
  var lookup = document.getElementById("till-q");
  var dialog = document.getElementById("till-confirm");
  var money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function yuan(value) { return "¥" + money.format(value); }
  function number(text) {
    var clean = String(text || "").replace(/[¥,\s]/g, "");
    return /^\d+(\.\d+)?$/.test(clean) ? parseFloat(clean) : NaN;
  }
  function land(element) {
    if (!element) return false;
    element.focus();
    if (element.select && element.type === "text") element.select();
    return document.activeElement === element;
  }
  function byId(id) { return id ? document.getElementById(id) : null; }

  // --- where the focus lands ---
  // The admin's page is hidden (x-cloak) until its Alpine script has started, and a hidden
  // field takes no focus: try again on each frame for a moment.
  function landFirst() {
    var target = till.dataset.focus || "";
    var landed = false;
    if (target.indexOf("refund:") === 0) {
      var wanted = target.slice(7);
      document.querySelectorAll("#till-refunds li[data-order]").forEach(function (row) {
        if (!landed && row.dataset.order === wanted) landed = land(row.querySelector("input[name=refund_amount]"));
      });
    } else {
      landed = land(byId(target));
    }
    return landed || land(byId("till-number")) || land(lookup);
  }
  var tries = 0;
  (function attempt() {
    if (document.activeElement && document.activeElement !== document.body) {
      if (tries > 0) return; // the clerk is already typing somewhere
    }
    if (!landFirst() && tries++ < 120) window.requestAnimationFrame(attempt);
  })();

  // --- Enter: the next field, then send ---
  document.querySelectorAll("form[data-enter-next]").forEach(function (form) {
    form.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || event.isComposing || event.target.tagName !== "INPUT") return;
      var fields = Array.prototype.filter.call(form.querySelectorAll("input[type=text]"), function (f) { return !f.disabled; });
      var at = fields.indexOf(event.target);
      if (at >= 0 && at < fields.length - 1) {
        event.preventDefault();
        land(fields[at + 1]);
      }
    });
  });

  // --- the confirmation dialog ---
  var pending = null; // {form, back}: the form waiting for the answer, the element to focus on cancel
  function ask(form) {
    var text = form.dataset.confirm || "";
    if (text.indexOf("__amount__") >= 0) {
      var typed = form.querySelector("input[name=refund_amount]");
      var value = typed && typed.value.trim() ? number(typed.value) : number(form.dataset.left);
      text = text.replace("__amount__", isNaN(value) ? (typed ? typed.value.trim() : "") : yuan(value));
    }
    document.getElementById("till-confirm-title").textContent = form.dataset.confirmTitle || "";
    document.getElementById("till-confirm-text").textContent = text;
    var ok = document.getElementById("till-confirm-ok");
    ok.textContent = form.dataset.confirmOk || ok.textContent;
    pending = { form: form, back: document.activeElement };
    dialog.returnValue = "";
    dialog.showModal();
    ok.focus();
  }
  function send(form) {
    form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    form.submit();
  }
  if (dialog && typeof dialog.showModal === "function") {
    dialog.addEventListener("close", function () {
      var asked = pending;
      pending = null;
      if (!asked) return;
      if (dialog.returnValue === "ok") send(asked.form);
      else land(asked.back);
    });
  }
  document.querySelectorAll("#till form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.confirm && dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        if (!pending) ask(form);
        return;
      }
      // A second click or Enter while the first is on its way sends nothing more.
      window.setTimeout(function () {
        form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
      }, 0);
    });
  });

  // --- Esc and the shortcuts ---
  function first(selector) { return document.querySelector(selector); }
  document.addEventListener("keydown", function (event) {
    if (dialog && dialog.open) return; // the dialog's own Esc (cancel) and Enter (confirm)
    if (event.key === "Escape") {
      var form = event.target.form;
      if (event.target === lookup) {
        if (lookup.value) { lookup.value = ""; event.preventDefault(); }
        return;
      }
      if (form) {
        form.querySelectorAll("input[type=text]").forEach(function (field) { field.value = ""; });
        updateHint();
      }
      event.preventDefault();
      land(lookup);
      return;
    }
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    var where = {
      KeyL: function () { return lookup; },
      KeyO: function () { return byId("till-number"); },
      KeyR: function () { return first("#till-refunds input[name=refund_amount]"); },
      KeyC: function () { return byId("till-verify-found") || first("#till-coupons button"); },
    }[event.code];
    if (where && land(where())) event.preventDefault();
  });

  // --- points payment: what the points may pay on this order, live ---
  var amount = byId("till-amount");
  var points = byId("till-points-pay");
  var hint = byId("till-points-hint");
  var pointValue = parseFloat(till.dataset.pointValue || "0");
  var share = parseFloat(till.dataset.maxShare || "0");
  var initial = hint ? hint.textContent : "";
  function updateHint() {
    if (!amount || !points || !hint || !pointValue) return;
    var total = number(amount.value);
    if (isNaN(total)) { hint.textContent = initial; return; }
    var due = total - Math.floor(total * parseFloat(points.dataset.discount || "0")) / 100;
    var most = Math.max(0, Math.min(parseInt(points.dataset.balance || "0", 10), Math.floor((due * share) / pointValue + 1e-9)));
    var used = number(points.value);
    if (!isNaN(used) && used > 0) {
      var value = Math.floor(used * pointValue * 100 + 1e-9) / 100;
      hint.textContent = hint.dataset.paid.replace("__points__", whole.format(used))
        .replace("__value__", yuan(value)).replace("__rest__", yuan(Math.max(due - value, 0)));
      if (used > most) hint.textContent += " " + hint.dataset.template.replace("__points__", whole.format(most)).replace("__value__", yuan(Math.floor(most * pointValue * 100 + 1e-9) / 100));
      return;
    }
    hint.textContent = hint.dataset.template.replace("__points__", whole.format(most))
      .replace("__value__", yuan(Math.floor(most * pointValue * 100 + 1e-9) / 100));
  }
  if (amount && points) {
    amount.addEventListener("input", updateHint);
    points.addEventListener("input", updateHint);
    updateHint();
  }
})();

/*
 * The journey's steps as a flow the operator edits without numbers or JSON
 * (docs/journeys.md, "The flow editor"). Vanilla JS, no build step.
 *
 * It works on the admin's own inline formset of steps (prefix "steps"): every card is one
 * form of that formset, every button writes the same inputs the plain form has (position,
 * kind, the fields of the kind, DELETE), and the server's validation stays the authority:
 * a list it refuses comes back with its message and nothing saved.
 *
 * - Add a step: "do", "wait" or "branch" buttons add a form at the end, of that kind.
 * - Reorder: up and down move a card; the step numbers follow the order of the cards
 *   (cards in a row with different variant letters, A, B ..., are one A/B step), and a
 *   branch's "otherwise go to step" follows the step it pointed at.
 * - Remove: a saved step is marked for deletion (undo on the card); a new one goes away.
 * - Each card shows only the fields of its kind (and action, and condition), a one-line
 *   summary, and for a branch a choice of the later steps instead of a number.
 * - The map above the cards: the steps in order, with each branch's "otherwise" jump.
 */
(function () {
  "use strict";

  var PREFIX = "steps";
  var ACTION_FIELDS = {
    award_points: ["points"],
    issue_coupon: ["coupon_title", "coupon_kind", "coupon_value", "coupon_valid_days"],
    add_tag: ["tag"],
    notify: [],
  };
  var ALL_ACTION_FIELDS = ["points", "coupon_title", "coupon_kind", "coupon_value", "coupon_valid_days", "tag"];
  var texts = {};

  function t(key, values) {
    var text = texts[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(values[name]);
    });
    return text;
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(className, label, title) {
    var node = make("button", "flow-button " + className, label);
    node.type = "button";
    if (title) {
      node.title = title;
      node.setAttribute("aria-label", title);
    }
    return node;
  }

  // --- one card: one form of the formset ----------------------------------------------

  function prefixOf(row) {
    var position = row.querySelector("input[name$='-position']");
    return position ? position.name.replace(/-position$/, "") : null;
  }

  function input(row, name) {
    return row.querySelector("[name='" + row.dataset.flowPrefix + "-" + name + "']");
  }

  function value(row, name) {
    var field = input(row, name);
    return field ? String(field.value || "").trim() : "";
  }

  function label(row, name) {
    var field = input(row, name);
    if (!field || field.tagName !== "SELECT" || field.selectedIndex < 0 || !field.value) return "";
    return field.options[field.selectedIndex].text.trim();
  }

  function line(row, name) {
    // Unfold's markup: one "field-line field-<name>" per field; plain Django: "form-row field-<name>".
    return row.querySelector(".field-line.field-" + name) || row.querySelector(".form-row.field-" + name);
  }

  function show(node, visible) {
    if (node) node.classList.toggle("flow-hidden", !visible);
  }

  function isDeleted(row) {
    var box = row.querySelector("input[name$='-DELETE']");
    return Boolean(box && box.checked);
  }

  function isSaved(row) {
    var id = row.querySelector("input[name$='-id']");
    return Boolean(id && id.value);
  }

  function liveRows(formset) {
    return Array.prototype.filter.call(
      formset.querySelectorAll(":scope > .form-group:not(.empty-form), :scope > .inline-related:not(.empty-form)"),
      function (row) {
        return row.dataset.flowPrefix;
      }
    );
  }

  function applyKind(row) {
    var kind = value(row, "kind") || "action";
    var fieldsets = row.querySelectorAll("fieldset.module");
    // The inline's fieldsets, in admin_journeys.JourneyStepInline's order: common, do, wait, branch.
    show(fieldsets[1], kind === "action");
    show(fieldsets[2], kind === "wait");
    show(fieldsets[3], kind === "branch");
    var action = value(row, "action");
    var wanted = ACTION_FIELDS[action] || [];
    ALL_ACTION_FIELDS.forEach(function (name) {
      show(line(row, name), !action || wanted.indexOf(name) >= 0 || rowHasError(line(row, name)));
    });
    var condition = value(row, "condition");
    show(line(row, "segment"), condition === "in_segment" || rowHasError(line(row, "segment")));
    show(line(row, "channel"), condition === "consent" || rowHasError(line(row, "channel")));
    row.dataset.flowKind = kind;
  }

  function rowHasError(node) {
    return Boolean(node && node.querySelector(".errorlist, .errors, [class*='text-red-600'] li"));
  }

  function summary(row) {
    var kind = value(row, "kind") || "action";
    if (kind === "wait") {
      var days = value(row, "wait_days") || "?";
      return value(row, "wait_until") === "order" ? t("wait_order", { days: days }) : t("wait_days", { days: days });
    }
    if (kind === "branch") {
      var condition = label(row, "condition") || t("no_condition");
      if (value(row, "condition") === "in_segment" && label(row, "segment")) {
        condition += " “" + label(row, "segment") + "”";
      }
      if (value(row, "condition") === "consent" && label(row, "channel")) {
        condition += " (" + label(row, "channel") + ")";
      }
      var other = value(row, "else_step");
      return t("branch", { condition: condition }) + " " + (other ? t("else_step", { step: other }) : t("else_end"));
    }
    var action = label(row, "action") || t("no_action");
    var what = "";
    if (value(row, "action") === "award_points" && value(row, "points")) what = t("points", { points: value(row, "points") });
    if (value(row, "action") === "issue_coupon") what = value(row, "coupon_title");
    if (value(row, "action") === "add_tag") what = label(row, "tag");
    if (value(row, "action") === "notify") what = value(row, "message_title");
    return what ? action + ": " + what : action;
  }

  function enhance(row, formset, editor) {
    var prefix = prefixOf(row);
    if (!prefix || row.dataset.flowPrefix) return;
    row.dataset.flowPrefix = prefix;
    row.classList.add("flow-step");

    var head = make("div", "flow-head");
    var number = make("span", "flow-number");
    var title = make("span", "flow-summary");
    var tools = make("span", "flow-tools");
    var up = button("flow-up", "↑", t("up"));
    var down = button("flow-down", "↓", t("down"));
    var remove = button("flow-remove", "✕", t("remove"));
    tools.append(up, down, remove);
    head.append(number, title, tools);
    row.insertBefore(head, row.firstChild);

    // Unfold's own title bar (with its delete control) and the step number give way to the head.
    var own = row.querySelector(":scope > .form-row > h3, :scope > h3");
    if (own) own.classList.add("flow-hidden");
    show(line(row, "position"), false);

    // A branch's "otherwise" as a choice of the later steps; the number input stays the form's.
    var other = input(row, "else_step");
    if (other) {
      var choice = make("select", "flow-else");
      choice.setAttribute("aria-label", t("else_label"));
      other.classList.add("flow-hidden");
      other.parentNode.insertBefore(choice, other);
      choice.addEventListener("change", function () {
        other.value = choice.value;
        editor.refresh();
      });
      row.flowElse = choice;
    }

    up.addEventListener("click", function () {
      editor.move(row, -1);
    });
    down.addEventListener("click", function () {
      editor.move(row, 1);
    });
    remove.addEventListener("click", function () {
      editor.remove(row);
    });
    var box = row.querySelector("input[name$='-DELETE']");
    if (box) box.addEventListener("change", editor.refresh);
    row.addEventListener("change", function (event) {
      if (event.target === row.flowElse) return;
      applyKind(row);
      editor.refresh();
    });
    row.addEventListener("input", function () {
      title.textContent = summary(row);
    });
    row.flowNumber = number;
    row.flowTitle = title;
    if (row.querySelector(".errorlist, .errors")) row.classList.add("flow-error");
    applyKind(row);
  }

  // --- the editor: numbering, moving, adding, removing ------------------------------------

  function Editor(group, formset) {
    this.group = group;
    this.formset = formset;
    var self = this;
    this.refresh = function () {
      self.renumber();
    };
  }

  Editor.prototype.rows = function () {
    return liveRows(this.formset);
  };

  Editor.prototype.renumber = function () {
    var rows = this.rows().filter(function (row) {
      return !isDeleted(row);
    });
    var map = {};
    var number = 0;
    var letters = null;
    rows.forEach(function (row) {
      var variant = value(row, "variant").toUpperCase();
      var old = parseInt(value(row, "position"), 10);
      // Cards in a row with variant letters, each letter once, are one A/B step.
      if (variant && letters && letters.indexOf(variant) < 0) {
        letters.push(variant);
      } else {
        number += 1;
        letters = variant ? [variant] : null;
      }
      if (!isNaN(old) && !(old in map)) map[old] = number;
      row.dataset.flowNumber = String(number);
    });
    var total = number;
    rows.forEach(function (row) {
      var position = input(row, "position");
      position.value = row.dataset.flowNumber;
      var other = input(row, "else_step");
      if (other && other.value) {
        // The jump follows the step it pointed at (its number before this renumbering).
        var target = parseInt(other.value, 10);
        if (target in map) other.value = String(map[target]);
      }
    });
    rows.forEach(function (row) {
      row.flowNumber.textContent = t("step", { step: row.dataset.flowNumber + value(row, "variant").toUpperCase() });
      row.flowTitle.textContent = summary(row);
      if (row.flowElse) fillElse(row, total);
    });
    this.rows().forEach(function (row) {
      row.classList.toggle("flow-deleted", isDeleted(row));
    });
    this.drawMap(rows);
  };

  function fillElse(row, total) {
    var choice = row.flowElse;
    var current = value(row, "else_step");
    var here = parseInt(row.dataset.flowNumber, 10);
    choice.textContent = "";
    choice.append(new Option(t("else_end_option"), ""));
    var seen = false;
    for (var step = here + 1; step <= total; step += 1) {
      choice.append(new Option(t("else_option", { step: step }), String(step)));
      if (String(step) === current) seen = true;
    }
    if (current && !seen) {
      // A jump the server will refuse (backwards, or to a step that is gone): shown as it is.
      choice.append(new Option(t("else_invalid", { step: current }), current));
    }
    choice.value = current;
  }

  Editor.prototype.drawMap = function (rows) {
    var map = this.map;
    map.textContent = "";
    if (!rows.length) {
      map.append(make("li", "flow-map-empty", t("empty")));
      return;
    }
    rows.forEach(function (row) {
      var item = make("li", "flow-map-step flow-map-" + (row.dataset.flowKind || "action"));
      var variant = value(row, "variant").toUpperCase();
      item.append(make("span", "flow-map-number", row.dataset.flowNumber + variant));
      item.append(make("span", "flow-map-text", summary(row)));
      map.append(item);
    });
  };

  Editor.prototype.move = function (row, direction) {
    var rows = this.rows().filter(function (other) {
      return !isDeleted(other) || other === row;
    });
    var index = rows.indexOf(row);
    var neighbour = rows[index + direction];
    if (!neighbour) return;
    if (direction < 0) {
      this.formset.insertBefore(row, neighbour);
    } else {
      this.formset.insertBefore(row, neighbour.nextSibling);
    }
    this.renumber();
    row.querySelector(".flow-" + (direction < 0 ? "up" : "down")).focus();
  };

  Editor.prototype.remove = function (row) {
    if (isSaved(row)) {
      var box = row.querySelector("input[name$='-DELETE']");
      if (box) {
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else {
      // A form never saved: gone from the page; the formset skips an index with no data.
      row.remove();
    }
    this.renumber();
  };

  Editor.prototype.add = function (kind) {
    var adder = this.group.querySelector(".add-row a, a.add-row, .add-row");
    if (!adder) return;
    var before = this.rows().length;
    adder.click(); // the admin's own "add another": a new form from the empty template
    var rows = Array.prototype.filter.call(
      this.formset.querySelectorAll(":scope > .form-group:not(.empty-form), :scope > .inline-related:not(.empty-form)"),
      function (row) {
        return !row.dataset.flowPrefix;
      }
    );
    var row = rows[rows.length - 1];
    if (!row) return;
    enhance(row, this.formset, this);
    var kindInput = input(row, "kind");
    if (kindInput) kindInput.value = kind;
    applyKind(row);
    input(row, "position").value = "";
    this.renumber();
    if (this.rows().length > before) {
      row.classList.add("flow-new");
      row.scrollIntoView({ block: "nearest" });
      var first = row.querySelector(
        kind === "wait" ? "[name$='-wait_days']" : kind === "branch" ? "[name$='-condition']" : "[name$='-action']"
      );
      if (first) first.focus();
    }
  };

  function init() {
    var group = document.getElementById(PREFIX + "-group");
    var source = document.getElementById("journey-flow-texts");
    if (!group || !source || group.dataset.flow) return;
    texts = JSON.parse(source.textContent);
    var formset = group.querySelector(".formset") || group.querySelector("fieldset.module");
    if (!formset) return;
    group.dataset.flow = "on";
    group.classList.add("flow-editor");
    var editor = new Editor(group, formset);

    var intro = make("div", "flow-intro");
    intro.append(make("p", "flow-help", t("help")));
    var map = make("ol", "flow-map");
    map.setAttribute("aria-label", t("map"));
    editor.map = map;
    var toolbar = make("div", "flow-toolbar");
    toolbar.append(make("span", "flow-toolbar-label", t("add")));
    [
      ["action", t("add_action")],
      ["wait", t("add_wait")],
      ["branch", t("add_branch")],
    ].forEach(function (pair) {
      var add = button("flow-add flow-add-" + pair[0], pair[1]);
      add.dataset.kind = pair[0];
      add.addEventListener("click", function () {
        editor.add(pair[0]);
      });
      toolbar.append(add);
    });
    intro.append(map, toolbar);
    var wrapper = group.querySelector(".formset-wrapper") || formset;
    wrapper.parentNode.insertBefore(intro, wrapper);

    liveRowsAll(formset).forEach(function (row) {
      enhance(row, formset, editor);
    });
    // The step list as saved, in the order of its numbers (a page that came back with
    // errors shows the cards as they were posted).
    var rows = editor.rows();
    rows
      .slice()
      .sort(function (a, b) {
        return (parseInt(value(a, "position"), 10) || 1e9) - (parseInt(value(b, "position"), 10) || 1e9);
      })
      .forEach(function (row) {
        formset.insertBefore(row, formset.querySelector(":scope > .empty-form, :scope > .form-actions"));
      });
    editor.renumber();
  }

  function liveRowsAll(formset) {
    return Array.prototype.slice.call(
      formset.querySelectorAll(":scope > .form-group:not(.empty-form), :scope > .inline-related:not(.empty-form)")
    );
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

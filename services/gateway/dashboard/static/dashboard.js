// Small progressive enhancements; every page also works without JavaScript.
(function () {
  "use strict";
  // The application switcher opens the chosen application at once.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { if (select.value) select.form.submit(); });
  });
  // Destructive forms ask first; data-confirm-if-changed limits that to a changed input.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var only = form.dataset.confirmIfChanged;
      if (only) {
        var input = form.elements[only];
        if (!input || input.value === input.dataset.initial) return;
      }
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  // Copy buttons next to secrets and snippets: the clipboard API where the page may use it,
  // else the selection with execCommand("copy"), else the text stays selected for Ctrl+C.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      if (!source) return;
      var text = source.textContent;
      var say = function (label) {
        button.textContent = label;
        button.dataset.copied = label === "Copied" ? "yes" : "no";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      };
      var bySelection = function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        say(ok ? "Copied" : "Press Ctrl+C");
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { say("Copied"); }, bySelection);
      } else {
        bySelection();
      }
    });
  });
  // Pages with work in progress refresh themselves.
  var every = Number(document.body.dataset.refresh || 0);
  if (every > 0) setTimeout(function () { window.location.reload(); }, every * 1000);
})();

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
  // Copy buttons next to secrets and snippets.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {  // plain-http installs: select the text so Ctrl+C copies it
        var range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
    });
  });
  // Pages with work in progress refresh themselves.
  var every = Number(document.body.dataset.refresh || 0);
  if (every > 0) setTimeout(function () { window.location.reload(); }, every * 1000);
})();

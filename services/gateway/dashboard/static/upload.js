// CSV upload with a progress bar: the same POST the form makes, sent by XMLHttpRequest so the
// browser reports how much of the file has gone. Without JavaScript the form posts as usual.
(function () {
  "use strict";
  if (!window.XMLHttpRequest || !window.FormData) return;
  // Delegated: a refusal swaps in a new form (with the error), which must work the same way.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "upload-form" || !form.elements.file.files.length) return;  // the server says what is missing
    event.preventDefault();
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("upload-progress-text");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    bar.hidden = false;
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.floor(e.loaded * 100 / e.total);
      bar.firstElementChild.className = "w" + (Math.floor(pct / 5) * 5);
      text.textContent = pct < 100 ? "Sending… " + pct + "%" : "Checking the file…";
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 200 && xhr.responseURL && xhr.responseURL !== form.action) {
        window.location.assign(xhr.responseURL);  // the server redirected to the upload's page
        return;
      }
      // A refusal comes back as the page with the error next to the field: show its content.
      var main = new DOMParser().parseFromString(xhr.responseText, "text/html").querySelector("main");
      if (main) document.querySelector("main").replaceWith(main);
      else text.textContent = "The upload failed (" + xhr.status + ").";
    });
    xhr.addEventListener("error", function () { text.textContent = "The upload failed: the connection broke."; });
    xhr.send(new FormData(form));
  });
})();

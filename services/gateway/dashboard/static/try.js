// Try it: calls the public search API (GET /search, POST /uploadsearch) with the app key and
// shows results with scores, metadata and facets. Everything is drawn with textContent.
(function () {
  "use strict";
  var form = document.getElementById("try-form");
  if (!form) return;
  var api = form.dataset.api || "";
  var statusLine = document.getElementById("try-status");
  var results = document.getElementById("try-results");
  var facetsOut = document.getElementById("try-facets-out");
  var imageInput = document.getElementById("try-image");
  var preview = document.getElementById("try-preview");
  var UNAVAILABLE = "The search API is not available on this server yet.";

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function say(text, bad) { statusLine.textContent = text; statusLine.className = bad ? "notice bad" : "notice"; }
  function mode(value) { var r = form.querySelector("input[name=mode][value=" + value + "]"); if (r && !r.disabled) r.checked = true; }

  imageInput.addEventListener("change", function () {
    var file = imageInput.files[0];
    if (!file) return;
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    mode("upload");
  });
  document.getElementById("try-im-name").addEventListener("input", function () { mode("similar"); });

  function params() {
    var p = [["access_key", form.dataset.appKey], ["score", "true"], ["get_all_fl", "true"],
             ["limit", form.elements.limit.value], ["page", "1"]];
    form.querySelectorAll("[data-fq]").forEach(function (input) {
      if (input.value.trim()) p.push(["fq", input.dataset.fq + ":" + input.value.trim()]);
    });
    if (document.getElementById("try-facets").checked && form.dataset.facets) {
      p.push(["facets", form.dataset.facets], ["facets_show_count", "true"]);
    }
    return p;
  }

  function showFacets(facets) {
    facetsOut.replaceChildren();
    (facets || []).forEach(function (f) {
      var box = el("section", null, "facet");
      box.appendChild(el("h3", f.key));
      var input = form.querySelector("[data-fq='" + CSS.escape(f.key) + "']");
      if (f.range) {
        var b = el("button", f.range.min + " – " + f.range.max, "link");
        b.type = "button";
        b.addEventListener("click", function () { if (input) { input.value = f.range.min + "," + f.range.max; form.requestSubmit(); } });
        box.appendChild(b);
      }
      var list = el("ul");
      (f.items || []).forEach(function (item) {
        var li = el("li");
        var b = el("button", item.value + (item.count !== undefined ? " (" + item.count + ")" : ""), "link");
        b.type = "button";
        b.addEventListener("click", function () {
          if (!input) return;
          var v = String(item.value);
          input.value = /[\s":,]/.test(v) ? '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"' : v;
          form.requestSubmit();
        });
        li.appendChild(b);
        list.appendChild(li);
      });
      box.appendChild(list);
      facetsOut.appendChild(box);
    });
  }

  function showResults(items) {
    results.replaceChildren();
    items.forEach(function (r) {
      var li = el("li", null, "item result");
      li.dataset.imName = r.im_name;
      var img = el("img", null, "thumb");
      img.alt = r.im_name;
      img.loading = "lazy";
      img.src = form.dataset.thumb + encodeURIComponent(r.im_name);
      li.appendChild(img);
      li.appendChild(el("p", r.im_name, "name"));
      if (typeof r.score === "number") li.appendChild(el("p", "score " + r.score.toFixed(4), "score"));
      var meta = el("dl", null, "meta");
      Object.keys(r.value_map || {}).forEach(function (k) { meta.appendChild(el("dt", k)); meta.appendChild(el("dd", r.value_map[k])); });
      li.appendChild(meta);
      var again = el("button", "Find similar", "small");
      again.type = "button";
      again.disabled = !form.dataset.search;
      again.addEventListener("click", function () {
        document.getElementById("try-im-name").value = r.im_name;
        mode("similar");
        form.requestSubmit();
      });
      li.appendChild(again);
      results.appendChild(li);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var chosen = form.querySelector("input[name=mode]:checked");
    var p = params(), request;
    if (chosen && chosen.value === "upload") {
      var file = imageInput.files[0];
      if (!file) { say("Choose an image file first.", true); return; }
      var body = new FormData();
      p.forEach(function (kv) { body.append(kv[0], kv[1]); });
      body.append("image", file);
      request = fetch(api + "/uploadsearch", { method: "POST", body: body, credentials: "omit" });
    } else {
      var name = document.getElementById("try-im-name").value.trim();
      if (!name) { say("Type an im_name from the catalog first.", true); return; }
      p.push(["im_name", name]);
      request = fetch(api + "/search?" + new URLSearchParams(p).toString(), { credentials: "omit" });
    }
    say("Searching…");
    request.then(function (resp) {
      // Legacy routes answer 200 even on errors; a 404/405 means the route itself is missing.
      if (resp.status === 404 || resp.status === 405) { say(UNAVAILABLE, true); return null; }
      return resp.json();
    }).then(function (body) {
      if (!body) return;
      if (body.status === "fail") { say((body.error || ["Search failed."]).join("; "), true); showResults([]); showFacets([]); return; }
      var n = body.total || 0;
      say(n + (n === 1 ? " result" : " results") + (body.reqid ? " · reqid " + body.reqid : "") +
          (body.status === "warning" ? " · " + (body.error || []).join("; ") : ""));
      showResults(body.result || []);
      showFacets(body.facets);
    }).catch(function (err) { say("The search request failed: " + err.message, true); });
  });

  if (document.getElementById("try-im-name").value && form.dataset.search && form.dataset.appKey) form.requestSubmit();
})();

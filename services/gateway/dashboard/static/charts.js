// Draws the report charts with Plotly from the JSON the page embeds (#chart-data).
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || !window.Plotly) return;
  var d = JSON.parse(source.textContent);
  var config = { displaylogo: false, responsive: true };
  function layout(title, extra) {
    return Object.assign({ title: { text: title, font: { size: 14 } }, height: 300,
      margin: { t: 40, r: 10, b: 50, l: 50 }, legend: { orientation: "h" } }, extra || {});
  }
  function draw(id, traces, extra) {
    var div = document.getElementById(id);
    if (div) window.Plotly.newPlot(div, traces, layout(div.dataset.title, extra), config);
  }
  function pct(v) { return v === null ? null : Math.round(v * 10000) / 100; }
  function line(name, y) { return { x: d.days, y: y, name: name, type: "scatter", mode: "lines+markers", connectgaps: false }; }
  function bar(name, y) { return { x: d.days, y: y, name: name, type: "bar" }; }

  if (d.rates) {
    draw("chart-rates", [line("CTR", d.rates.ctr.map(pct)), line("Add-to-cart rate", d.rates.add_to_cart_rate.map(pct)),
      line("Conversion rate", d.rates.conversion_rate.map(pct))], { yaxis: { ticksuffix: "%", rangemode: "tozero" } });
    draw("chart-click-rank", [line("Average clicked position", d.click_rank)],
      { yaxis: { autorange: "reversed", title: { text: "position (1 = top)" } } });
    var v = d.volume;
    draw("chart-volume", [bar("Searches", v.searches), bar("Views", v.views), bar("Clicks", v.clicks),
      bar("Add to cart", v.add_to_carts), bar("Transactions", v.transactions)], { barmode: "group" });
    draw("chart-histogram", [{ type: "bar", x: d.histogram.map(function (b) { return b.pos; }),
      y: d.histogram.map(function (b) { return b.clicks; }), name: "Clicks" }],
      { xaxis: { type: "category", title: { text: "position" } } });
    var top = d.top_products.slice().reverse();
    draw("chart-top", [{ type: "bar", orientation: "h", y: top.map(function (p) { return p.pid; }),
      x: top.map(function (p) { return p.clicks; }), name: "Clicks",
      text: top.map(function (p) { return p.avg_pos === null ? "" : "avg pos " + p.avg_pos; }) }],
      { yaxis: { type: "category", automargin: true } });
  }
  if (d.volume && d.volume.ingest) {
    draw("chart-usage", [bar("Searches", d.volume.searches), bar("Tracked events", d.volume.events),
      bar("Ingested items", d.volume.ingest)], { barmode: "stack" });
  }
})();

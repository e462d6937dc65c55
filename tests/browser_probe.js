// Injected by tests/test_report.py into a copy of index.html, which a wrapper page shows in an iframe of the
// screen size under test (headless Chromium will not make its window narrower than 500 px): measures the page
// as a reader sees it and posts the findings to the wrapper, which writes them into <body data-probe="...">
// for `chromium --dump-dom` to print.
window.addEventListener("load", function () {
  var W = window.innerWidth, H = window.innerHeight, probe = {viewport: [W, H]};
  function top(el) { return el ? el.getBoundingClientRect().top + window.scrollY : null; }
  function visibleText(el) { return el && el.textContent.trim().length > 0; }
  var imgs = Array.prototype.slice.call(document.images);
  probe.images = imgs.length;
  probe.broken_images = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).map(function (i) { return i.alt; });
  probe.summary_top = top(document.getElementById("summary"));
  var first = document.querySelector("#summary .headline li");
  probe.headline_top = top(first);
  probe.claims_links_in_first_screen = Array.prototype.slice.call(document.querySelectorAll('a[href="#claims"]'))
    .filter(function (a) { var r = a.getBoundingClientRect(); return r.width > 0 && r.top >= 0 && r.bottom <= H; }).length;
  probe.claim_items_in_first_screen = Array.prototype.slice.call(document.querySelectorAll("#summary .claimlist a"))
    .filter(function (a) { var r = a.getBoundingClientRect(); return r.width > 0 && r.bottom <= H; }).length;
  probe.overflow_closed = document.documentElement.scrollWidth - W;
  probe.height_closed = document.documentElement.scrollHeight;
  // Every collapsed part open: plots inside them are measured too, and the code panels must still fit.
  Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  probe.overflow_open = document.documentElement.scrollWidth - W;
  probe.height_open = document.documentElement.scrollHeight;
  probe.wide_elements = [];
  Array.prototype.forEach.call(document.querySelectorAll("main *, header *, nav *"), function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > W + 1 && probe.wide_elements.length < 5) {
      // inside a scrolling table the overflow is the table's own, not the page's
      if (!el.closest("table")) probe.wide_elements.push(el.tagName + "#" + el.id + "." + el.className + " " + Math.round(r.right));
    }
  });
  probe.plots = [];
  Array.prototype.forEach.call(document.querySelectorAll("figure.plot svg"), function (svg) {
    var id = (svg.querySelector("g[id]") || {id: "?"}).id;
    var missing = ["title", "xlabel", "ylabel"].filter(function (part) {
      return !Array.prototype.some.call(svg.querySelectorAll('g[id$="-' + part + '"]'), visibleText);
    });
    // Text boxes that overlap by more than a quarter of the smaller one (labels printed over each other).
    var boxes = Array.prototype.map.call(svg.querySelectorAll("text"), function (t) {
      return {r: t.getBoundingClientRect(), s: t.textContent.trim()};
    }).filter(function (b) { return b.s && b.r.width > 0; });
    var overlaps = [];
    for (var i = 0; i < boxes.length; i++) {
      for (var j = i + 1; j < boxes.length; j++) {
        var a = boxes[i].r, b = boxes[j].r;
        var w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 0 && h > 0 && w * h > 0.25 * Math.min(a.width * a.height, b.width * b.height)) {
          overlaps.push(boxes[i].s + " / " + boxes[j].s);
        }
      }
    }
    probe.plots.push({id: id, missing: missing, overlaps: overlaps.slice(0, 5), texts: boxes.length,
                      width: Math.round(svg.getBoundingClientRect().width)});
  });
  window.parent.postMessage(JSON.stringify(probe), "*");
});

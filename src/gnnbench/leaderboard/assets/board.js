// gnnbench leaderboard page: builds the sortable tables and the SVG plots from the page's JSON block.
// Every string from a submission goes into the DOM through textContent (or setAttribute of an http(s) href),
// never through innerHTML.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var WIDTH = 480, HEIGHT = 320;
  var MARGIN = { left: 64, right: 18, top: 34, bottom: 50 };

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function svgElement(tag, attributes, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, String(attributes[name])); });
    if (text !== undefined) { node.textContent = String(text); }
    return node;
  }

  function link(text, url) {
    var safe = typeof url === "string" && /^https?:\/\//i.test(url);
    var node = element(safe ? "a" : "span", null, text);
    if (safe) {
      node.setAttribute("href", url);
      node.setAttribute("rel", "noopener noreferrer");
    }
    return node;
  }

  // ---------------------------------------------------------------------------------------------- tables

  function compareValues(a, b, numeric) {
    if (numeric) { return a - b; }
    var x = String(a).toLowerCase(), y = String(b).toLowerCase();
    if (x !== y) { return x < y ? -1 : 1; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  // Sort by column `index`: ascending or descending, missing values last either way, ties in ranked order.
  function sortRows(state, index, descending) {
    var numeric = state.columns[index].numeric;
    state.rows.sort(function (a, b) {
      var x = a.values[index], y = b.values[index];
      var xMissing = x === null || x === undefined, yMissing = y === null || y === undefined;
      if (xMissing || yMissing) {
        return xMissing === yMissing ? a.order - b.order : (xMissing ? 1 : -1);
      }
      var result = compareValues(x, y, numeric);
      if (descending) { result = -result; }
      return result !== 0 ? result : a.order - b.order;
    });
    state.rows.forEach(function (row) { state.body.appendChild(row.tr); });
    state.headers.forEach(function (th, i) {
      th.setAttribute("aria-sort", i === index ? (descending ? "descending" : "ascending") : "none");
    });
    state.index = index;
    state.descending = descending;
  }

  function methodCell(row) {
    var td = element("td", "method");
    td.setAttribute("data-key", "method");
    td.appendChild(link(row.method.name, row.method.code_url));
    if (row.method.paper) {
      td.appendChild(document.createTextNode(" · "));
      td.appendChild(link("paper", row.method.paper));
    }
    if (row.method.external_data) { td.appendChild(document.createTextNode(" · external data")); }
    return td;
  }

  function buildTable(task) {
    var table = element("table", "board");
    table.appendChild(element("caption", null, task.id + ": ranked by test " + task.metric + " (" +
      task.direction + ")"));
    var head = element("thead"), headRow = element("tr");
    var state = { columns: task.columns, rows: [], headers: [], body: element("tbody"), index: 0, descending: false };
    task.columns.forEach(function (column, i) {
      var th = element("th", column.numeric ? "numeric" : null);
      th.setAttribute("scope", "col");
      th.setAttribute("data-key", column.key);
      th.setAttribute("aria-sort", i === 0 ? "ascending" : "none");
      var button = element("button", null, column.label);
      button.setAttribute("type", "button");
      button.addEventListener("click", function () {
        sortRows(state, i, state.index === i ? !state.descending : false);
      });
      th.appendChild(button);
      headRow.appendChild(th);
      state.headers.push(th);
    });
    head.appendChild(headRow);
    table.appendChild(head);
    task.rows.forEach(function (row, order) {
      var tr = element("tr", row.rescored ? "rescored" : null);
      tr.setAttribute("data-row", String(order));
      task.columns.forEach(function (column, i) {
        if (column.key === "method") {
          tr.appendChild(methodCell(row));
          return;
        }
        var classes = [column.numeric ? "numeric" : "", column.key === "rescored" && row.rescored ? "rescored" : ""];
        var td = element("td", classes.join(" ").trim() || null, row.cells[i][1]);
        td.setAttribute("data-key", column.key);
        tr.appendChild(td);
      });
      state.rows.push({ tr: tr, order: order, values: row.cells.map(function (cell) { return cell[0]; }) });
      state.body.appendChild(tr);
    });
    table.appendChild(state.body);
    var wrap = element("div", "table-wrap");
    wrap.appendChild(table);
    return wrap;
  }

  // ----------------------------------------------------------------------------------------------- plots

  function niceStep(span, count) {
    var raw = span / count;
    var step = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var ratio = raw / step;
    if (ratio >= 7.5) { step *= 10; } else if (ratio >= 3.5) { step *= 5; } else if (ratio >= 1.5) { step *= 2; }
    return step;
  }

  function linearTicks(low, high, count) {
    var step = niceStep(high - low, count), ticks = [];
    for (var k = Math.ceil(low / step); k * step <= high + step * 1e-9; k++) {
      ticks.push(Number((k * step).toPrecision(12)));
    }
    return ticks;
  }

  // Ticks of a log axis whose domain is [low, high] in log10 units: powers of ten (two or more), else 1-2-5
  // multiples (three or more), else linear ticks of the values themselves.
  function logTicks(low, high) {
    var powers = [], multiples = [];
    for (var k = Math.ceil(low - 1e-9); k <= Math.floor(high + 1e-9); k++) { powers.push(Math.pow(10, k)); }
    if (powers.length >= 2) { return powers; }
    for (var e = Math.floor(low) - 1; e <= Math.ceil(high); e++) {
      [1, 2, 5].forEach(function (m) {
        var value = m * Math.pow(10, e), position = Math.log(value) / Math.LN10;
        if (position >= low - 1e-9 && position <= high + 1e-9) { multiples.push(Number(value.toPrecision(12))); }
      });
    }
    if (multiples.length >= 3) { return multiples; }
    return linearTicks(Math.pow(10, low), Math.pow(10, high), 4).filter(function (v) { return v > 0; });
  }

  function tickLabel(value) {
    if (value === 0) { return "0"; }
    var magnitude = Math.abs(value);
    if (magnitude >= 1e5 || magnitude < 1e-3) {
      var parts = value.toExponential().split("e");
      return Number(Number(parts[0]).toPrecision(3)) + "e" + Number(parts[1]);
    }
    return String(Number(value.toPrecision(6)));
  }

  // The domain [low, high] of `values` (log10 units when `log`), padded so that no point sits on the frame.
  function domain(values, log) {
    var data = values.map(function (v) { return log ? Math.log(v) / Math.LN10 : v; });
    var low = Math.min.apply(null, data), high = Math.max.apply(null, data);
    var pad = high > low ? (high - low) * 0.08 : (log ? 0.5 : (Math.abs(low) || 1) * 0.1);
    return [low - pad, high + pad];
  }

  function scale(domainRange, pixels, log, flip) {
    return function (value) {
      var v = log ? Math.log(value) / Math.LN10 : value;
      var t = (v - domainRange[0]) / (domainRange[1] - domainRange[0]);
      return Number((flip ? pixels[1] - t * (pixels[1] - pixels[0]) : pixels[0] + t * (pixels[1] - pixels[0]))
        .toFixed(2));
    };
  }

  // spec: { title, xLabel, yLabel, xLog, kind, points: [{ x, y, err, row, label }] }
  function scatter(spec) {
    var svg = svgElement("svg", {
      "class": "plot " + spec.kind, viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img",
      "data-x-scale": spec.xLog ? "log" : "linear"
    });
    svg.appendChild(svgElement("title", {}, spec.title));
    var left = MARGIN.left, right = WIDTH - MARGIN.right, top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
    var xDomain = domain(spec.points.map(function (p) { return p.x; }), spec.xLog);
    var yValues = [];
    spec.points.forEach(function (p) { yValues.push(p.y - (p.err || 0), p.y + (p.err || 0)); });
    var yDomain = domain(yValues, false);
    var x = scale(xDomain, [left, right], spec.xLog, false);
    var y = scale(yDomain, [top, bottom], false, true);

    var xTicks = spec.xLog ? logTicks(xDomain[0], xDomain[1]) : linearTicks(xDomain[0], xDomain[1], 5);
    xTicks.forEach(function (value) {
      var px = x(value);
      svg.appendChild(svgElement("line", { "class": "grid", x1: px, x2: px, y1: top, y2: bottom }));
      svg.appendChild(svgElement("line", { "class": "axis", x1: px, x2: px, y1: bottom, y2: bottom + 5 }));
      svg.appendChild(svgElement("text", { "class": "tick x-tick", x: px, y: bottom + 18, "text-anchor": "middle" },
        tickLabel(value)));
    });
    linearTicks(yDomain[0], yDomain[1], 5).forEach(function (value) {
      var py = y(value);
      svg.appendChild(svgElement("line", { "class": "grid", x1: left, x2: right, y1: py, y2: py }));
      svg.appendChild(svgElement("line", { "class": "axis", x1: left - 5, x2: left, y1: py, y2: py }));
      svg.appendChild(svgElement("text", { "class": "tick y-tick", x: left - 8, y: py + 4, "text-anchor": "end" },
        tickLabel(value)));
    });
    svg.appendChild(svgElement("line", { "class": "axis", x1: left, x2: right, y1: bottom, y2: bottom }));
    svg.appendChild(svgElement("line", { "class": "axis", x1: left, x2: left, y1: top, y2: bottom }));
    svg.appendChild(svgElement("text", { "class": "plot-title", x: WIDTH / 2, y: 20, "text-anchor": "middle" },
      spec.title));
    svg.appendChild(svgElement("text", { "class": "axis-label x-label", x: (left + right) / 2, y: HEIGHT - 10,
      "text-anchor": "middle" }, spec.xLabel));
    svg.appendChild(svgElement("text", { "class": "axis-label y-label", x: -(top + bottom) / 2, y: 14,
      transform: "rotate(-90)", "text-anchor": "middle" }, spec.yLabel));

    spec.points.forEach(function (p) {
      var group = svgElement("g", { "class": "datum" });
      var px = x(p.x), py = y(p.y);
      if (p.err) {
        var low = y(p.y - p.err), high = y(p.y + p.err);
        group.appendChild(svgElement("line", { "class": "error-bar", x1: px, x2: px, y1: low, y2: high }));
        group.appendChild(svgElement("line", { "class": "error-bar", x1: px - 4, x2: px + 4, y1: low, y2: low }));
        group.appendChild(svgElement("line", { "class": "error-bar", x1: px - 4, x2: px + 4, y1: high, y2: high }));
      }
      var circle = svgElement("circle", { "class": "point", cx: px, cy: py, r: 4.5, "data-row": p.row });
      circle.appendChild(svgElement("title", {}, p.label));
      group.appendChild(circle);
      svg.appendChild(group);
    });
    return svg;
  }

  function cellText(task, row, key) {
    for (var i = 0; i < task.columns.length; i++) {
      if (task.columns[i].key === key) { return row.cells[i][1]; }
    }
    return "";
  }

  function figure(svg, note) {
    var node = element("figure");
    node.appendChild(svg);
    if (note) { node.appendChild(element("figcaption", "note", note)); }
    return node;
  }

  function buildPlots(task) {
    var yLabel = "test " + task.metric + " (" + task.direction + ")";
    function point(row, order, value) {
      return {
        x: value, y: row.plot.test, err: row.plot.test_std, row: order,
        label: row.method.name + " | test " + task.metric + ": " + cellText(task, row, "test") +
          " | parameters: " + cellText(task, row, "parameters") + " | Hessian trace: " + cellText(task, row, "trace")
      };
    }
    var byParameters = task.rows.map(function (row, order) { return point(row, order, row.plot.parameters); });
    var withTrace = [];
    task.rows.forEach(function (row, order) {
      if (row.plot.trace !== null && row.plot.trace !== undefined) {
        withTrace.push(point(row, order, row.plot.trace));
      }
    });
    var plots = element("div", "plots");
    plots.appendChild(figure(scatter({
      title: "Test score vs parameters", xLabel: "parameters (log scale)", yLabel: yLabel, xLog: true,
      kind: "parameters", points: byParameters
    })));
    var missing = task.rows.length - withTrace.length;
    var note = missing ? missing + " submission" + (missing === 1 ? "" : "s") +
      " without a Hessian trace not shown" : null;
    if (withTrace.length) {
      var positive = withTrace.every(function (p) { return p.x > 0; });
      plots.appendChild(figure(scatter({
        title: "Test score vs Hessian trace", xLabel: "Hessian trace" + (positive ? " (log scale)" : ""),
        yLabel: yLabel, xLog: positive, kind: "trace", points: withTrace
      }), note));
    } else {
      plots.appendChild(element("p", "note", note));
    }
    return plots;
  }

  // ------------------------------------------------------------------------------------------------ page

  function build() {
    var data = JSON.parse(document.getElementById("board-data").textContent);
    var board = document.getElementById("board"), nav = document.getElementById("tasks");
    var list = element("ul"), benchmark = null;
    if (!data.tasks.length) { board.appendChild(element("p", null, "No submissions yet.")); }
    data.tasks.forEach(function (task, index) {
      if (task.benchmark !== benchmark) {
        benchmark = task.benchmark;
        board.appendChild(element("h2", null, task.benchmark_title));
      }
      var section = element("section", "task");
      section.setAttribute("id", "task-" + index);
      section.setAttribute("data-task", task.id);
      var heading = element("h3", null, task.id);
      if (task.synthetic) {
        heading.appendChild(document.createTextNode(" "));
        heading.appendChild(element("span", "badge", "synthetic"));
      }
      section.appendChild(heading);
      var count = task.rows.length;
      section.appendChild(element("p", "meta", "Metric: " + task.metric + ", " + task.direction + "; " + count +
        " submission" + (count === 1 ? "" : "s") + "."));
      section.appendChild(buildTable(task));
      section.appendChild(buildPlots(task));
      board.appendChild(section);
      var item = element("li"), anchor = element("a", null, task.id);
      anchor.setAttribute("href", "#task-" + index);
      item.appendChild(anchor);
      list.appendChild(item);
    });
    nav.appendChild(list);
    document.documentElement.setAttribute("data-ready", "true");
  }

  build();
})();

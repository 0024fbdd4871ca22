/* The monitoring dashboard (monitoring/templates/monitoring/dashboard.html).
 *
 * Reads its configuration from #dashboard's data- attributes (no inline script, so a strict
 * Content-Security-Policy holds), fetches the one JSON endpoint (monitoring/dashboard.py) and
 * draws every chart with the vendored Chart.js (window.Chart). It fetches again every minute,
 * and whenever the window or a history's context changes. A chart with nothing to draw says
 * "No data yet" instead of showing an empty canvas.
 *
 * Time axes are linear scales over epoch milliseconds labelled here, so no date adapter is
 * needed. Text is set with textContent only: source names and reasons are data, never HTML.
 */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root || typeof window.Chart === "undefined") {
    return;
  }
  var Chart = window.Chart;

  var REFRESH_MS = 60 * 1000;
  // Tableau 10: distinct hues that stay apart for most colour-blind readers.
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  // Tiers keep one colour everywhere: caches blue, sources green, overrides purple,
  // degraded answers from amber (stale) through brown (widened) and pink (predicted) to red
  // (fallback).
  var TIER_COLORS = {
    override: "#b07aa1",
    l1: "#1f4e79",
    l2: "#4e79a7",
    l3: "#a0cbe8",
    primary: "#2e7d32",
    secondary: "#59a14f",
    tertiary: "#8cd17d",
    stale: "#f28e2b",
    widened: "#9c755f",
    predicted: "#ff9da7",
    fallback: "#e15759",
  };

  var state = {
    hours: root.dataset.hours,
    contexts: {}, // value type key -> the context key chosen for its history
    groups: {}, // value type key -> the field group chosen for its history
    data: null,
    timer: null,
  };
  var charts = {}; // canvas id -> Chart

  var numberFormat = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4 });
  var compactFormat = new Intl.NumberFormat(undefined, { notation: "compact", maximumSignificantDigits: 3 });
  var percentFormat = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

  function cssVariable(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  Chart.defaults.color = cssVariable("--body-fg", "#333");
  Chart.defaults.borderColor = cssVariable("--hairline-color", "#e8e8e8");
  Chart.defaults.font.family = cssVariable("--font-family-primary", Chart.defaults.font.family);
  Chart.defaults.maintainAspectRatio = false;
  // A dashboard redrawn every minute should not move by itself.
  Chart.defaults.animation = false;

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function withAlpha(hex, alpha) {
    var value = parseInt(hex.slice(1), 16);
    return "rgba(" + ((value >> 16) & 255) + "," + ((value >> 8) & 255) + "," + (value & 255) + "," + alpha + ")";
  }

  function timeLabel(ms) {
    var date = new Date(ms);
    var time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (Number(state.hours) <= 24) {
      return time;
    }
    return date.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
  }

  function timeAxis(data) {
    return {
      type: "linear",
      min: Date.parse(data.since),
      max: Date.parse(data.generated_at),
      ticks: { callback: timeLabel, maxTicksLimit: 8, maxRotation: 0 },
      grid: { display: false },
    };
  }

  // A history starts at its first record in the window, not at the window's start: values
  // change rarely, and a day-long axis would squeeze a few hours of changes into a corner.
  function historyTimeAxis(data, datasets) {
    var axis = timeAxis(data);
    var first = Math.min.apply(null, datasets.map(function (dataset) { return dataset.data[0].x; }));
    var span = axis.max - first;
    if (span > 0) {
      axis.min = first - span * 0.05;
    }
    return axis;
  }

  function timeTooltipTitle(items) {
    return items.length ? new Date(items[0].parsed.x).toLocaleString() : "";
  }

  // Show the chart, or its card's "No data yet" when there is nothing to draw.
  function draw(canvas, config) {
    var card = canvas.closest(".chart-card");
    var box = canvas.parentElement;
    var empty = card.querySelector(".empty-state");
    var hasData = config !== null;
    box.hidden = !hasData;
    if (empty) {
      empty.hidden = hasData;
    }
    if (charts[canvas.id]) {
      charts[canvas.id].destroy();
      delete charts[canvas.id];
    }
    if (hasData) {
      charts[canvas.id] = new Chart(canvas, config);
    }
  }

  // Sources ---------------------------------------------------------------------------------------

  function breakerText(breaker) {
    if (breaker.state === "open" && breaker.opened_until) {
      return "open until " + new Date(breaker.opened_until).toLocaleTimeString();
    }
    if (breaker.state === "half_open") {
      return "half-open (" + breaker.trials + " trial" + (breaker.trials === 1 ? "" : "s") + " in flight)";
    }
    if (breaker.state === "closed") {
      return "closed" + (breaker.failures ? " (" + breaker.failures + " failure" + (breaker.failures === 1 ? "" : "s") + " in a row)" : "");
    }
    return breaker.state || "unknown";
  }

  // A long snake_case name wraps after an underscore, not mid-word.
  function breakableName(name) {
    var heading = element("h3");
    name.split("_").forEach(function (part, index, parts) {
      heading.appendChild(document.createTextNode(part + (index < parts.length - 1 ? "_" : "")));
      if (index < parts.length - 1) {
        heading.appendChild(element("wbr"));
      }
    });
    return heading;
  }

  function renderSourceTiles(sources) {
    var container = document.getElementById("source-tiles");
    container.replaceChildren();
    if (!sources.length) {
      container.appendChild(element("p", "empty-state", "No data yet"));
      return;
    }
    sources.forEach(function (source) {
      var status = source.status || "unknown";
      var tile = element("div", "source-tile status-" + status);
      tile.dataset.source = source.name;
      tile.appendChild(breakableName(source.name));
      tile.appendChild(element("span", "status-badge", status));
      tile.appendChild(element("p", "source-breaker", "Breaker " + breakerText(source.breaker || {})));
      var calls = source.window_calls || 0;
      var rate = calls ? ", " + percentFormat.format((source.window_errors || 0) / calls) + " failed" : "";
      tile.appendChild(element("p", "source-calls", calls + " call" + (calls === 1 ? "" : "s") + " in the window" + rate));
      var reasons = source.reasons || [];
      if (status !== "healthy" && reasons.length) {
        // The worst reason is shown; all of them on hover.
        var reason = element("p", "source-reasons", reasons[0]);
        reason.title = reasons.join("\n");
        tile.appendChild(reason);
      }
      container.appendChild(tile);
    });
  }

  function sourceLines(data, field, scale) {
    var datasets = [];
    data.sources.forEach(function (source, index) {
      var color = PALETTE[index % PALETTE.length];
      var points = source.series
        .filter(function (bucket) { return bucket.calls > 0 && bucket[field] !== null && bucket[field] !== undefined; })
        .map(function (bucket) { return { x: bucket.at, y: bucket[field] * scale }; });
      if (points.length) {
        datasets.push({ label: source.name, data: points, borderColor: color, backgroundColor: color, pointRadius: 2 });
      }
    });
    return datasets;
  }

  function renderLatency(data) {
    var p50 = sourceLines(data, "p50", 1000);
    var p95 = sourceLines(data, "p95", 1000).map(function (dataset, index) {
      return Object.assign(dataset, { label: dataset.label + " p95", borderDash: [6, 4], pointRadius: 1, pair: index, hiddenInLegend: true });
    });
    p50.forEach(function (dataset, index) { dataset.pair = p50.length + index; });
    var datasets = p50.concat(p95);
    draw(document.getElementById("chart-latency"), datasets.length ? {
      type: "line",
      data: { datasets: datasets },
      options: {
        scales: {
          x: timeAxis(data),
          y: { beginAtZero: true, title: { display: true, text: "milliseconds" } },
        },
        plugins: {
          tooltip: { callbacks: { title: timeTooltipTitle, label: function (item) { return item.dataset.label + ": " + numberFormat.format(item.parsed.y) + " ms"; } } },
          legend: pairedLegend(),
        },
      },
    } : null);
  }

  function renderErrorRate(data) {
    var datasets = sourceLines(data, "error_rate", 100);
    draw(document.getElementById("chart-errors"), datasets.length ? {
      type: "line",
      data: { datasets: datasets },
      options: {
        scales: {
          x: timeAxis(data),
          y: { min: 0, max: 100, ticks: { callback: function (value) { return value + "%"; } } },
        },
        plugins: {
          tooltip: { callbacks: { title: timeTooltipTitle, label: function (item) { return item.dataset.label + ": " + numberFormat.format(item.parsed.y) + "%"; } } },
          legend: { labels: { boxWidth: 12 } },
        },
      },
    } : null);
  }

  // Answers and caches ----------------------------------------------------------------------------

  function renderCache(data) {
    var rows = data.cache.filter(function (row) { return row.lookups > 0; });
    draw(document.getElementById("chart-cache"), rows.length ? {
      type: "bar",
      data: {
        labels: rows.map(function (row) { return row.tier.toUpperCase(); }),
        datasets: [{
          label: "hit rate",
          data: rows.map(function (row) { return row.hit_rate * 100; }),
          maxBarThickness: 90,
          backgroundColor: rows.map(function (row) { return TIER_COLORS[row.tier] || PALETTE[0]; }),
        }],
      },
      options: {
        scales: { y: { min: 0, max: 100, ticks: { callback: function (value) { return value + "%"; } } } },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (item) {
                var row = rows[item.dataIndex];
                return numberFormat.format(item.parsed.y) + "% (" + row.hits + " hits of " + row.lookups + " lookups)";
              },
            },
          },
        },
      },
    } : null);
  }

  function stackedBars(labels, stacks, colorOf) {
    // stacks: {stack name: {label: count}}
    return Object.keys(stacks).map(function (name, index) {
      return {
        label: name,
        data: labels.map(function (label) { return stacks[name][label] || 0; }),
        backgroundColor: colorOf(name) || PALETTE[index % PALETTE.length],
        maxBarThickness: 90,
      };
    });
  }

  function stackedBarConfig(labels, datasets, extraTooltip) {
    return {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: {
          legend: { labels: { boxWidth: 12 } },
          tooltip: extraTooltip ? { callbacks: { afterLabel: extraTooltip } } : {},
        },
      },
    };
  }

  function renderAnswers(data) {
    var labels = data.answers.map(function (row) { return row.value_type; });
    var stacks = {};
    data.answers.forEach(function (row) {
      Object.keys(row.tiers).forEach(function (tier) {
        stacks[tier] = stacks[tier] || {};
        stacks[tier][row.value_type] = row.tiers[tier];
      });
    });
    var datasets = stackedBars(labels, stacks, function (tier) { return TIER_COLORS[tier]; });
    draw(document.getElementById("chart-answers"), labels.length ? stackedBarConfig(labels, datasets) : null);
  }

  function renderDegraded(data) {
    var labels = [];
    var stacks = {};
    var reasons = {}; // "kind|value type" -> ["reason: count"]
    data.degraded.forEach(function (row) {
      if (labels.indexOf(row.value_type) < 0) {
        labels.push(row.value_type);
      }
      stacks[row.kind] = stacks[row.kind] || {};
      stacks[row.kind][row.value_type] = (stacks[row.kind][row.value_type] || 0) + row.count;
      var key = row.kind + "|" + row.value_type;
      (reasons[key] = reasons[key] || []).push(row.reason + ": " + row.count);
    });
    var datasets = stackedBars(labels, stacks, function (kind) { return TIER_COLORS[kind]; });
    draw(document.getElementById("chart-degraded"), labels.length ? stackedBarConfig(labels, datasets, function (item) {
      return reasons[item.dataset.label + "|" + item.label] || [];
    }) : null);
  }

  // Value history ---------------------------------------------------------------------------------

  function historyDatasets(group) {
    var datasets = [];
    group.series.forEach(function (series, index) {
      var color = PALETTE[index % PALETTE.length];
      // A fetched value holds until the next fetch: steps, with a dot per fetch.
      var common = { borderColor: color, backgroundColor: color, stepped: true, pointRadius: 3, borderWidth: 2 };
      if (series.kind === "band") {
        var low = datasets.length;
        datasets.push(Object.assign({}, common, {
          label: series.label + " low",
          data: series.points.map(function (point) { return { x: point[0], y: point[1] }; }),
          hiddenInLegend: true,
          pair: low + 1,
          borderWidth: 1,
          fill: false,
        }));
        datasets.push(Object.assign({}, common, {
          label: series.label + " (low–high)",
          data: series.points.map(function (point) { return { x: point[0], y: point[2] }; }),
          pair: low,
          borderWidth: 1,
          fill: "-1",
          backgroundColor: withAlpha(color, 0.2),
        }));
      } else {
        datasets.push(Object.assign({}, common, {
          label: series.label,
          data: series.points.map(function (point) { return { x: point[0], y: point[1] }; }),
        }));
      }
    });
    return datasets;
  }

  // Thresholds from hundreds to millions read better on a logarithmic axis.
  function valueAxis(datasets) {
    var values = [];
    datasets.forEach(function (dataset) { dataset.data.forEach(function (point) { values.push(point.y); }); });
    var low = Math.min.apply(null, values);
    var high = Math.max.apply(null, values);
    var isLogarithmic = low > 0 && high / low > 100;
    return {
      type: isLogarithmic ? "logarithmic" : "linear",
      ticks: { callback: function (value) { return compactFormat.format(value); } },
    };
  }

  // One legend entry per pair of datasets (a source's p50 and p95, a band's low and high):
  // the second of a pair is left out, and a click shows or hides both.
  function pairedLegend() {
    return {
      onClick: toggleWithPair,
      labels: {
        boxWidth: 12,
        filter: function (item, chartData) { return !chartData.datasets[item.datasetIndex].hiddenInLegend; },
      },
    };
  }

  function toggleWithPair(event, legendItem, legend) {
    var chart = legend.chart;
    var index = legendItem.datasetIndex;
    var dataset = chart.data.datasets[index];
    var isVisible = chart.isDatasetVisible(index);
    [index].concat(dataset.pair === undefined ? [] : [dataset.pair]).forEach(function (each) {
      chart.setDatasetVisibility(each, !isVisible);
    });
    chart.update();
  }

  function historyChartConfig(data, group) {
    var datasets = historyDatasets(group);
    return {
      type: "line",
      data: { datasets: datasets },
      options: {
        scales: { x: historyTimeAxis(data, datasets), y: valueAxis(datasets) },
        plugins: {
          legend: pairedLegend(),
          tooltip: {
            callbacks: {
              title: timeTooltipTitle,
              label: function (item) { return item.dataset.label + ": " + numberFormat.format(item.parsed.y); },
            },
          },
        },
      },
    };
  }

  function contextLabel(contextKey) {
    return contextKey === "" ? "no context (default)" : contextKey;
  }

  function selectControl(labelText, options, chosen, onChange) {
    var label = element("label", null, labelText + " ");
    var select = element("select");
    options.forEach(function (option) {
      var node = element("option", null, option.text);
      node.value = option.value;
      node.selected = option.value === chosen;
      select.appendChild(node);
    });
    select.addEventListener("change", function () { onChange(select.value); });
    label.appendChild(select);
    return label;
  }

  function renderHistories(data) {
    var container = document.getElementById("history-charts");
    Object.keys(charts).forEach(function (id) {
      if (id.indexOf("chart-history-") === 0) {
        charts[id].destroy();
        delete charts[id];
      }
    });
    container.replaceChildren();
    if (!data.histories.length) {
      container.appendChild(element("p", "empty-state", "No data yet"));
      return;
    }
    data.histories.forEach(function (history) {
      var key = history.value_type;
      var card = element("div", "chart-card");
      card.dataset.chart = "history";
      card.dataset.valueType = key;
      var title = element("h3", null, key + " ");
      if (history.description) {
        title.appendChild(element("small", null, history.description));
      }
      card.appendChild(title);

      var controls = element("div", "chart-controls");
      if (history.contexts.length) {
        controls.appendChild(selectControl(
          "Context",
          history.contexts.map(function (context) {
            return { value: context.context_key, text: contextLabel(context.context_key) + " (" + context.records + ")" };
          }),
          history.context_key,
          function (value) {
            state.contexts[key] = value;
            load();
          }
        ));
      }
      var groupNames = history.groups.map(function (group) { return group.name; });
      var chosenGroup = groupNames.indexOf(state.groups[key]) >= 0 ? state.groups[key] : groupNames[0];
      if (groupNames.length > 1) {
        controls.appendChild(selectControl(
          "Field",
          groupNames.map(function (name) { return { value: name, text: name }; }),
          chosenGroup,
          function (value) {
            state.groups[key] = value;
            renderHistories(state.data);
          }
        ));
      }
      card.appendChild(controls);

      var box = element("div", "chart-box");
      var canvas = element("canvas");
      canvas.id = "chart-history-" + key;
      canvas.setAttribute("aria-label", "History of " + key);
      box.appendChild(canvas);
      card.appendChild(box);
      card.appendChild(element("p", "empty-state", "No data yet — no value fetched in this window"));
      container.appendChild(card);

      var group = history.groups[groupNames.indexOf(chosenGroup)];
      draw(canvas, group ? historyChartConfig(data, group) : null);
    });
  }

  // Loading ---------------------------------------------------------------------------------------

  function setStatus(text, isError) {
    var status = document.getElementById("dashboard-updated");
    status.textContent = text;
    status.classList.toggle("is-error", Boolean(isError));
  }

  function dataUrl() {
    var parameters = new URLSearchParams({ hours: state.hours });
    Object.keys(state.contexts).forEach(function (key) {
      parameters.set("context_" + key, state.contexts[key]);
    });
    return root.dataset.url + "?" + parameters.toString();
  }

  function render(data) {
    state.data = data;
    renderSourceTiles(data.sources);
    renderLatency(data);
    renderErrorRate(data);
    renderCache(data);
    renderAnswers(data);
    renderDegraded(data);
    renderHistories(data);
    root.dataset.renderedAt = data.generated_at;
    setStatus("Updated " + new Date(data.generated_at).toLocaleTimeString() + " · refreshed every minute");
  }

  function load() {
    window.clearTimeout(state.timer);
    state.timer = window.setTimeout(load, REFRESH_MS);
    return fetch(dataUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") < 0) {
          throw new Error("Your session has ended: reload the page to log in again.");
        }
        if (!response.ok) {
          throw new Error("Could not load the data (HTTP " + response.status + "); trying again in a minute.");
        }
        return response.json();
      })
      .then(render)
      .catch(function (error) { setStatus(error.message, true); });
  }

  document.getElementById("dashboard-hours").addEventListener("change", function (event) {
    state.hours = event.target.value;
    load();
  });

  load();
})();

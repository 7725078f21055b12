// The connector page's statistics: a stacked bar chart per day (Chart.js, vendored) and the 7/30/90-day switch,
// which reloads the series from the stats API without leaving the page (the links still work without script).
(function () {
  "use strict";
  var canvas = document.getElementById("stats-chart");
  var source = document.getElementById("stats-data");
  if (!canvas || !source || typeof Chart === "undefined") return;
  var initial = JSON.parse(source.textContent);

  function datasets(series) {
    return series.map(function (s) {
      return { label: s.label, data: s.data, backgroundColor: s.colour, borderColor: s.colour, outcome: s.outcome, stack: "profiles" };
    });
  }

  var chart = new Chart(canvas, {
    type: "bar",
    data: { labels: initial.dates, datasets: datasets(initial.series) },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { display: false } },
      scales: { x: { stacked: true, ticks: { maxTicksLimit: 15 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
    }
  });

  function setText(selector, value) {
    var el = document.querySelector(selector);
    if (el) el.textContent = String(value);
  }

  function renderErrors(rows) {
    var body = document.querySelector("#error-codes tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (e) {
      var tr = document.createElement("tr");
      var cells = [e.outcome_label, null, e.count, e.meaning || "\u2014", null];
      cells.forEach(function (value, i) {
        var td = document.createElement("td");
        if (i === 1) {
          var code = document.createElement("code");
          code.textContent = e.code;
          td.appendChild(code);
        } else if (i === 4) {
          if (e.docs_url && /^https?:\/\//.test(e.docs_url)) {
            var a = document.createElement("a");
            a.href = e.docs_url;
            a.target = "_blank";
            a.rel = "noopener";
            a.textContent = "Partner errors";
            td.appendChild(a);
          }
        } else {
          td.textContent = String(value);
        }
        if (i === 2) td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var none = document.getElementById("error-codes-none");
    if (none) none.hidden = rows.length > 0;
  }

  function show(days) {
    var url = initial.api + "?days=" + encodeURIComponent(days);
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("statistics answered " + response.status);
        return response.json();
      })
      .then(function (stats) {
        chart.data.labels = stats.dates;
        chart.data.datasets.forEach(function (ds) { ds.data = stats.series[ds.outcome]; });
        chart.update();
        canvas.setAttribute("data-days", String(stats.days));
        Object.keys(stats.totals).forEach(function (k) { setText('[data-category="' + k + '"]', stats.totals[k]); });
        Object.keys(stats.by_outcome).forEach(function (k) { setText('[data-outcome="' + k + '"]', stats.by_outcome[k]); });
        setText("#stats-until", stats.until);
        renderErrors(stats.partner_errors);
        document.querySelectorAll(".periods a").forEach(function (a) {
          var current = a.getAttribute("data-days") === String(stats.days);
          a.classList.toggle("current", current);
          if (current) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current");
        });
        var here = new URL(window.location.href);
        here.searchParams.set("days", String(stats.days));
        window.history.replaceState(null, "", here.toString());
      });
  }

  document.querySelectorAll(".periods a[data-days]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      show(link.getAttribute("data-days")).catch(function () { window.location.href = link.href; });
    });
  });
})();

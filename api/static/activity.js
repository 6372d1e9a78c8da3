/* jobledger dashboard: the workers panel and the throughput chart.
 *
 * Both read queries the dashboard adds beyond the contract (`workers`, `throughput`),
 * refetched every REFRESH_MS and soon after a job changes (the home page calls
 * `refresh`). The chart is drawn by uPlot (vendored: uplot.iife.min.js, MIT licence in
 * uplot.LICENSE.txt). Loaded after app.js, whose helpers it borrows from `window.jobledger`.
 */
"use strict";

(() => {
  const { h, fill, gql, fmt, ago, statusBadge, explain } = window.jobledger;

  const REFRESH_MS = 15000;
  const RECENT_S = 120; // heard of this recently: the worker is alive
  const MINUTES = 60;

  const WORKERS = `query Workers {
    workers(first: 50) {
      name lastHeartbeat speed holding claimed done failed
      tasks { id uri status progress job { id code } }
    }
  }`;
  const THROUGHPUT = `query Throughput($minutes: Int) { throughput(minutes: $minutes) { minute done failed queued } }`;

  const secondsSince = (iso) => (Date.now() - Date.parse(iso)) / 1000;

  /** Calls `load` now, every REFRESH_MS while the page is visible (and when it shows
   * again), and a second after `refresh` is called; `stop` ends it. */
  function poller(load) {
    let soon = null;
    let stopped = false;
    let running = false;
    const run = async () => {
      if (stopped || running) return;
      running = true;
      try {
        await load();
      } finally {
        running = false;
      }
    };
    const timer = setInterval(() => document.hidden || run(), REFRESH_MS);
    const shown = () => document.hidden || run();
    document.addEventListener("visibilitychange", shown);
    run();
    return {
      refresh() {
        if (soon) return; // at most one a second, however busy the jobs are
        soon = setTimeout(() => {
          soon = null;
          run();
        }, 1000);
      },
      stop() {
        stopped = true;
        clearInterval(timer);
        clearTimeout(soon);
        document.removeEventListener("visibilitychange", shown);
      },
    };
  }

  // -- workers -------------------------------------------------------------------------

  function workerState(worker) {
    const recent = secondsSince(worker.lastHeartbeat) < RECENT_S;
    if (worker.holding && recent) return ["busy", "runs tasks"];
    if (worker.holding) return ["silent", `holds ${worker.holding} task${worker.holding === 1 ? "" : "s"} but has not reported for a while`];
    return recent ? ["idle", "holds nothing now"] : ["gone", "not heard of lately"];
  }

  function workerItem(worker) {
    const [state, explanation] = workerState(worker);
    const speed = fmt.speed(worker.speed);
    const more = worker.holding - worker.tasks.length;
    return h(
      "li",
      { class: "worker", dataset: { worker: worker.name, state } },
      h(
        "div",
        { class: "worker-head" },
        h("span", { class: "dot", title: explanation, "aria-hidden": "true" }),
        h("strong", { class: "worker-name" }, worker.name),
        h("span", { class: "sr-only" }, `: ${explanation}.`),
        h("span", { class: "worker-seen", title: "Its last claim, heartbeat or result" }, "heard ", ago(worker.lastHeartbeat)),
      ),
      h(
        "div",
        { class: "worker-meta" },
        h("span", { class: "speed", dataset: { speed: worker.speed } }, speed || "no transfer now"),
        h("span", { class: "holding" }, worker.holding ? `runs ${worker.holding}` : "idle"),
        h("span", { title: "Tasks it completed, and attempts that failed or whose lease expired" }, `${worker.done} done · ${worker.failed} failed`),
      ),
      worker.tasks.length
        ? h(
            "ul",
            { class: "worker-tasks" },
            worker.tasks.map((task) =>
              h(
                "li",
                { dataset: { taskId: task.id } },
                h("a", { href: `#/job/${encodeURIComponent(task.job.id)}` }, task.job.code),
                h("span", { class: "task-uri" }, ` #${task.uri} `),
                statusBadge(task.status),
                h("span", { class: "pct" }, ` ${task.progress}%`),
              ),
            ),
            more > 0 ? h("li", { class: "hint" }, `and ${more} more`) : null,
          )
        : null,
    );
  }

  function workersPanel() {
    const list = h("ul", { class: "worker-list", id: "workers", "aria-live": "off" }, h("li", { class: "empty" }, "Loading workers…"));
    const count = h("span", { class: "count", id: "workers-count" });
    const el = h(
      "section",
      { class: "panel workers-panel", "aria-labelledby": "workers-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "workers-title" }, "Workers"), count),
      list,
    );
    const poll = poller(async () => {
      try {
        const { workers } = await gql(WORKERS);
        const busy = workers.filter((w) => w.holding).length;
        count.textContent = workers.length ? `${busy} of ${workers.length} busy` : "";
        if (!workers.length) {
          fill(list, h("li", { class: "empty" }, "No worker has claimed a task of your queues yet. Start one with ", h("code", {}, "jobledger worker"), "."));
          return;
        }
        fill(list, workers.map(workerItem));
      } catch (error) {
        if (!list.querySelector(".worker")) fill(list, h("li", { class: "empty" }, explain(error)));
      }
    });
    return { el, refresh: poll.refresh, stop: poll.stop };
  }

  // -- throughput ------------------------------------------------------------------------

  function cssColor(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function chartOptions(width) {
    const ok = cssColor("--ok", "#1f8a4c");
    const bad = cssColor("--bad", "#c23434");
    const accent = cssColor("--accent", "#2f6fde");
    const muted = cssColor("--muted", "#5d6878");
    const line = cssColor("--line", "#dfe4ec");
    const axis = (extra) => ({ stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 }, ...extra });
    const whole = (u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : ""));
    const clock = (u, splits) =>
      splits.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }));
    return {
      width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(4, max)] }, queued: { range: (u, min, max) => [0, Math.max(4, max)] } },
      series: [
        { label: "time", value: (u, v) => (v == null ? "–" : clock(u, [v])[0]) },
        { label: "DONE / min", scale: "n", stroke: ok, fill: `${ok}22`, width: 2, points: { show: true, size: 4 } },
        { label: "FAILED / min", scale: "n", stroke: bad, width: 2, points: { show: true, size: 4 } },
        { label: "QUEUED", scale: "queued", stroke: accent, width: 2, dash: [6, 4], points: { show: false } },
      ],
      axes: [axis({ values: clock }), axis({ scale: "n", values: whole, size: 40 }), axis({ scale: "queued", side: 1, values: whole, size: 48, grid: { show: false } })],
    };
  }

  function throughputPanel() {
    const chartBox = h("div", { class: "chart", id: "throughput-chart", role: "img", "aria-label": "Tasks done and failed per minute, and tasks queued, over the last hour" });
    const summary = h("p", { class: "hint chart-summary", id: "throughput-summary" }, "Loading…");
    const el = h(
      "section",
      { class: "panel activity-panel", "aria-labelledby": "activity-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "activity-title" }, "Throughput"), h("span", { class: "count" }, "last hour, per minute")),
      chartBox,
      summary,
    );
    let plot = null;
    let resize = null;

    function draw(points) {
      const data = [
        points.map((p) => Date.parse(p.minute) / 1000),
        points.map((p) => p.done),
        points.map((p) => p.failed),
        points.map((p) => p.queued),
      ];
      const done = data[1].reduce((a, b) => a + b, 0);
      const failed = data[2].reduce((a, b) => a + b, 0);
      const queued = points.length ? points[points.length - 1].queued : 0;
      Object.assign(chartBox.dataset, { points: String(points.length), done: String(done), failed: String(failed), queued: String(queued) });
      summary.textContent = `In the last hour ${done} task${done === 1 ? "" : "s"} DONE and ${failed} FAILED; ${queued} QUEUED now.`;
      if (typeof window.uPlot !== "function") {
        chartBox.textContent = "The chart library did not load.";
        return;
      }
      if (!plot) {
        plot = new window.uPlot(chartOptions(Math.max(240, chartBox.clientWidth)), data, chartBox);
        resize = new ResizeObserver(() => {
          const width = Math.max(240, chartBox.clientWidth);
          if (plot && Math.abs(plot.width - width) > 2) plot.setSize({ width, height: 200 });
        });
        resize.observe(chartBox);
      } else {
        plot.setData(data);
      }
    }

    const poll = poller(async () => {
      try {
        const { throughput } = await gql(THROUGHPUT, { minutes: MINUTES });
        draw(throughput);
      } catch (error) {
        summary.textContent = explain(error);
      }
    });
    return {
      el,
      refresh: poll.refresh,
      stop() {
        poll.stop();
        if (resize) resize.disconnect();
        if (plot) plot.destroy();
        plot = null;
      },
    };
  }

  window.jobledger.activity = { workersPanel, throughputPanel };
})();

/* jobledger dashboard: plain JavaScript, no build step.
 *
 * Reads through GraphQL over HTTP; everything live arrives through one
 * graphql-transport-ws websocket (jobUpdated, jobProgress), which reconnects
 * with backoff when the server goes away. With authentication on, the browser
 * is signed in by the server's HttpOnly session cookie (POST /signin with a
 * token); this script never sees a token. It asks `me` first: UNAUTHENTICATED
 * there, or later, shows the sign-in form instead of the page. Routes live in
 * the hash:
 *   #/                       jobs, queues, workers and throughput (#/?where=...&phase=...)
 *   #/job/<id>               one job: its tasks, its history, actions
 * activity.js (loaded after this) draws the workers and the throughput chart with the
 * helpers this script shares as `window.jobledger`.
 */
"use strict";

(() => {
  const USER_KEY = "jobledger.user";
  const ENDPOINT = new URL("graphql", document.baseURI).href;
  const WS_ENDPOINT = ENDPOINT.replace(/^http/, "ws");
  const FINISHED = new Set(["DONE", "FAILED", "ABORTED"]);
  // The statuses a user may move a job or task to, from each status: the domain's
  // transition tables (domain/job.py, domain/task.py) limited to what users may set.
  // A button is enabled only where its move is in here (and the page's own rule allows it).
  const JOB_MOVES = {
    INIT: ["PENDING", "WAITING", "PAUSED", "ABORTED", "DONE"],
    PENDING: ["WAITING", "PAUSED", "ABORTED", "DONE"],
    WAITING: ["PENDING", "PAUSED", "ABORTED", "DONE"],
    RUNNING: ["WAITING", "PAUSED", "ABORTED", "DONE"],
    PAUSED: ["PENDING", "WAITING", "ABORTED", "DONE"],
    FAILED: ["PENDING", "WAITING", "ABORTED"],
    ABORTED: ["PENDING", "WAITING"],
    DONE: ["PENDING", "WAITING"],
  };
  const TASK_MOVES = {
    PENDING: ["QUEUED", "ONHOLD", "EXCLUDED"],
    QUEUED: ["FAILED", "ONHOLD", "EXCLUDED", "DONE"],
    BOOTING: ["QUEUED", "FAILED", "ONHOLD", "EXCLUDED", "DONE"],
    EXECUTING: ["QUEUED", "FAILED", "ONHOLD", "EXCLUDED", "DONE"],
    FAILED: ["QUEUED", "ONHOLD", "EXCLUDED", "DONE"],
    ONHOLD: ["QUEUED", "FAILED", "EXCLUDED", "DONE"],
    EXCLUDED: ["QUEUED", "ONHOLD"],
    DONE: ["QUEUED", "EXCLUDED"],
  };
  const jobMay = (status, to) => (JOB_MOVES[status] || []).includes(to);
  const taskMay = (status, to) => (TASK_MOVES[status] || []).includes(to);

  // -- small helpers ---------------------------------------------------------------

  /** h("a", {class: "x", href: "#", onclick: fn}, "text", child) */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "value" || key === "checked" || key === "disabled") el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const $ = (selector, root = document) => root.querySelector(selector);

  /** Replace an element's children, skipping null/false ones. */
  function fill(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
    return el;
  }

  function debounce(fn, ms) {
    let timer = null;
    const run = (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
    run.cancel = () => clearTimeout(timer);
    return run;
  }

  const fmt = {
    speed(mbs) {
      if (!mbs || mbs <= 0) return null;
      return `${mbs < 10 ? mbs.toFixed(2) : mbs.toFixed(1)} MB/s`;
    },
    etr(value) {
      // "0h:04m:10s" -> "4m 10s"
      if (!value) return null;
      const m = /^(\d+)h:(\d+)m:(\d+)s$/.exec(value);
      if (!m) return value;
      const [hours, minutes, seconds] = m.slice(1).map(Number);
      if (hours) return `${hours}h ${minutes}m`;
      if (minutes) return `${minutes}m ${seconds}s`;
      return `${seconds}s`;
    },
    seconds(value) {
      // time left in seconds -> "4m 10s"
      if (value == null || value < 0) return null;
      const whole = Math.round(value);
      const hours = Math.floor(whole / 3600);
      const minutes = Math.floor((whole % 3600) / 60);
      if (hours) return `${hours}h ${minutes}m`;
      if (minutes) return `${minutes}m ${whole % 60}s`;
      return `${whole}s`;
    },
    bytes(n) {
      if (n == null || n < 0) return null;
      const units = ["B", "kB", "MB", "GB", "TB", "PB"];
      let i = 0;
      let v = n;
      while (v >= 1000 && i < units.length - 1) {
        v /= 1000;
        i += 1;
      }
      return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
    },
    ago(iso) {
      if (!iso) return "";
      const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
      if (seconds < 5) return "just now";
      if (seconds < 60) return `${seconds} s ago`;
      if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
      if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
      return new Date(iso).toLocaleDateString();
    },
    clock(iso) {
      const date = new Date(iso);
      const today = new Date().toDateString() === date.toDateString();
      const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
      return today ? time : `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
    },
    full(iso) {
      return iso ? new Date(iso).toLocaleString() : "";
    },
    ms(ms) {
      if (ms == null) return null;
      return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
    },
    location(value) {
      if (value == null) return "";
      if (typeof value === "string") return value;
      if (value.kind === "command") return Array.isArray(value.command) ? value.command.join(" ") : String(value.command);
      return value.path || JSON.stringify(value);
    },
  };

  /** A <time> that keeps saying "3 min ago" correctly (refreshed by a local clock, not the server). */
  function ago(iso) {
    return h("time", { class: "ago", datetime: iso, title: fmt.full(iso) }, fmt.ago(iso));
  }
  setInterval(() => {
    for (const el of document.querySelectorAll("time.ago")) el.textContent = fmt.ago(el.getAttribute("datetime"));
  }, 15000);

  /** Time left of a job or task: its `timeLeft` (seconds) where the server has it, else the etr text. */
  function timeLeft(item) {
    if (item.timeLeft !== undefined) return fmt.seconds(item.timeLeft);
    return fmt.etr(item.etr);
  }

  function statusBadge(status) {
    return h("span", { class: `status s-${String(status).toLowerCase()}`, text: status });
  }

  function progressBar(extraClass) {
    return h(
      "div",
      { class: `bar ${extraClass || ""}`, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 },
      h("span", { class: "fill" }),
    );
  }

  function setProgress(bar, value, status) {
    const v = Math.max(0, Math.min(100, Number(value) || 0));
    bar.setAttribute("aria-valuenow", String(v));
    bar.setAttribute("aria-label", `${v}% ${String(status || "").toLowerCase()}`);
    bar.dataset.status = String(status || "").toLowerCase();
    bar.firstChild.style.width = `${v}%`;
  }

  // -- who am I --------------------------------------------------------------------

  const identity = {
    get() {
      try {
        return (localStorage.getItem(USER_KEY) || "").trim();
      } catch {
        return "";
      }
    },
    set(name) {
      try {
        if (name) localStorage.setItem(USER_KEY, name);
        else localStorage.removeItem(USER_KEY);
      } catch {
        /* private mode: the name lasts as long as the page */
      }
    },
  };

  /** Who the server says we are (`me`): `auth` is null until it answered, true when it
   * needs tokens, false when it runs with authentication off (the name above counts). */
  const account = { auth: null, user: null, ready: false, signedOut: false, siteAdmin: false, roles: new Map() };

  /** Whether the caller may change a job and its tasks (README, Access control): every
   * caller with authentication off; a site admin; an operator or admin of the job's
   * queue's group; a member for the jobs they submitted. The server checks it again. */
  function mayChange(job) {
    if (account.auth !== true || account.siteAdmin) return true;
    const role = account.roles.get(job.queue && job.queue.group);
    return role === "operator" || role === "admin" || (role === "member" && job.user === account.user);
  }

  /** The name to send as X-Jobledger-User: with authentication on the session says who we are. */
  function actorName() {
    return account.auth === true ? "" : identity.get();
  }

  // -- notices -----------------------------------------------------------------------

  function toast(message, kind = "info") {
    if (account.signedOut) return; // what failed for want of a session: the sign-in form says it
    const box = $("#toasts");
    const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", title: "Click to dismiss", onclick: () => item.remove() }, message);
    box.append(item);
    while (box.children.length > 3) box.firstChild.remove();
    setTimeout(() => item.classList.add("leaving"), kind === "error" ? 7000 : 3500);
    setTimeout(() => item.remove(), kind === "error" ? 7600 : 4100);
  }

  function explain(error) {
    return error && error.code && error.code !== "NETWORK" ? `${error.message} (${error.code})` : String(error.message || error);
  }

  // -- GraphQL over HTTP ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, code, extensions) {
      super(message);
      this.code = code;
      this.extensions = extensions || {};
    }
  }

  function fromGraphQLError(error) {
    const ext = (error && error.extensions) || {};
    return new ApiError((error && error.message) || "unknown error", ext.code || "ERROR", ext);
  }

  async function gql(query, variables) {
    const headers = { "content-type": "application/json", accept: "application/json" };
    const user = actorName();
    if (user) headers["X-Jobledger-User"] = user;
    let response;
    try {
      response = await fetch(ENDPOINT, { method: "POST", headers, body: JSON.stringify({ query, variables: variables || {} }) });
    } catch {
      throw new ApiError("The server cannot be reached right now (is it restarting?). Try again in a moment.", "NETWORK");
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`The server answered ${response.status} ${response.statusText}.`, "HTTP");
    }
    if (body.errors && body.errors.length) {
      const error = fromGraphQLError(body.errors[0]);
      // the session ended (signed out elsewhere, revoked, expired): back to the sign-in form
      if (error.code === "UNAUTHENTICATED" && account.ready) showSignIn("ended");
      throw error;
    }
    return body.data;
  }

  // -- GraphQL over a websocket (graphql-transport-ws), with reconnection ----------------

  class Live {
    constructor(url) {
      this.url = url;
      this.ws = null;
      this.acked = false;
      this.everAcked = false;
      this.attempt = 0;
      this.nextId = 1;
      this.subs = new Map();
      this.listeners = { state: new Set(), reconnected: new Set(), unauthenticated: new Set() };
      this.retryTimer = null;
      this.state = "connecting";
      window.addEventListener("online", () => this.retryNow());
      document.addEventListener("visibilitychange", () => {
        if (!document.hidden) this.retryNow();
      });
    }

    on(what, fn) {
      this.listeners[what].add(fn);
      return () => this.listeners[what].delete(fn);
    }

    setState(state, detail) {
      this.state = state;
      for (const fn of this.listeners.state) fn(state, detail);
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      let ws;
      try {
        ws = new WebSocket(this.url, "graphql-transport-ws");
      } catch {
        this.scheduleRetry();
        return;
      }
      this.ws = ws;
      this.acked = false;
      const ackTimeout = setTimeout(() => {
        if (this.ws === ws && !this.acked) ws.close(4408, "Connection initialisation timeout");
      }, 10000);
      ws.onopen = () => {
        const user = actorName();
        ws.send(JSON.stringify({ type: "connection_init", payload: user ? { "X-Jobledger-User": user } : {} }));
      };
      ws.onmessage = (event) => {
        if (this.ws !== ws) return;
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "connection_ack") clearTimeout(ackTimeout);
        this.receive(ws, message);
      };
      ws.onclose = () => {
        clearTimeout(ackTimeout);
        if (this.ws !== ws) return; // replaced on purpose
        this.ws = null;
        this.acked = false;
        this.scheduleRetry();
      };
    }

    receive(ws, message) {
      switch (message.type) {
        case "connection_ack": {
          this.acked = true;
          this.attempt = 0;
          this.setState("live");
          for (const sub of this.subs.values()) this.send(sub);
          if (this.everAcked) for (const fn of this.listeners.reconnected) fn();
          this.everAcked = true;
          break;
        }
        case "ping":
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "pong", payload: message.payload }));
          break;
        case "next": {
          const sub = this.subs.get(message.id);
          if (!sub) break;
          const payload = message.payload || {};
          if (payload.errors && payload.errors.length) this.failed(sub, fromGraphQLError(payload.errors[0]));
          else sub.next && sub.next(payload.data);
          break;
        }
        case "error": {
          const sub = this.subs.get(message.id);
          if (!sub) break;
          this.subs.delete(message.id);
          const first = Array.isArray(message.payload) ? message.payload[0] : message.payload;
          this.failed(sub, fromGraphQLError(first));
          break;
        }
        case "complete": {
          const sub = this.subs.get(message.id);
          if (!sub) break;
          this.subs.delete(message.id);
          sub.complete && sub.complete();
          break;
        }
        default:
          break;
      }
    }

    failed(sub, error) {
      if (error.code === "UNAUTHENTICATED") for (const fn of this.listeners.unauthenticated) fn(error);
      if (sub.error) sub.error(error);
    }

    /** Send a message if the connection is up; otherwise the next connection_ack resends what matters. */
    raw(message) {
      if (!this.ws || !this.acked || this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(JSON.stringify(message));
    }

    send(sub) {
      this.raw({ id: sub.id, type: "subscribe", payload: { query: sub.query, variables: sub.variables || {} } });
    }

    /** Returns a function that ends the subscription. Survives reconnections. */
    subscribe(query, variables, handlers) {
      const sub = { id: String(this.nextId++), query, variables, ...handlers };
      this.subs.set(sub.id, sub);
      this.send(sub);
      return () => {
        if (this.subs.delete(sub.id)) this.raw({ id: sub.id, type: "complete" });
      };
    }

    scheduleRetry() {
      this.attempt += 1;
      const base = Math.min(10000, 500 * 2 ** (this.attempt - 1));
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      this.setState("reconnecting", { delay, attempt: this.attempt });
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    retryNow() {
      if (this.state === "reconnecting" && this.retryTimer) this.connect();
    }

    /** Close the connection for good (signed out: nothing to follow until the next sign-in reloads the page). */
    stop() {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      const old = this.ws;
      this.ws = null;
      this.acked = false;
      this.subs.clear();
      if (old) old.close(1000, "signed out");
      this.setState("stopped");
    }

    /** Start over with a fresh connection_init (e.g. after the user renamed themselves). */
    restart() {
      const old = this.ws;
      this.ws = null;
      this.acked = false;
      if (old) old.close(1000, "restart");
      this.setState("connecting");
      this.connect();
    }
  }

  const live = new Live(WS_ENDPOINT);

  // -- queries ---------------------------------------------------------------------------

  // Fields newer than the contract (time left, reasons, a task's speed): asked for only when
  // the server's schema has them (`probeSchema`), so that an older server still answers.
  const OPTIONAL_FIELDS = {
    Job: ["timeLeft", "reason"],
    Task: ["timeLeft", "speed", "bytesDone", "elapsed", "reason"],
    JobProgress: ["timeLeft"],
  };
  const optional = { Job: [], Task: [], JobProgress: [] };
  const extra = (type) => optional[type].join(" ");

  const QUEUES = `query Queues {
    queues(first: 200, orderBy: [{field: "priority", order: DESC}, {field: "code"}]) { nodes {
      id code uri status state default priority executionMode maxConcurrency description group
      totalJobs activeJobs successfulJobs failedJobs
    } }
  }`;

  const JOB_EVENTS = `query JobEvents($id: ID!, $after: Long) {
    job(id: $id) { events(first: 500, after: $after) {
      nodes { position aggregateId aggregateType type actor timestamp data }
      pageInfo { hasNextPage }
    } }
  }`;

  let JOB_ROW, JOBS, JOB_UPDATED, TASK_FIELDS, JOB, JOB_WATCH, JOB_PROGRESS, UPDATE_JOB, UPDATE_TASKS;

  function buildQueries() {
    JOB_ROW = `fragment JobRow on Job {
      id code status phase priority progress speed etr size user modifier created modified finished ${extra("Job")}
      queue { id code group }
    }`;
    JOBS = `query Jobs($where: String, $phase: JobPhase, $after: String) {
      jobs(where: $where, phase: $phase, orderBy: [{field: "created", order: DESC}], first: 50, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } nodes { ...JobRow }
      }
    } ${JOB_ROW}`;
    JOB_UPDATED = `subscription JobUpdated($where: String) { jobUpdated(where: $where) { ...JobRow } } ${JOB_ROW}`;
    TASK_FIELDS = `id uri status priority source destination size progress attempts worker error finished time ${extra("Task")}`;
    JOB = `query Job($id: ID!) {
      job(id: $id) {
        ...JobRow source destination metadata
        tasks(first: 500) { totalCount nodes { ${TASK_FIELDS} } }
      }
    } ${JOB_ROW}`;
    JOB_WATCH = `subscription JobWatch($where: String) {
      jobUpdated(where: $where) { ...JobRow tasks(first: 500) { totalCount nodes { ${TASK_FIELDS} } } }
    } ${JOB_ROW}`;
    JOB_PROGRESS = `subscription JobProgress($id: ID!) { jobProgress(jobId: $id) { jobId status progress speed etr size ${extra("JobProgress")} } }`;
    UPDATE_JOB = `mutation UpdateJob($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ...JobRow } } ${JOB_ROW}`;
    UPDATE_TASKS = `mutation UpdateTasks($jobId: ID!, $tasks: [TaskUpdateInput!]!) {
      updateTasks(jobId: $jobId, tasks: $tasks) { ${TASK_FIELDS} }
    }`;
  }
  buildQueries();

  /** Which of OPTIONAL_FIELDS the server has; without an answer, none of them. */
  async function probeSchema() {
    const types = Object.keys(OPTIONAL_FIELDS);
    const query = `query Fields { ${types.map((t) => `${t}: __type(name: "${t}") { fields { name } }`).join(" ")} }`;
    try {
      const data = await gql(query);
      for (const type of types) {
        const known = new Set(((data[type] && data[type].fields) || []).map((f) => f.name));
        optional[type] = OPTIONAL_FIELDS[type].filter((name) => known.has(name));
      }
    } catch {
      /* an older server, or none: the contract's fields only */
    }
    buildQueries();
  }

  // -- routing -----------------------------------------------------------------------------

  const view = { cleanup: null };

  function parseRoute() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const job = /^\/job\/([^/]+)\/?$/.exec(path);
    if (job) return { name: "job", id: decodeURIComponent(job[1]), params };
    return { name: "home", params };
  }

  function route() {
    if (account.signedOut) return;
    if (view.cleanup) view.cleanup();
    view.cleanup = null;
    const root = $("#view");
    root.replaceChildren();
    const where = parseRoute();
    view.cleanup = where.name === "job" ? jobPage(root, where.id) : homePage(root, where.params);
    window.scrollTo(0, 0);
  }

  // -- the home page: queues, and jobs with a filter -----------------------------------------

  function homePage(root, params) {
    const state = {
      where: params.get("where") || "",
      phase: ["ACTIVE", "FINISHED", "ARCHIVED"].includes(params.get("phase")) ? params.get("phase") : "ACTIVE",
      rows: new Map(), // id -> {job, el}
      loading: false,
      buffered: [],
      endCursor: null,
      total: 0,
      seq: 0,
      failed: false,
      // With a filter, whether a job we do not show matches is the server's to say. These
      // remember, per job, the status/priority/queue it did not match with, so that mere
      // progress of other jobs does not make us ask again.
      unmatched: new Map(),
      asking: new Map(),
    };
    const signature = (job) => {
      const parts = [job.status, job.priority, job.queue && job.queue.id, job.phase];
      if (/\b(progress|speed|etr|size|modified)\b/i.test(state.where)) parts.push(job.progress, job.speed, job.etr, job.size, job.modified);
      return parts.join("|");
    };

    // queues panel
    const queueList = h("div", { class: "queue-grid", id: "queues" }, h("p", { class: "empty" }, "Loading queues…"));
    const queuesPanel = h(
      "section",
      { class: "panel queues-panel", "aria-labelledby": "queues-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "queues-title" }, "Queues")),
      queueList,
    );

    // jobs panel
    const filterInput = h("input", {
      id: "filter",
      type: "search",
      value: state.where,
      placeholder: "status=running AND priority>=500",
      spellcheck: "false",
      autocomplete: "off",
      autocapitalize: "off",
      "aria-describedby": "filter-help filter-error",
    });
    const phaseSelect = h(
      "select",
      { id: "phase", "aria-label": "Which jobs" },
      h("option", { value: "ACTIVE" }, "Active"),
      h("option", { value: "FINISHED" }, "Finished"),
      h("option", { value: "ARCHIVED" }, "Archived"),
    );
    phaseSelect.value = state.phase;
    const filterError = h("div", { id: "filter-error", class: "filter-error", role: "alert", hidden: true });
    const examples = ["status=running", "status=failed OR status=aborted", "priority>=500", "queue.code=default"].map((ex) =>
      h("button", { type: "button", class: "chip", onclick: () => applyFilter(ex) }, ex),
    );
    const filterForm = h(
      "form",
      { class: "filter", role: "search", onsubmit: (e) => (e.preventDefault(), applyFilter(filterInput.value)) },
      h("label", { for: "filter", class: "filter-label" }, "Filter"),
      h("div", { class: "filter-row" }, filterInput, phaseSelect, h("button", { type: "submit", class: "btn" }, "Apply")),
      filterError,
      h("p", { id: "filter-help", class: "hint" }, "Same language as the API's ", h("code", {}, "where"), ": ", examples),
    );
    const count = h("span", { class: "count", id: "jobs-count" });
    const jobList = h("ul", { class: "job-list", id: "jobs", "aria-live": "off" });
    const emptyNote = h("p", { class: "empty", hidden: true });
    const more = h("button", { class: "btn more", hidden: true, onclick: () => loadJobs(true) }, "Show more");
    const jobsPanel = h(
      "section",
      { class: "panel jobs-panel", "aria-labelledby": "jobs-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "jobs-title" }, "Jobs"), count),
      filterForm,
      jobList,
      emptyNote,
      more,
    );
    phaseSelect.addEventListener("change", () => applyFilter(filterInput.value));

    // Jobs come first in the page (and so first on a phone); on a wide screen the queues
    // and workers make a column on the left and the chart sits above the jobs.
    const activity = window.jobledger.activity;
    const workers = activity ? activity.workersPanel() : null;
    const chart = activity ? activity.throughputPanel() : null;
    root.append(
      h("h1", { class: "sr-only" }, "Jobs, queues and workers"),
      h("div", { class: "home" }, h("div", { class: "home-main" }, jobsPanel, chart && chart.el), h("div", { class: "home-side" }, queuesPanel, workers && workers.el)),
    );
    const refreshActivity = () => {
      if (workers) workers.refresh();
      if (chart) chart.refresh();
    };

    function applyFilter(text) {
      state.where = text.trim();
      state.phase = phaseSelect.value;
      filterInput.value = state.where;
      state.unmatched.clear();
      const query = new URLSearchParams();
      if (state.where) query.set("where", state.where);
      if (state.phase !== "ACTIVE") query.set("phase", state.phase);
      const hash = query.toString() ? `#/?${query}` : "#/";
      if (location.hash !== hash) history.replaceState(null, "", hash);
      loadJobs(false);
    }

    function showFilterError(error) {
      filterError.replaceChildren();
      if (!error) {
        filterError.hidden = true;
        filterInput.removeAttribute("aria-invalid");
        return;
      }
      filterInput.setAttribute("aria-invalid", "true");
      filterError.hidden = false;
      filterError.append(h("strong", {}, error.code === "VALIDATION" ? "This filter does not work: " : "Could not load jobs: "));
      filterError.append(h("span", { class: "message" }, error.message));
      const column = /column (\d+)/.exec(error.message);
      if (column && state.where) {
        // the expression around the column the server names, with a caret under it
        const at = Math.max(0, Math.min(Number(column[1]) - 1, state.where.length));
        const start = Math.max(0, at - 24);
        const end = Math.min(state.where.length, at + 12);
        const excerpt = `${start ? "…" : ""}${state.where.slice(start, end)}${end < state.where.length ? "…" : ""}`;
        const offset = at - start + (start ? 1 : 0);
        filterError.append(h("pre", { class: "caret", "aria-hidden": "true" }, `${excerpt}\n${" ".repeat(offset)}^`));
      }
    }

    // queues
    async function loadQueues() {
      try {
        const data = await gql(QUEUES);
        renderQueues(data.queues.nodes);
      } catch (error) {
        if (!queueList.querySelector(".queue")) queueList.replaceChildren(h("p", { class: "empty" }, explain(error)));
      }
    }
    const reloadQueues = debounce(loadQueues, 300);

    function renderQueues(unordered) {
      // highest priority first (the order work is handed out in), then by code
      const queues = unordered.slice().sort((a, b) => b.priority - a.priority || a.code.localeCompare(b.code));
      if (!queues.length) {
        queueList.replaceChildren(h("p", { class: "empty" }, "No queues yet."));
        return;
      }
      queueList.replaceChildren(
        ...queues.map((q) => {
          const stat = (label, value, cls) =>
            h("div", { class: `stat ${cls}` }, h("span", { class: "num", dataset: { count: cls } }, String(value)), h("span", { class: "lbl" }, label));
          const enabled = q.status === "WAITING";
          return h(
            "article",
            { class: `queue ${enabled ? "" : "disabled"}`, dataset: { queue: q.code, priority: q.priority } },
            h(
              "div",
              { class: "queue-head" },
              h(
                "button",
                { type: "button", class: "queue-code linklike", title: `Show the jobs of ${q.uri}`, onclick: () => applyFilter(`queue.code=${q.code}`) },
                q.uri || q.code,
              ),
              q.default ? h("span", { class: "tag" }, "default") : null,
              h(
                "span",
                { class: `state ${enabled ? "ok" : "warn"}`, title: enabled ? "Its jobs are handed out to workers" : "Its jobs are held: no task is handed out" },
                q.status,
              ),
              q.state === "SEALED" ? h("span", { class: "state muted", title: "Takes no new jobs" }, "SEALED") : null,
            ),
            h(
              "div",
              { class: "stats" },
              stat("total", q.totalJobs, "total"),
              stat("active", q.activeJobs, "active"),
              stat("done", q.successfulJobs, "successful"),
              stat("failed", q.failedJobs, "failed"),
            ),
            h(
              "p",
              { class: "queue-meta" },
              h("span", { class: "queue-group", title: `Owned by group ${q.group}: its members see this queue's jobs` }, "group ", h("strong", {}, q.group)),
              ` · priority ${q.priority} · ${q.executionMode} order`,
              q.maxConcurrency != null ? ` · at most ${q.maxConcurrency} at once` : "",
            ),
            q.description ? h("p", { class: "queue-desc" }, q.description) : null,
          );
        }),
      );
    }

    // jobs
    function jobRow(job) {
      const el = h(
        "li",
        { class: "job", dataset: { jobId: job.id } },
        h("div", { class: "job-head" }, h("a", { class: "job-code", href: `#/job/${encodeURIComponent(job.id)}` }), h("span", { class: "status-slot" })),
        h("div", { class: "job-progress" }, progressBar(), h("span", { class: "pct" })),
        h("div", { class: "job-meta" }),
      );
      renderJobRow(el, job);
      return el;
    }

    function renderJobRow(el, job) {
      el.dataset.status = job.status;
      $(".job-code", el).textContent = job.code;
      $(".job-code", el).title = job.id;
      $(".status-slot", el).replaceChildren(statusBadge(job.status));
      setProgress($(".bar", el), job.progress, job.status);
      $(".pct", el).textContent = `${job.progress}%`;
      const speed = FINISHED.has(job.status) ? null : fmt.speed(job.speed);
      const left = FINISHED.has(job.status) ? null : timeLeft(job);
      fill($(".job-meta", el), 
        ...[
          h("span", { class: "meta-queue" }, job.queue ? job.queue.code : ""),
          h("span", {}, `prio ${job.priority}`),
          speed ? h("span", { class: "speed" }, speed) : null,
          left ? h("span", { class: "etr" }, `${left} left`) : null,
          fmt.bytes(job.size) ? h("span", { class: "size" }, fmt.bytes(job.size)) : null,
          h("span", { class: "when" }, job.modifier || job.user ? `${job.modifier || job.user}, ` : "", ago(job.modified)),
        ].filter(Boolean),
        job.reason ? h("p", { class: "reason" }, job.reason) : null,
      );
    }

    function place(el, job) {
      // newest first, by creation time
      for (const other of jobList.children) {
        const row = state.rows.get(other.dataset.jobId);
        if (row && row.job.created < job.created) {
          jobList.insertBefore(el, other);
          return;
        }
      }
      jobList.append(el);
    }

    function upsert(job, flash) {
      const row = state.rows.get(job.id);
      if (row) {
        if (row.job.modified > job.modified) return; // an older answer than what we show
        row.job = job;
        renderJobRow(row.el, job);
        return;
      }
      const el = jobRow(job);
      state.rows.set(job.id, { job, el });
      place(el, job);
      if (flash) {
        el.classList.add("new");
        setTimeout(() => el.classList.remove("new"), 2000);
      }
      state.total += flash ? 1 : 0;
    }

    function remove(id) {
      const row = state.rows.get(id);
      if (!row) return;
      row.el.remove();
      state.rows.delete(id);
      state.total = Math.max(0, state.total - 1);
    }

    function renderCount() {
      const shown = state.rows.size;
      count.textContent = state.failed ? "" : state.total > shown ? `${shown} of ${state.total}` : String(shown);
      emptyNote.hidden = shown > 0 || state.failed || state.loading;
      emptyNote.textContent = state.where
        ? "No job matches this filter."
        : state.phase === "ACTIVE"
          ? "No active jobs. Submit one through the API and it shows up here."
          : `No ${state.phase.toLowerCase()} jobs.`;
    }

    async function loadJobs(append) {
      const seq = ++state.seq;
      state.loading = true;
      const asked = new Map(state.asking);
      state.asking.clear();
      if (!append) state.buffered = [];
      jobList.classList.add("loading");
      try {
        const data = await gql(JOBS, {
          where: state.where || null,
          phase: state.phase,
          after: append ? state.endCursor : null,
        });
        if (seq !== state.seq) return;
        showFilterError(null);
        state.failed = false;
        if (!append) {
          jobList.replaceChildren();
          state.rows.clear();
        }
        for (const job of data.jobs.nodes) upsert(job, false);
        if (!append) {
          for (const [id, sig] of asked) if (!state.rows.has(id)) state.unmatched.set(id, sig);
        }
        state.total = data.jobs.totalCount;
        state.endCursor = data.jobs.pageInfo.endCursor;
        more.hidden = !data.jobs.pageInfo.hasNextPage;
        state.loading = false;
        for (const job of state.buffered.splice(0)) onJobUpdated(job);
      } catch (error) {
        if (seq !== state.seq) return;
        state.loading = false;
        if (error.code === "NETWORK") {
          toast(explain(error), "error");
        } else {
          state.failed = true;
          jobList.replaceChildren();
          state.rows.clear();
          more.hidden = true;
          showFilterError(error);
        }
      } finally {
        if (seq === state.seq) {
          jobList.classList.remove("loading");
          renderCount();
        }
      }
    }
    const reloadJobs = debounce(() => loadJobs(false), 700);

    function onJobUpdated(job) {
      if (state.loading) {
        state.buffered.push(job);
        return;
      }
      const row = state.rows.get(job.id);
      const before = row && row.job; // upsert replaces row.job
      if (!before || before.status !== job.status || before.phase !== job.phase) reloadQueues();
      refreshActivity();
      if (state.failed) return;
      if (!state.where) {
        if (job.phase === state.phase) upsert(job, !before);
        else remove(job.id);
      } else if (before) {
        if (job.phase === state.phase) upsert(job, false);
        else remove(job.id);
        // whether it still matches is the server's to say
        if (before.status !== job.status || before.priority !== job.priority || before.queue.id !== job.queue.id) reloadJobs();
      } else if (state.unmatched.get(job.id) !== signature(job)) {
        state.asking.set(job.id, signature(job));
        reloadJobs(); // it may match the filter now
      }
      renderCount();
    }

    const unsubscribe = live.subscribe(JOB_UPDATED, {}, {
      next: (data) => onJobUpdated(data.jobUpdated),
      error: (error) => toast(`Live updates stopped: ${explain(error)}`, "error"),
    });
    const offReconnected = live.on("reconnected", () => {
      loadQueues();
      loadJobs(false);
    });

    loadQueues();
    loadJobs(false);
    document.title = "jobledger";

    return () => {
      unsubscribe();
      offReconnected();
      if (workers) workers.stop();
      if (chart) chart.stop();
      reloadQueues.cancel();
      reloadJobs.cancel();
      state.seq += 1;
    };
  }

  // -- a job's page ------------------------------------------------------------------------------

  // What an event says, as "<actor> <verb> [subject] [details]".
  const EVENT_VERBS = {
    "Job.Created": "created the job",
    "Job.StatusChanged": "changed the status",
    "Job.Updated": "changed",
    "Job.Moved": "moved the job to another queue",
    "Job.Deleted": "deleted the job",
    "Job.Retired": "moved the job off the active list",
    "Job.Archived": "archived the job",
    "Job.TasksAdded": "added",
    "Job.TaskStatusChanged": "noted task",
    "Job.TaskStatusesChanged": "noted tasks",
    "Task.Created": "created task",
    "Task.Claimed": "claimed task",
    "Task.LeaseRenewed": "reported progress on task",
    "Task.Completed": "completed task",
    "Task.AttemptFailed": "failed an attempt at task",
    "Task.LeaseExpired": "lost the lease on task",
    "Task.LeaseReleased": "gave back task",
    "Task.Retried": "retried task",
    "Task.Updated": "changed task",
    "Task.Excluded": "excluded task",
    "Task.Queued": "queued task",
    "Task.Done": "marked done task",
    "Task.Failed": "failed task",
    "Task.PutOnHold": "put on hold task",
    "Task.Pending": "set pending task",
    "Task.Booting": "booted task",
    "Task.Executing": "started executing task",
  };
  // Bookkeeping that repeats what other events say: shown with "all events" only.
  const QUIET_EVENTS = new Set(["Task.LeaseRenewed", "Job.TaskStatusChanged", "Job.TaskStatusesChanged"]);

  function jobPage(root, id) {
    const state = {
      job: null,
      tasks: new Map(), // id -> task
      events: [],
      lastPosition: 0,
      showAll: false,
      loadingEvents: false,
      eventsAgain: false,
      stopProgress: null,
      confirmingAbort: false,
      confirmingRerun: false,
      gone: false,
    };

    const back = h("a", { class: "back", href: "#/" }, "← All jobs");
    const title = h("h1", { class: "job-title" }, "Loading…");
    const statusSlot = h("span", { class: "status-slot", id: "job-status" });
    const bar = progressBar("big");
    const pct = h("span", { class: "pct big", id: "job-progress" });
    const liveNumbers = h("div", { class: "live-numbers" });
    const reasonNote = h("p", { class: "reason", id: "job-reason", hidden: true });
    const facts = h("dl", { class: "facts" });
    const actions = h("div", { class: "actions", role: "group", "aria-label": "Job actions" });
    const header = h(
      "section",
      { class: "panel job-header" },
      back,
      h("div", { class: "title-row" }, title, statusSlot),
      reasonNote,
      h("div", { class: "job-progress" }, bar, pct),
      liveNumbers,
      actions,
      facts,
    );
    const taskCount = h("span", { class: "count" });
    const taskList = h("ul", { class: "task-list", id: "tasks" });
    const tasksPanel = h("section", { class: "panel tasks-panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Tasks"), taskCount), taskList);
    const allToggle = h("input", {
      type: "checkbox",
      id: "show-all-events",
      onchange: () => {
        state.showAll = allToggle.checked;
        renderEvents();
      },
    });
    const eventList = h("ol", { class: "event-list", id: "events", reversed: true });
    const eventsPanel = h(
      "section",
      { class: "panel events-panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "History"),
        h("label", { class: "toggle", title: "Also show heartbeats and the job's own notes of task changes" }, allToggle, " all events"),
      ),
      h("p", { class: "hint" }, "Who did what, when, newest first."),
      eventList,
    );
    root.append(h("div", { class: "job-page" }, header, h("div", { class: "job-columns" }, tasksPanel, eventsPanel)));

    // -- rendering

    function renderHeader() {
      const job = state.job;
      title.textContent = job.code;
      title.title = job.id;
      document.title = `${job.code} · jobledger`;
      statusSlot.replaceChildren(statusBadge(job.status));
      reasonNote.textContent = job.reason || "";
      reasonNote.hidden = !job.reason;
      renderProgress(job);
      fill(facts, 
        ...[
          ["Queue", h("a", { href: `#/?where=${encodeURIComponent(`queue.code=${job.queue.code}`)}` }, job.queue.code)],
          ["Priority", String(job.priority)],
          ["Submitted by", job.user || "—"],
          ["Last changed by", job.modifier || "—"],
          ["Created", h("span", {}, fmt.full(job.created), " (", ago(job.created), ")")],
          job.finished ? ["Finished", fmt.full(job.finished)] : null,
          job.source ? ["Source", h("code", {}, job.source)] : null,
          job.destination ? ["Destination", h("code", {}, job.destination)] : null,
          ["Id", h("code", { class: "id" }, job.id)],
        ]
          .filter(Boolean)
          .flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      );
      renderActions();
    }

    function renderProgress(p) {
      setProgress(bar, p.progress, p.status);
      pct.textContent = `${p.progress}%`;
      const size = fmt.bytes(p.size);
      const sizeNote = h("span", { class: "size", id: "job-size" }, h("span", { class: "lbl" }, "size "), size || "unknown");
      if (FINISHED.has(p.status)) {
        const finished = state.job && state.job.finished;
        fill(liveNumbers, h("span", { class: "lbl" }, p.status, finished ? [" ", ago(finished)] : null), size ? sizeNote : null);
        return;
      }
      const running = p.status === "RUNNING";
      const speed = fmt.speed(p.speed);
      const left = timeLeft(p);
      fill(liveNumbers, 
        h("span", { class: "speed", id: "job-speed" }, h("span", { class: "lbl" }, "speed "), speed || (running ? "measuring…" : "not running")),
        h("span", { class: "etr", id: "job-etr" }, h("span", { class: "lbl" }, "time left "), left || (running ? "estimating…" : "—")),
        sizeNote,
      );
    }

    function actionButton(label, cls, enabled, onclick, hint) {
      return h("button", { type: "button", class: `btn ${cls}`, disabled: !enabled, title: hint || null, onclick, dataset: { action: cls.split(" ")[0] } }, label);
    }

    function renderActions() {
      const s = state.job.status;
      const allowed = mayChange(state.job);
      const why = allowed ? null : "Your role in this queue's group does not let you change this job";
      const buttons = [];
      buttons.push(
        actionButton("Pause", "pause", allowed && jobMay(s, "PAUSED"), () => setStatus("PAUSED", "paused"), why || (jobMay(s, "PAUSED") ? "Hand out none of its tasks until resumed" : `A ${s} job cannot be paused`)),
      );
      const finished = FINISHED.has(s);
      const resumable = (s === "PAUSED" || finished) && jobMay(s, "WAITING");
      const resumeHint = finished ? (s === "DONE" ? "Run every task again" : "Run its failed and unfinished tasks again") : s === "PAUSED" ? "Back to WAITING" : `Only a PAUSED or finished job can be resumed; this one is ${s}`;
      if (state.confirmingRerun) {
        buttons.push(
          h(
            "span",
            { class: "confirm", role: "group", "aria-label": "Confirm running again" },
            h("span", {}, "Run every task of this DONE job again?"),
            actionButton("Yes, run again", "rerun-confirm", true, () => {
              state.confirmingRerun = false;
              setStatus("WAITING", "set to run again");
            }),
            actionButton("Keep it", "rerun-cancel", true, () => {
              state.confirmingRerun = false;
              renderActions();
            }),
          ),
        );
      } else {
        buttons.push(
          actionButton(finished ? "Run again" : "Resume", "resume", allowed && resumable, () => {
            if (s !== "DONE") {
              setStatus("WAITING", finished ? "set to run again" : "resumed");
              return;
            }
            state.confirmingRerun = true; // everything it did is done again: ask first
            renderActions();
            $(".rerun-confirm", actions).focus();
          }, why || resumeHint),
        );
      }
      if (state.confirmingAbort) {
        buttons.push(
          h(
            "span",
            { class: "confirm", role: "group", "aria-label": "Confirm abort" },
            h("span", {}, "Abort this job?"),
            actionButton("Yes, abort", "abort-confirm danger", true, () => {
              state.confirmingAbort = false;
              setStatus("ABORTED", "aborted");
            }),
            actionButton("Keep it", "abort-cancel", true, () => {
              state.confirmingAbort = false;
              renderActions();
            }),
          ),
        );
      } else {
        // A finished job has nothing left to stop (the domain would let a FAILED one be
        // marked ABORTED, which changes nothing a user wants).
        const abortable = !finished && jobMay(s, "ABORTED");
        buttons.push(
          actionButton("Abort", "abort danger", allowed && abortable, () => {
            state.confirmingAbort = true;
            renderActions();
            $(".abort-confirm", actions).focus();
          }, why || (abortable ? "Stop it for good: no more of its tasks are handed out" : `A ${s} job has nothing left to abort`)),
        );
      }
      const priority = h("input", {
        type: "number",
        id: "priority",
        min: 0,
        max: 1000,
        step: 1,
        value: String(state.job.priority),
        "aria-label": "Priority (0 to 1000)",
        inputmode: "numeric",
      });
      const priorityForm = h(
        "form",
        {
          class: "priority-form",
          onsubmit: (e) => {
            e.preventDefault();
            const value = Number(priority.value);
            if (!Number.isInteger(value)) {
              toast("Priority is a whole number from 0 to 1000.", "error");
              return;
            }
            mutateJob({ priority: value }, `priority set to ${value}`);
          },
        },
        h("label", { for: "priority" }, "Priority"),
        priority,
        h("button", { type: "submit", class: "btn set-priority", disabled: !allowed, title: why }, "Set"),
      );
      priority.disabled = !allowed;
      actions.replaceChildren(h("div", { class: "buttons" }, buttons), priorityForm);
    }

    function taskItem(task) {
      const item = h("li", { class: "task", dataset: { taskId: task.id, status: task.status } });
      renderTask(item, task);
      return item;
    }

    function renderTask(item, task) {
      item.dataset.status = task.status;
      const excluded = task.status === "EXCLUDED";
      const allowed = !state.job || mayChange(state.job);
      const why = allowed ? null : "Your role in this queue's group does not let you change its tasks";
      // A DONE task's work is done: excluding it would only hide it (the domain allows it).
      const excludable = task.status !== "DONE" && taskMay(task.status, "EXCLUDED");
      const button = excluded
        ? h(
            "button",
            { type: "button", class: "btn small include", disabled: !(allowed && taskMay(task.status, "QUEUED")), title: why || "Run it again with the job", onclick: () => setTaskStatus(task, "QUEUED", "queued again") },
            "Include",
          )
        : h(
            "button",
            {
              type: "button",
              class: "btn small exclude",
              disabled: !(allowed && excludable),
              onclick: () => setTaskStatus(task, "EXCLUDED", "excluded"),
              title: why || (excludable ? "Skip this task; the job finishes without it" : `A ${task.status} task is finished: nothing to skip`),
            },
            "Exclude",
          );
      const taskBar = progressBar("small");
      setProgress(taskBar, task.progress, task.status);
      fill(item, 
        h("div", { class: "task-head" }, h("span", { class: "task-uri" }, `#${task.uri}`), statusBadge(task.status), h("span", { class: "spacer" }), button),
        h("div", { class: "task-source" }, h("code", {}, fmt.location(task.source))),
        h("div", { class: "task-progress" }, taskBar, h("span", { class: "pct" }, `${task.progress}%`)),
        h(
          "div",
          { class: "task-meta" },
          ...[
            task.attempts ? `attempt ${task.attempts}` : "not started",
            task.worker ? `on ${task.worker}` : null,
            fmt.bytes(task.size),
            ["BOOTING", "EXECUTING"].includes(task.status) ? fmt.speed(task.speed) : null,
            ["BOOTING", "EXECUTING"].includes(task.status) && timeLeft(task) ? `${timeLeft(task)} left` : null,
            fmt.ms(task.time),
            task.destination ? h("span", {}, "→ ", h("code", {}, fmt.location(task.destination))) : null,
          ]
            .filter(Boolean)
            .map((part) => h("span", {}, part)),
        ),
        task.reason ? h("p", { class: "reason" }, task.reason) : null,
        task.error ? h("pre", { class: "task-error" }, task.error) : null,
      );
    }

    function renderTasks(connection) {
      const incoming = connection.nodes;
      taskCount.textContent = connection.totalCount > incoming.length ? `${incoming.length} of ${connection.totalCount}` : String(incoming.length);
      if (!incoming.length) {
        taskList.replaceChildren(h("li", { class: "empty" }, "This job has no tasks."));
        state.tasks.clear();
        return;
      }
      const existing = new Map([...taskList.children].map((el) => [el.dataset.taskId, el]));
      const ordered = incoming.map((task) => {
        const before = state.tasks.get(task.id);
        let el = existing.get(task.id);
        if (!el) el = taskItem(task);
        else if (JSON.stringify(before) !== JSON.stringify(task)) renderTask(el, task);
        state.tasks.set(task.id, task);
        return el;
      });
      taskList.replaceChildren(...ordered);
    }

    function taskName(taskId) {
      const task = state.tasks.get(taskId);
      return task ? `#${task.uri}` : "?";
    }

    /** The subject (which task) and the details of an event, as nodes. */
    function summary(event) {
      const d = event.data || {};
      const subject = event.aggregateType === "Task" ? taskName(event.aggregateId) : event.type === "Job.TaskStatusChanged" ? taskName(d.task_id) : null;
      let details = null;
      if (d.previous && d.status) details = h("span", {}, statusBadge(d.previous), " → ", statusBadge(d.status));
      else if (event.type === "Job.TaskStatusChanged") details = h("span", {}, "→ ", statusBadge(d.status));
      else if (event.type === "Job.TaskStatusesChanged") {
        const count = Object.keys(d.statuses || {}).length;
        details = `${count} task${count === 1 ? "" : "s"} → ${[...new Set(Object.values(d.statuses || {}))].join(", ")}`;
      }
      else if (event.type === "Job.Created") details = `“${d.code}”`;
      else if (event.type === "Task.Created") details = h("code", {}, fmt.location(d.source));
      else if (event.type === "Job.TasksAdded") details = `${(d.tasks || []).length} task${(d.tasks || []).length === 1 ? "" : "s"}`;
      else if (event.type === "Task.Claimed") details = `for ${d.worker}`;
      else if (event.type === "Task.LeaseRenewed")
        details = [`${d.progress ?? 0}%`, fmt.speed(d.speed), fmt.bytes(d.bytes_done)].filter(Boolean).join(" · ");
      else if (event.type === "Task.Completed" && d.result) {
        const r = d.result;
        details = r.exit_code != null ? `exit code ${r.exit_code}` : r.bytes != null ? fmt.bytes(r.bytes) : null;
      } else if (d.error) details = h("span", { class: "err" }, String(d.error).split("\n")[0]);
      else if (d.changes)
        details = Object.entries(d.changes)
          .map(([k, v]) => `${k} → ${typeof v === "object" ? JSON.stringify(v) : v}`)
          .join(", ");
      if (!details && d.status && event.type.startsWith("Task.") && event.type !== "Task.Created") details = statusBadge(d.status);
      const parts = [];
      if (subject) parts.push(" ", h("span", { class: "subject" }, subject));
      if (details) parts.push(event.type === "Task.Claimed" || !subject ? " " : h("span", { class: "sep" }, " · "), details);
      return parts;
    }

    function renderEvents() {
      const shown = state.events.filter((e) => state.showAll || !QUIET_EVENTS.has(e.type));
      const items = shown
        .slice()
        .reverse()
        .map((event) => {
          const verb = EVENT_VERBS[event.type] || event.type;
          return h(
            "li",
            { class: "event", dataset: { position: event.position, type: event.type } },
            h("time", { class: "event-time", datetime: event.timestamp, title: fmt.full(event.timestamp) }, fmt.clock(event.timestamp)),
            h(
              "div",
              { class: "event-body" },
              h(
                "div",
                { class: "event-line" },
                event.actor ? h("span", { class: "actor" }, event.actor) : h("span", { class: "actor system", title: "no user: the service itself" }, "system"),
                " ",
                h("span", { class: "verb" }, verb),
                ...summary(event),
              ),
              h(
                "details",
                { class: "event-data" },
                h("summary", {}, `${event.type} · #${event.position}`),
                h("pre", {}, JSON.stringify(event.data, null, 2)),
              ),
            ),
          );
        });
      eventList.replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "No events yet.")]));
    }

    // -- loading

    async function load() {
      try {
        const data = await gql(JOB, { id });
        if (state.gone) return;
        if (!data.job) {
          root.replaceChildren(
            h("section", { class: "panel" }, back, h("h1", {}, "No such job"), h("p", {}, "There is no job with id ", h("code", {}, id), ". It may have been deleted.")),
          );
          stop();
          return;
        }
        state.job = data.job;
        renderTasks(data.job.tasks);
        renderHeader();
        await loadEvents();
        watchProgress();
      } catch (error) {
        if (state.gone) return;
        if (!state.job) title.textContent = "Could not load this job";
        toast(explain(error), "error");
      }
    }

    async function loadEvents() {
      if (state.loadingEvents) {
        state.eventsAgain = true;
        return;
      }
      state.loadingEvents = true;
      try {
        for (let pages = 0; pages < 20; pages += 1) {
          const data = await gql(JOB_EVENTS, { id, after: state.lastPosition });
          if (state.gone || !data.job) return;
          const { nodes, pageInfo } = data.job.events;
          for (const event of nodes) {
            if (event.position > state.lastPosition) {
              state.events.push(event);
              state.lastPosition = event.position;
            }
          }
          if (!pageInfo.hasNextPage || !nodes.length) break;
        }
        renderEvents();
      } catch (error) {
        if (!state.gone && error.code !== "NETWORK") toast(`History: ${explain(error)}`, "error");
      } finally {
        state.loadingEvents = false;
        if (state.eventsAgain && !state.gone) {
          state.eventsAgain = false;
          loadEvents();
        }
      }
    }
    const moreEvents = debounce(loadEvents, 150);

    function watchProgress() {
      if (state.stopProgress || !state.job || FINISHED.has(state.job.status)) return;
      state.stopProgress = live.subscribe(JOB_PROGRESS, { id }, {
        next: (data) => {
          const p = data.jobProgress;
          if (!state.job) return;
          Object.assign(state.job, { status: p.status, progress: p.progress, speed: p.speed, etr: p.etr, size: p.size });
          if ("timeLeft" in p) state.job.timeLeft = p.timeLeft;
          renderProgress(state.job);
          if (statusSlot.textContent !== p.status) {
            statusSlot.replaceChildren(statusBadge(p.status));
            renderActions();
          }
        },
        complete: () => {
          state.stopProgress = null;
        },
        error: () => {
          state.stopProgress = null;
        },
      });
    }

    const stopWatch = live.subscribe(JOB_WATCH, { where: `id="${id.replace(/"/g, "")}"` }, {
      next: (data) => {
        const job = data.jobUpdated;
        if (!job || job.id !== id || state.gone) return;
        const confirming = state.confirmingAbort;
        state.job = { ...state.job, ...job };
        state.confirmingAbort = confirming && !FINISHED.has(job.status);
        state.confirmingRerun = state.confirmingRerun && job.status === "DONE";
        renderTasks(job.tasks);
        renderHeader();
        moreEvents();
        watchProgress(); // e.g. resumed after finishing: follow progress again
      },
      error: (error) => toast(`Live updates stopped: ${explain(error)}`, "error"),
    });

    const offReconnected = live.on("reconnected", () => {
      if (state.stopProgress) {
        state.stopProgress();
        state.stopProgress = null;
      }
      load();
    });

    // -- actions

    async function mutateJob(input, done) {
      for (const button of actions.querySelectorAll("button")) button.disabled = true;
      try {
        const data = await gql(UPDATE_JOB, { id, input });
        state.job = { ...state.job, ...data.updateJob };
        toast(`${state.job.code}: ${done}.`, "ok");
        watchProgress();
      } catch (error) {
        toast(explain(error), "error");
      } finally {
        if (!state.gone && state.job) renderHeader();
        moreEvents();
      }
    }

    function setStatus(status, done) {
      return mutateJob({ status }, done);
    }

    async function setTaskStatus(task, status, done) {
      try {
        const data = await gql(UPDATE_TASKS, { jobId: id, tasks: [{ id: task.id, status }] });
        for (const changed of data.updateTasks) {
          state.tasks.set(changed.id, changed);
          const el = taskList.querySelector(`[data-task-id="${changed.id}"]`);
          if (el) renderTask(el, changed);
        }
        toast(`Task #${task.uri} ${done}.`, "ok");
      } catch (error) {
        toast(explain(error), "error");
      } finally {
        moreEvents();
      }
    }

    function stop() {
      state.gone = true;
      stopWatch();
      offReconnected();
      moreEvents.cancel();
      if (state.stopProgress) state.stopProgress();
      state.stopProgress = null;
    }

    load();
    return stop;
  }

  // -- signing in ---------------------------------------------------------------------------------

  const ME = `query Me { me { user siteAdmin auth groups { group role } } }`;

  const SIGN_IN_NOTES = {
    refused: () => [
      h("strong", {}, "Token refused."),
      " It may be mistyped, expired or revoked, and a sign-in link works only once: ask for a new token.",
    ],
    ended: () => [h("strong", {}, "You are signed out."), " Your session ended or was revoked: sign in again."],
  };

  /** The sign-in form, posted to the server (which sets the session cookie and sends us back here). */
  function signInPanel(note) {
    const text = SIGN_IN_NOTES[note] && SIGN_IN_NOTES[note]();
    return h(
      "section",
      { class: "panel signin", id: "signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in to jobledger"),
      text ? h("p", { class: "signin-note", id: `signin-${note}`, role: "alert" }, text) : null,
      h(
        "form",
        { class: "signin-form", method: "post", action: "signin" },
        h("label", { for: "token" }, "Token"),
        h(
          "div",
          { class: "signin-row" },
          h("input", {
            id: "token",
            name: "token",
            type: "password",
            required: true,
            autocomplete: "current-password",
            spellcheck: "false",
            autocapitalize: "off",
            placeholder: "jl_…",
            "aria-describedby": "signin-help",
          }),
          h("button", { type: "submit", class: "btn" }, "Sign in"),
        ),
      ),
      h(
        "div",
        { class: "hint", id: "signin-help" },
        h("p", {}, "Tokens are made on the server's machine by whoever runs it: ", h("code", {}, "jobledger token create --user NAME"), " prints one."),
        h(
          "p",
          {},
          "On its first start, ",
          h("code", {}, "jobledger serve"),
          " prints a sign-in link for the first admin (",
          h("code", {}, "http://HOST:PORT/signin?token=…"),
          "): open that link once instead, or paste the token from the token file it names.",
        ),
      ),
    );
  }

  /** Put the sign-in form in place of the page; `note`: "refused", "ended" or nothing. */
  function showSignIn(note) {
    if (account.signedOut) return;
    account.signedOut = true;
    if (view.cleanup) view.cleanup();
    view.cleanup = null;
    live.stop();
    $("#live-badge").hidden = true;
    $(".who").hidden = true;
    $("#account").hidden = true;
    $("#toasts").replaceChildren();
    document.title = "Sign in · jobledger";
    fill($("#view"), signInPanel(note));
    $("#token").focus();
  }

  /** Whether the server sent us back from a refused sign-in (`/?signin=refused`); the address
   * forgets it, so that reloading does not say it again. */
  function takeSignInRefusal() {
    const params = new URLSearchParams(location.search);
    if (params.get("signin") !== "refused") return false;
    params.delete("signin");
    const search = params.toString();
    history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
    return true;
  }

  /** `me`, or "signed out" (UNAUTHENTICATED), or null when it could not be asked (the server
   * is away, or older than `me`): then the page behaves as without authentication until
   * an answer says otherwise. */
  async function whoAmI() {
    try {
      return (await gql(ME)).me;
    } catch (error) {
      if (error.code === "UNAUTHENTICATED") return "signed out";
      return null;
    }
  }

  function setupAccount(me, refused) {
    account.auth = me ? me.auth : null;
    account.user = me ? me.user : null;
    account.siteAdmin = Boolean(me && me.siteAdmin);
    account.roles = new Map(((me && me.groups) || []).map((m) => [m.group, String(m.role).toLowerCase()]));
    if (account.auth !== true) return; // authentication off: the "You are" name, as ever
    $(".who").hidden = true;
    $("#account-user").textContent = me.user;
    const roles = me.groups.map((m) => `${m.role} of ${m.group}`);
    if (me.siteAdmin) roles.unshift("site admin");
    $("#account .signed-in").title = roles.length ? roles.join(", ") : "no group yet";
    $("#account").hidden = false;
    if (refused) toast(`That token was refused; you are still signed in as ${me.user}.`, "error");
  }

  // -- start ------------------------------------------------------------------------------------

  function setupIdentity() {
    const input = $("#user");
    input.value = identity.get();
    const mark = () => input.classList.toggle("unnamed", !identity.get());
    mark();
    const commit = () => {
      const name = input.value.trim();
      if (name === identity.get()) return;
      identity.set(name);
      mark();
      live.restart(); // the websocket names its user in connection_init
      toast(name ? `You are ${name}: your actions are recorded under this name.` : "You are anonymous now.", "ok");
    };
    input.addEventListener("change", commit);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        commit();
        input.blur();
      }
    });
  }

  function setupBadge() {
    const badge = $("#live-badge");
    live.on("state", (state, detail) => {
      badge.dataset.state = state;
      if (state === "live") {
        badge.textContent = "Live";
        badge.title = "Updates arrive as they happen";
      } else if (state === "reconnecting") {
        badge.textContent = "Reconnecting…";
        badge.title = `Lost the server; trying again in ${Math.ceil(detail.delay / 1000)} s (attempt ${detail.attempt})`;
      } else {
        badge.textContent = "Connecting…";
        badge.title = "";
      }
    });
  }

  // For activity.js (the workers and the throughput chart), loaded after this script.
  window.jobledger = { h, fill, gql, fmt, ago, statusBadge, explain };

  document.addEventListener("DOMContentLoaded", async () => {
    setupBadge();
    const refused = takeSignInRefusal();
    const me = await whoAmI();
    account.ready = true;
    if (me === "signed out") {
      showSignIn(refused ? "refused" : null);
      return;
    }
    setupAccount(me, refused);
    if (account.auth !== true) setupIdentity();
    live.on("unauthenticated", () => showSignIn("ended"));
    await probeSchema();
    live.connect();
    window.addEventListener("hashchange", route);
    route();
  });
})();

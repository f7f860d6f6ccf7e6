// reftag dashboard: live job progress, sortable tables and "try the model". Vanilla JS, no
// libraries. Every text the server did not render comes from the page's own i18n block.
"use strict";

const I18N = JSON.parse(document.getElementById("dashboard-i18n").textContent);
const LANG = document.documentElement.lang || "en";
const FINISHED = I18N.finished;  // the job statuses after which nothing changes
const POLL_MS = 1000;

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in values ? values[name] : ""));
}

// The page's CSRF token (a meta tag: no inline script runs under the pages' CSP), sent with every post.
function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

// --- times: the server writes UTC; show the reader's own clock ------------------------------------

document.querySelectorAll("time[datetime]").forEach((node) => {
  const moment = new Date(node.getAttribute("datetime"));
  if (Number.isNaN(moment.getTime())) return;
  const pad = (n) => String(n).padStart(2, "0");
  let text = `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ` +
    `${pad(moment.getHours())}:${pad(moment.getMinutes())}`;
  if (node.dataset.seconds) text += `:${pad(moment.getSeconds())}`;
  node.title = node.textContent; // the UTC time, on hover
  node.textContent = text;
});

// --- live progress ------------------------------------------------------------------------------

function showProgress(block, job) {
  const p = job.progress;
  const percent = p.total ? (100 * p.done) / p.total : job.status === I18N.succeeded ? 100 : 0;
  const bar = block.querySelector(".progress");
  bar.className = "progress status-" + job.status;
  bar.setAttribute("aria-valuenow", Math.floor(percent));
  block.querySelector(".progress-fill").style.width = percent.toFixed(1) + "%";
  block.querySelector(".progress-percent").textContent = Math.floor(percent) + "%";
  block.querySelector(".progress-counts").textContent =
    fill(I18N.done_of, { done: formatCount(p.done), total: formatCount(p.total) });
  const failed = block.querySelector(".progress-failed");
  failed.textContent = fill(I18N.failed_n, { n: formatCount(p.failed) });
  failed.classList.toggle("hidden", !p.failed);
  // The job's status badge: in the same table row, or the page heading.
  const row = block.closest("tr");
  const badge = (row && row.querySelector(".job-status .badge")) || document.querySelector("#job-status .badge");
  if (badge) {
    badge.className = "badge status-" + job.status;
    badge.dataset.status = job.status;
    badge.textContent = I18N.status[job.status] || job.status;
  }
  const loss = document.querySelector(".live-loss");
  if (loss && job.detail && typeof job.detail.loss === "number") loss.textContent = job.detail.loss.toFixed(4);
}

function follow(block) {
  const url = block.dataset.progressUrl;
  const tick = async () => {
    let job;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(response.status);
      job = await response.json();
    } catch (e) {
      setTimeout(tick, POLL_MS * 3); // the server restarting or busy: keep trying, more slowly
      return;
    }
    showProgress(block, job);
    if (!FINISHED.includes(job.status)) {
      setTimeout(tick, POLL_MS);
    } else if (block.dataset.reloadOnFinish) {
      setTimeout(() => window.location.reload(), 400); // show the results table
    }
  };
  setTimeout(tick, POLL_MS);
}

document.querySelectorAll("[data-progress-url]").forEach(follow);

// --- sortable tables ------------------------------------------------------------------------------
// Text columns sort with the page language's collation: Intl.Collator("zh-CN") orders by pinyin,
// "zh-TW" by stroke count, as readers of each expect; the server keeps each label set's own order.

const collator = new Intl.Collator(LANG, { numeric: true, sensitivity: "base" });

function cellValue(row, index, kind) {
  const cell = row.children[index];
  const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  if (kind === "number") {
    const n = parseFloat(raw);
    return Number.isNaN(n) ? -Infinity : n;
  }
  return raw;
}

document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th[data-sort]").forEach((th) => {
    th.addEventListener("click", () => {
      const index = Array.from(th.parentNode.children).indexOf(th);
      const kind = th.dataset.sort;
      const ascending = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach((other) => other.classList.remove("asc", "desc"));
      th.classList.add(ascending ? "asc" : "desc");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, index, kind), y = cellValue(b, index, kind);
        const order = kind === "number" ? x - y : collator.compare(x, y);
        return ascending ? order : -order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
});

// --- try the model --------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scoreBar(value, strong) {
  const wrap = element("span");
  const bar = element("span", "score-bar" + (strong ? " strong" : ""));
  const fillEl = element("span", "score-fill");
  fillEl.style.width = (100 * value).toFixed(1) + "%";
  bar.appendChild(fillEl);
  wrap.appendChild(bar);
  wrap.appendChild(element("span", "num", value.toFixed(3)));
  return wrap;
}

const SPAN_COLOURS = 8; // the stylesheet's span-c0 … span-c7, as the server's pages colour a type

// A text with its spans marked, as the job page shows them (api/ui/dashboard.py, span_pieces): the
// offsets count Python characters (code points), so the text is cut as an array of code points,
// never by UTF-16 units (an emoji is two of those). Every piece goes in as text, never as HTML.
function highlighted(text, spans, types) {
  const box = element("div", "try-text");
  const chars = Array.from(text);
  let at = 0;
  spans.forEach((span) => {
    if (!(at <= span.start && span.start < span.end && span.end <= chars.length)) return;
    const colour = "span-c" + (Math.max(0, types.indexOf(span.label)) % SPAN_COLOURS);
    box.appendChild(document.createTextNode(chars.slice(at, span.start).join("")));
    const mark = element("mark", "span " + colour, chars.slice(span.start, span.end).join(""));
    mark.dataset.label = span.label;
    mark.title = `${span.label} ${span.score.toFixed(2)}`;
    box.appendChild(mark);
    box.appendChild(element("small", "span-tag " + colour, span.label));
    at = span.end;
  });
  box.appendChild(document.createTextNode(chars.slice(at).join("")));
  return box;
}

function showPredictions(target, texts, results, types) {
  target.replaceChildren();
  results.forEach((result, i) => {
    const box = element("div", "try-result");
    box.appendChild(Array.isArray(result.spans) ? highlighted(texts[i], result.spans, types)
      : element("div", "try-text", texts[i]));
    const labels = element("div");
    result.labels.forEach((name) => labels.appendChild(element("span", "chip predicted try-label", name)));
    if (result.needs_review) labels.appendChild(element("span", "badge review-badge", I18N.needs_review));
    box.appendChild(labels);
    const ranked = Object.entries(result.scores).sort((a, b) => b[1] - a[1]).slice(0, 5);
    const grid = element("div", "try-scores");
    ranked.forEach(([name, value], rank) => {
      grid.appendChild(element("span", "", name));
      grid.appendChild(scoreBar(value, rank === 0));
    });
    box.appendChild(grid);
    target.appendChild(box);
  });
}

const tryForm = document.getElementById("try-form");
if (tryForm) {
  tryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("try-submit");
    const errorBox = document.getElementById("try-error");
    const output = document.getElementById("try-results");
    const texts = document.getElementById("try-texts").value.split("\n").map((s) => s.trim()).filter(Boolean)
      .slice(0, Number(tryForm.dataset.max));
    errorBox.classList.add("hidden");
    if (!texts.length) return;
    button.disabled = true;
    button.textContent = I18N.working;
    try {
      const response = await fetch(tryForm.dataset.url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({
          label_set_id: document.getElementById("try-label-set").value,
          items: texts.map((text) => ({ text })),
        }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
      const chosen = document.getElementById("try-label-set").selectedOptions[0];
      showPredictions(output, texts, body.results, JSON.parse(chosen.dataset.types || "[]"));
    } catch (e) {
      errorBox.textContent = e.message;
      errorBox.classList.remove("hidden");
    } finally {
      button.disabled = false;
      button.textContent = I18N.submit;
    }
  });
}

// --- review: one result at a time; 1–9 pick a label, Enter accepts, → skips ----------------------

const reviewBox = document.getElementById("review");
if (reviewBox) {
  const words = JSON.parse(document.getElementById("review-i18n").textContent);
  const first = JSON.parse(document.getElementById("review-data").textContent);
  const multi = reviewBox.dataset.multi === "true";
  const buttons = Array.from(reviewBox.querySelectorAll(".review-label"));
  const state = { items: first.items, at: 0, cursor: first.next_cursor, done: 0, total: first.remaining, picked: [] };

  const percent = (x) => (100 * x).toFixed(0) + "%";

  function showCount() {
    document.getElementById("review-count").textContent =
      fill(words.reviewed_of, { done: formatCount(state.done), total: formatCount(state.total) });
    const share = state.total ? state.done / state.total : 1;
    document.getElementById("review-fill").style.width = (100 * share).toFixed(1) + "%";
    reviewBox.querySelector(".progress").setAttribute("aria-valuenow", Math.floor(100 * share));
  }

  function showPicked() {
    buttons.forEach((b) => b.classList.toggle("picked", state.picked.includes(b.dataset.label)));
  }

  function current() {
    return state.items[state.at];
  }

  async function more() {
    if (state.at < state.items.length || !state.cursor) return;
    const url = new URL(reviewBox.dataset.itemsUrl, window.location.href);
    url.searchParams.set("cursor", state.cursor);
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json();
    state.items = body.items;
    state.at = 0;
    state.cursor = body.next_cursor;
  }

  async function show() {
    await more();
    const item = current();
    document.getElementById("review-item").classList.toggle("hidden", !item);
    document.getElementById("review-done").classList.toggle("hidden", Boolean(item));
    showCount();
    if (!item) return;
    document.getElementById("review-text").textContent = item.text;
    document.getElementById("review-model").textContent = item.labels.join(", ");
    document.getElementById("review-confidence").textContent = item.confidence == null ? "–" : percent(item.confidence);
    buttons.forEach((b) => {
      const score = item.scores[b.dataset.label];
      b.querySelector(".review-label-score").textContent = score == null ? "" : percent(score);
    });
    state.picked = item.labels.slice();
    showPicked();
  }

  function pick(index) {
    const button = buttons[index];
    if (!button || !current()) return;
    const name = button.dataset.label;
    if (!multi) state.picked = [name];
    else if (state.picked.includes(name)) state.picked = state.picked.filter((n) => n !== name);
    else state.picked = state.picked.concat([name]);
    showPicked();
  }

  async function accept() {
    const item = current();
    const errorBox = document.getElementById("review-error");
    if (!item) return;
    errorBox.classList.add("hidden");
    const body = multi ? { labels: state.picked } : { label: state.picked[0] };
    const response = await fetch(reviewBox.dataset.submitUrl.replace("__ITEM__", encodeURIComponent(item.item_id)), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      errorBox.textContent = (answer.error && answer.error.message) || response.statusText;
      errorBox.classList.remove("hidden");
      return;
    }
    state.done += 1;
    state.at += 1;
    await show();
  }

  async function skip() {
    if (!current()) return;
    state.at += 1;
    state.total = Math.max(state.done, state.total - 1);
    await show();
  }

  buttons.forEach((b, i) => b.addEventListener("click", () => pick(i)));
  document.getElementById("review-accept").addEventListener("click", accept);
  document.getElementById("review-skip").addEventListener("click", skip);
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[1-9]$/.test(event.key)) pick(Number(event.key) - 1);
    else if (event.key === "Enter") { event.preventDefault(); accept(); }
    else if (event.key === "ArrowRight") skip();
    else return;
  });
  show();
}

// --- audit: accept a finding's fix or keep the label ----------------------------------------------

const auditBox = document.getElementById("audit");
if (auditBox && document.getElementById("findings")) {
  const words = JSON.parse(document.getElementById("audit-i18n").textContent);
  const errorBox = document.getElementById("audit-error");

  async function decide(row, decision) {
    errorBox.classList.add("hidden");
    const url = auditBox.dataset.submitUrl.replace("__EXAMPLE__", encodeURIComponent(row.dataset.exampleId));
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify({ decision }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      errorBox.textContent = (answer.error && answer.error.message) || response.statusText;
      errorBox.classList.remove("hidden");
      return;
    }
    row.classList.add("decided");
    row.querySelector(".decision").textContent = words[answer.finding.decision] || answer.finding.decision;
  }

  auditBox.querySelectorAll(".finding-row").forEach((row) => {
    row.querySelectorAll("button[data-decision]").forEach((button) =>
      button.addEventListener("click", () => decide(row, button.dataset.decision)));
  });
}

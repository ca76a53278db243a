// The p4r-search page: one form over the same /v1 endpoints as any client. No framework, no build step.
// Every string from the service goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "p4r-api-key";
const titles = new Map(); // item id -> title, from hits and item cards
let lastUser = null; // the user fields of the last recommend request, reused by explain

// el("p", {class: "x", "data-testid": "y"}, "text", child, ...): an element; strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// What went wrong, in words: the field and reason of a 422, the message of a 404 or 503.
function describe(status, body, headers) {
  const detail = body && body.detail;
  let text = typeof detail === "string" ? detail : "";
  if (Array.isArray(detail)) {
    text = detail.map((d) => {
      const where = (d.loc || []).filter((p) => p !== "body").join(".");
      return (where ? where + ": " : "") + String(d.msg).replace(/^Value error, /, "");
    }).join("; ");
  }
  const kind = { 401: "API key needed", 404: "Not found", 413: "Too large", 422: "Invalid request",
    503: "Service unavailable" }[status] || `Error ${status}`;
  const retry = status === 503 && headers.get("Retry-After") ? ` (try again in ${headers.get("Retry-After")} s)` : "";
  return `${kind}: ${text || "no details"}${retry}`;
}

async function api(path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method: body === undefined ? "GET" : "POST", headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "Could not reach the service: " + e.message);
  }
  const data = await response.json().catch(() => null);
  if (response.ok) return data;
  if (response.status === 401) $("api-key-form").hidden = false;
  throw new ApiError(response.status, describe(response.status, data, response.headers));
}

function showError(error) {
  $("error").textContent = error ? error.message : "";
  $("error").hidden = !error;
}

const num = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "–");
const share = (support) => `${Math.round(support * 100)}% share`;

// The form as a request: only the options that act (the service refuses idle ones with 422).
function userFields() {
  const fields = {};
  if ($("user").value) fields.user_id = $("user").value;
  if ($("text").value.trim()) fields.text = $("text").value.trim();
  return fields;
}

function request() {
  const body = { ...userFields(), k: Number($("k").value), mode: $("mode").value };
  const keywords = $("keywords").value.trim();
  if (keywords) {
    body.keywords = keywords;
    body.persona_weight = Number($("persona_weight").value);
    body.keyword_weight = Number($("keyword_weight").value);
    if (body.mode === "knn") body.fusion = $("fusion").value;
  }
  if (body.mode === "rescore") body.window = Number($("window").value);
  const filters = {};
  for (const part of $("filters").value.split(/[;\n]/)) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    const values = part.slice(at + 1).split(",").map((v) => v.trim()).filter(Boolean);
    const field = part.slice(0, at).trim();
    if (field && values.length) filters[field] = (filters[field] || []).concat(values);
  }
  if (Object.keys(filters).length) body.filters = filters;
  return body;
}

// Show the fusion, weight and window inputs only where they act.
function syncOptions() {
  const keywords = Boolean($("keywords").value.trim());
  const mode = $("mode").value;
  const shown = { keywords, hybrid: keywords && mode === "knn", rescore: mode === "rescore" };
  for (const label of document.querySelectorAll("[data-when]")) label.hidden = !shown[label.dataset.when];
}

function evidenceList(evidence) {
  return el("ul", { class: "evidence" }, evidence.map((e) =>
    el("li", { "data-testid": "evidence" }, el("q", {}, e.text), " ", el("small", { class: "muted" }, e.review_id))));
}

function personaBlock(persona, testid) {
  return el("div", { class: "persona", "data-testid": testid },
    el("strong", { "data-testid": "persona-name" }, persona.name), " ",
    el("span", { class: "share", "data-testid": "persona-share", title: "share of the item's reviews" },
      share(persona.support)),
    el("p", { "data-testid": "persona-description" }, persona.description));
}

function scoreList(scores) {
  return el("dl", { class: "scores", "data-testid": "scores" }, Object.entries(scores).map(([name, value]) =>
    el("div", { "data-testid": `score-${name}` }, el("dt", {}, name), el("dd", {}, num(value)))));
}

function hitItem(hit) {
  titles.set(hit.item_id, hit.title);
  const open = el("button", { type: "button", class: "link", "data-testid": "hit-open" }, hit.title);
  open.addEventListener("click", () => openItem(hit.item_id));
  return el("li", { class: "card hit", "data-testid": "hit", "data-item-id": hit.item_id },
    el("div", { class: "hit-head" }, open, el("span", { class: "muted" }, ` #${hit.item_id} · score ${num(hit.score)}`)),
    hit.persona ? personaBlock(hit.persona, "hit-persona") : el("p", { class: "muted" }, "no persona explains it"),
    evidenceList(hit.evidence || []), scoreList(hit.scores || {}));
}

async function recommend(event) {
  if (event) event.preventDefault();
  const body = request();
  showError(null);
  $("submit").disabled = true;
  try {
    const answer = await api("/v1/recommend", body);
    lastUser = userFields();
    $("results").replaceChildren(...answer.hits.map(hitItem));
    const parts = [`${answer.hits.length} items`, `${answer.took_ms} ms`, `generation ${answer.generation ?? "–"}`];
    if (answer.history.length) parts.push(`profile from ${answer.history.length} history items`);
    if (answer.skipped.history.length) parts.push(`skipped (not indexed): ${answer.skipped.history.join(", ")}`);
    parts.push(...answer.why_empty);
    $("summary").textContent = parts.join(" · ");
  } catch (error) {
    $("results").replaceChildren();
    $("summary").textContent = "";
    showError(error);
  } finally {
    $("submit").disabled = false;
  }
}

async function titleOf(id) {
  if (!titles.has(id)) {
    try { titles.set(id, (await api(`/v1/items/${encodeURIComponent(id)}`)).title); } catch { return null; }
  }
  return titles.get(id);
}

async function explainSection(itemId) {
  if (!lastUser || !Object.keys(lastUser).length) return null;
  const x = await api("/v1/explain", { ...lastUser, item_id: itemId });
  const who = lastUser.user_id || "this text";
  const rank = x.in_history ? "already in the history (not ranked)"
    : x.rank ? `rank ${x.rank} of ${x.catalog_size - x.seen} unseen items` : "below the first 1,000";
  const ranked = [...x.persona_scores].sort((a, b) => b.cosine - a.cosine);
  const names = await Promise.all(x.contributions.map((c) => titleOf(c.item_id)));
  return el("section", { "data-testid": "explain" },
    el("h3", {}, `Why for ${who}`), el("p", { class: "muted", "data-testid": "explain-rank" }, rank),
    el("h4", {}, "Personas by cosine to the profile"),
    el("ol", { class: "ranked" }, ranked.map((p) => el("li", { "data-testid": "persona-score" },
      el("strong", {}, p.persona.name), ` · cosine ${num(p.cosine)} · ${share(p.persona.support)}`))),
    x.contributions.length ? el("h4", {}, `History items that pulled up “${x.hit.persona?.name ?? "it"}”`) : null,
    x.contributions.length ? el("table", { class: "contrib", "data-testid": "contributions" },
      el("thead", {}, el("tr", {}, el("th", {}, "history item"), el("th", {}, "recency × cosine"), el("th", {}, "pull"))),
      el("tbody", {}, x.contributions.map((c, i) => el("tr", { "data-testid": "contribution", "data-item-id": c.item_id },
        el("td", {}, names[i] ? `${names[i]} ` : "", el("small", { class: "muted" }, `#${c.item_id}`)),
        el("td", {}, `${num(c.recency_weight, 2)} × ${num(c.cosine_to_persona)}`),
        el("td", {}, num(c.recency_weight * c.cosine_to_persona))))))
      : el("p", { class: "muted" }, "No history: the text alone made the profile."));
}

async function openItem(itemId) {
  const detail = $("detail");
  detail.hidden = false;
  detail.replaceChildren(el("p", { class: "muted" }, `loading item ${itemId}…`));
  const close = el("button", { type: "button", class: "close", "data-testid": "detail-close", "aria-label": "close" }, "×");
  close.addEventListener("click", () => {
    detail.hidden = true;
    document.querySelector(`[data-testid=hit][data-item-id="${CSS.escape(itemId)}"]`)?.scrollIntoView();
  });
  try {
    const [card, why] = await Promise.all([api(`/v1/items/${encodeURIComponent(itemId)}`),
      explainSection(itemId).catch((e) => el("p", { class: "error", "data-testid": "explain-error" }, e.message))]);
    titles.set(card.item_id, card.title);
    detail.replaceChildren(close, el("h2", { "data-testid": "detail-title" }, card.title),
      el("p", { class: "muted" }, `#${card.item_id} · ${card.personas.length} personas`),
      why, el("h3", {}, "All its personas"),
      el("ul", { class: "personas" }, card.personas.map((p) => el("li", { "data-testid": "item-persona" },
        personaBlock(p.persona, "item-persona-head"),
        el("p", { class: "muted rationale" }, p.persona.rationale), evidenceList(p.evidence)))));
  } catch (error) {
    detail.replaceChildren(close, el("p", { class: "error", "data-testid": "detail-error" }, error.message));
  }
  detail.scrollIntoView({ block: "start", behavior: "instant" });
}

async function loadIndexAndUsers() {
  try {
    const info = await api("/v1/index");
    const parts = [`model ${info.model ?? "–"}`, `${info.items} items`,
      `${info.personas ?? "–"} personas (${info.persona_vector ?? "–"})`, `generation ${info.generation ?? "–"}`,
      `${info.engine} ${info.index}`];
    if (info.reload_error) parts.push(`newest generation not opened: ${info.reload_error}`);
    $("index-info").textContent = parts.join(" · ");
    const users = await api("/v1/users?limit=1000");
    const select = $("user");
    select.replaceChildren(select.options[0], ...users.map((u) =>
      el("option", { value: u.user_id, "data-count": u.interactions }, `${u.user_id} (${u.interactions})`)));
    $("api-key-form").hidden = true;
    showError(null);
  } catch (error) {
    $("index-info").textContent = "index info unavailable";
    showError(error);
  }
}

function showUserCount() {
  const option = $("user").selectedOptions[0];
  $("user-count").textContent = option && option.value ? `${option.dataset.count} interactions in the history` : "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("query").addEventListener("submit", recommend);
  $("keywords").addEventListener("input", syncOptions);
  $("mode").addEventListener("change", syncOptions);
  $("user").addEventListener("change", showUserCount);
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    loadIndexAndUsers();
  });
  syncOptions();
  loadIndexAndUsers().then(() => document.body.setAttribute("data-ready", "true"));
});

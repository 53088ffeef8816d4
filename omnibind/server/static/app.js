// omnibind search page: text or file queries against /v1/search, results as a grid, a viewer for one
// result (full image / player / note, its path, a download link), clear states for an unreachable
// server and an empty collection, keyboard navigation. Nothing inline (the CSP forbids it).
"use strict";

const $ = (sel) => document.querySelector(sel);
const results = $("#results");
const status = $("#status");
const queryLine = $("#query-line");
const noteLine = $("#note");
const viewer = $("#viewer");
let lastQuery = null; // {text} or {file}
let hits = []; // the rendered results
let current = -1; // the result shown in the viewer
let server = { up: null, collection: null, items: null }; // from /healthz, then the chosen collection's listing
let chosen = null; // the collection picked in the header (null: the server's default)
let retry = null; // the health poll while the server is unreachable

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function modalities() {
  return [...document.querySelectorAll(".chip")]
    .filter((c) => c.getAttribute("aria-pressed") === "true")
    .map((c) => c.dataset.modality);
}

// -- the server's state: up, unreachable, empty ----------------------------------------------------

function ingestHint(name) {
  return el("span", { class: "hint" }, "Add files with ",
            el("code", {}, `omnibind ingest FOLDER -c ${name || "NAME"}`), " and search again.");
}

function showOffline() {
  server.up = false;
  document.body.classList.add("offline");
  status.replaceChildren(el("span", { class: "error" }, "server unreachable"));
  queryLine.replaceChildren(el("span", { class: "error" },
    `Cannot reach the omnibind server at ${location.host}. Is `), el("code", {}, "omnibind serve"),
    el("span", { class: "error" }, " still running? Retrying every 5 s…"));
  results.replaceChildren();
  noteLine.hidden = true;
  if (!retry) retry = setInterval(health, 5000);
}

function showEmpty() {
  results.replaceChildren(el("li", { class: "empty" },
    el("strong", {}, `The collection “${server.collection}” is empty.`), " ", ingestHint(server.collection)));
}

async function health() {
  let h;
  try {
    const r = await fetch("/healthz", { cache: "no-store" });
    h = await r.json();
    if (!r.ok) throw new Error(h.error || `HTTP ${r.status}`);
  } catch (e) {
    showOffline();
    return false;
  }
  const wasDown = server.up === false;
  server = { up: true, collection: h.collection, items: h.items };
  if (retry) { clearInterval(retry); retry = null; }
  document.body.classList.remove("offline");
  server.space = h.space;
  if (chosen && chosen !== h.collection) await pickCollection(chosen);
  else showStatus();
  if (Array.isArray(h.served) && h.served.length > 1) fillPicker(h.served);
  if (server.items === 0) showEmpty();
  else if (wasDown) { queryLine.textContent = "The server is back."; if (lastQuery) search(lastQuery); }
  return true;
}

function showStatus() {
  const count = server.items === 0 ? "empty" : `${server.items} items`;
  status.textContent = `collection “${server.collection}” · ${count}${server.space ? ` · space ${server.space}` : ""}`;
}

// -- several collections: the picker lists what the server serves (GET /v1/collections) -----------

function fillPicker(names) {
  const select = $("#collection");
  if (select.options.length === names.length) return;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  select.value = chosen || server.collection;
  $("#collection-pick").hidden = false;
}

async function pickCollection(name) {
  try {
    const r = await fetch("/v1/collections", { cache: "no-store" });
    const listing = await r.json();
    const entry = (listing.collections || []).find((c) => c.name === name);
    chosen = name;
    server.collection = name;
    server.items = entry ? entry.items : null;
  } catch (e) { /* keep what the status line says */ }
  showStatus();
}

$("#collection").addEventListener("change", async (ev) => {
  await pickCollection(ev.target.value);
  if (server.items === 0) showEmpty();
  else if (lastQuery && !lastQuery.like) search(lastQuery);
  else { results.replaceChildren(); queryLine.textContent = ""; }
});

// -- match and filters: the same fields as `omnibind search --mode --tag --after --before --path-glob`

function options() {
  const out = { mode: $("#mode").value };
  const tags = $("#f-tag").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) out.tags = tags;
  if ($("#f-after").value) out.after = $("#f-after").value;
  if ($("#f-before").value) out.before = $("#f-before").value;
  if ($("#f-glob").value.trim()) out.path_glob = $("#f-glob").value.trim();
  if (chosen) out.collection = chosen;
  return out;
}

function filtersOn() {
  const o = options();
  return Boolean(o.tags || o.after || o.before || o.path_glob);
}

$("#f-clear").addEventListener("click", () => {
  for (const id of ["#f-tag", "#f-after", "#f-before", "#f-glob"]) $(id).value = "";
  $("#mode").value = "hybrid";
  if (lastQuery) search(lastQuery);
});
for (const id of ["#mode", "#f-after", "#f-before"]) {
  $(id).addEventListener("change", () => { if (lastQuery) search(lastQuery); });
}
for (const id of ["#f-tag", "#f-glob"]) {
  $(id).addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); if (lastQuery) search(lastQuery); }
  });
}

// -- scores --------------------------------------------------------------------------------------

function hasStrength(hit) { return typeof hit.strength === "number" && isFinite(hit.strength); }

function strengthWord(s, word) { return word || (s >= 0.75 ? "strong" : s >= 0.4 ? "fair" : "weak"); } // the server sends `match` (search.strength_word)

function scoreText(hit) {
  if (hasStrength(hit)) return `${strengthWord(hit.strength, hit.match)} match`;
  if (hit.score_kind === "probability") return `${(100 * hit.score).toFixed(1)}% match`;
  if (hit.score_kind === "bm25") return "words match";
  if (hit.score_kind === "z") return `z ${hit.score.toFixed(2)}`;
  return `cos ${hit.cosine.toFixed(3)}`;
}

function scoreShare(hit, best) {
  if (hasStrength(hit)) return Math.min(1, Math.max(0.02, hit.strength));
  if (hit.score_kind === "probability") return Math.max(0.02, hit.score);
  return best > 0 ? Math.max(0.02, hit.score / best) : 0.02;
}

function scoreTitle(hit) {
  const parts = [];
  if (hit.keyword_score) parts.push(`words matched (BM25 ${hit.keyword_score.toFixed(2)})`);
  if (hasStrength(hit)) parts.push(`strength ${hit.strength.toFixed(2)}`);
  if (typeof hit.score === "number") parts.push(`${hit.score_kind || "score"} ${hit.score.toFixed(3)}`);
  if (typeof hit.cosine === "number" && hit.score_kind !== "cosine") parts.push(`cosine ${hit.cosine.toFixed(3)}`);
  return parts.join(" · ");
}

// -- the grid ------------------------------------------------------------------------------------

function fileName(hit) { return (hit.source || hit.id).split("/").pop(); }

// The moment a hit matched: media start playing there (a W3C media fragment, #t=start,end).
function fragment(hit, offset = 0) {
  const seg = hit.segment;
  if (!seg || seg.start === null || seg.start === undefined) return "";
  const end = seg.end ? "," + Math.max(0, seg.end - offset).toFixed(2) : "";
  return `#t=${Math.max(0, seg.start - offset).toFixed(2)}${end}`;
}

// Where in the item the match is, and the words that matched: "12:31–12:45 · “…the mitochondria…”".
function segmentLine(hit) {
  const seg = hit.segment;
  if (!seg) return null;
  const shown = ["text", "document"].includes(hit.modality); // the card already shows these words
  const words = seg.text && !shown ? `“${seg.text.replace(/\s+/g, " ").slice(0, 160)}”` : "";
  const where = seg.location || seg.kind;
  return el("div", { class: "segment", title: seg.kind }, el("span", { class: "where" }, where), " ", words);
}

function mediaFor(hit) {
  const box = el("div", { class: "media" });
  const name = fileName(hit);
  if (hit.modality === "image") {
    box.append(el("img", { src: hit.links.thumbnail || hit.links.media, alt: name, loading: "lazy" }));
  } else if (hit.modality === "video") {
    box.classList.add("video");
    if (hit.links.thumbnail) box.append(el("img", { class: "poster", src: hit.links.thumbnail, alt: name, loading: "lazy" }));
    box.append(el("span", { class: "play", "aria-hidden": "true" }, "▶"));
  } else if (hit.modality === "audio") {
    const seconds = hit.duration ? `${hit.duration.toFixed(1)} s` : "";
    box.classList.add("sound");
    const audio = el("audio", { src: hit.links.media + fragment(hit), controls: "", preload: "none", "aria-label": name });
    audio.addEventListener("error", () => audio.replaceWith(el("div", { class: "dur" }, "open to play")));
    box.append(el("div", { class: "wave", "aria-hidden": "true" }, "♪"), el("div", { class: "dur" }, seconds), audio);
  } else {
    const words = hit.segment && hit.segment.text ? hit.segment.text : hit.text || "";
    box.append(el("div", { class: "note" }, words.slice(0, 260)));
  }
  return box;
}

function likeButton(hit) {
  const b = el("button", { type: "button", class: "like", title: "Search with this item as the query",
                           "aria-label": `More like ${fileName(hit)}` }, "More like this");
  b.addEventListener("click", (ev) => { ev.stopPropagation(); search({ like: hit.id, name: fileName(hit) }); });
  return b;
}

function card(hit, i, best) {
  const fill = el("span");
  fill.style.width = `${(100 * scoreShare(hit, best)).toFixed(0)}%`; // CSSOM, not a style attribute: the CSP allows no inline styles
  const open = el("button", { type: "button", class: "name open", title: hit.source || hit.id,
                              "aria-label": `Open result ${i + 1}: ${fileName(hit)}` }, `${i + 1}. ${fileName(hit)}`);
  const meta = el("div", { class: "meta" }, open,
    el("div", { class: "row" }, el("span", { class: `badge ${hit.modality}` }, hit.modality),
       el("span", { class: "score", title: scoreTitle(hit) }, scoreText(hit))),
    el("div", { class: "bar", title: scoreTitle(hit) }, fill), segmentLine(hit),
    hit.keyword_score ? el("div", { class: "segment", title: scoreTitle(hit) }, "✓ the words match") : null,
    likeButton(hit));
  const li = el("li", { class: "card", "data-modality": hit.modality, "data-index": String(i) }, mediaFor(hit), meta);
  li.addEventListener("click", (ev) => {
    if (ev.target.closest("audio, a")) return; // their own controls
    openViewer(i);
  });
  return li;
}

function render(data) {
  results.replaceChildren();
  hits = data.results || [];
  noteLine.hidden = !data.note;
  noteLine.textContent = data.note || "";
  if (!hits.length) {
    if (server.items === 0) { showEmpty(); return; }
    const off = document.querySelectorAll('.chip[aria-pressed="false"]').length;
    results.append(el("li", { class: "empty" }, "No results.",
      off ? " Some kinds of items are switched off above." : filtersOn() ? " Filters are on: loosen or clear them."
        : " Try other words, or a file.",
      server.items ? ` (${server.items} items in “${server.collection}”.)` : ""));
    return;
  }
  const best = Math.max(...hits.map((h) => h.score));
  hits.forEach((hit, i) => results.append(card(hit, i, best)));
}

// -- searching -----------------------------------------------------------------------------------

async function post(query, wanted) {
  const extra = options();
  if (query.file) {
    const form = new FormData();
    form.append("file", query.file);
    form.append("k", "24");
    form.append("modality", wanted.join(","));
    for (const [key, value] of Object.entries(extra)) {
      if (key === "mode" && value === "text") continue; // a file has no words: its meaning is searched
      form.append(key, Array.isArray(value) ? value.join(",") : value);
    }
    return fetch("/v1/search", { method: "POST", body: form });
  }
  const body = { k: 24, modality: wanted.join(","), ...extra };
  if (query.like) { body.like = query.like; delete body.mode; } else body.text = query.text;
  return fetch("/v1/search", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

async function search(query) {
  lastQuery = query;
  const wanted = modalities();
  if (!wanted.length) {
    queryLine.textContent = "Pick at least one kind of item.";
    results.replaceChildren();
    return;
  }
  queryLine.textContent = "Searching…";
  let response;
  try {
    response = await post(query, wanted);
  } catch (e) { // no answer at all: the server is down or the network is
    showOffline();
    return;
  }
  try {
    const data = await response.json().catch(() => ({ error: `the server answered HTTP ${response.status}` }));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    const what = query.file ? `the file “${query.file.name}”` : query.like ? `items like “${query.name}”` : `“${query.text}”`;
    queryLine.textContent = `${data.results.length} results for ${what}`;
    render(data);
  } catch (e) {
    queryLine.replaceChildren(el("span", { class: "error" }, `Search failed: ${e.message}`));
    results.replaceChildren();
  }
}

// -- the viewer ----------------------------------------------------------------------------------

function message(text, link) {
  const line = $("#viewer-message");
  line.hidden = !text;
  line.replaceChildren(...(text ? [text] : []));
  if (link) line.append(" — ", el("a", { href: link, download: "" }, "download"));
}

function cannotPlay(stage, hit, reason, poster) {
  const img = poster || hit.links.thumbnail;
  stage.replaceChildren(img ? el("img", { class: "full", src: img, alt: fileName(hit) }) : el("div", { class: "no-preview" }, "▶"));
  message(`Cannot play here${reason ? ` (${reason})` : ""}`, hit.links.media);
}

async function showPlayer(stage, hit) {
  const tag = hit.modality === "video" ? "video" : "audio";
  const start = hit.segment && hit.segment.start ? hit.segment.start : 0;
  let info;
  try {
    const r = await fetch(`${hit.links.media.replace(/\/media$/, "/playback")}?start=${start}`);
    info = await r.json();
    if (!r.ok) throw new Error(info.error || `HTTP ${r.status}`);
  } catch (e) {
    cannotPlay(stage, hit, e.message);
    return;
  }
  if (hits[current] !== hit) return; // moved on meanwhile
  if (!info.src) { cannotPlay(stage, hit, info.reason, info.poster); return; }
  const player = el(tag, { class: "full", controls: "", preload: "metadata", src: info.src + fragment(hit, info.preview_start),
                           "aria-label": fileName(hit) });
  if (info.poster) player.setAttribute("poster", info.poster);
  player.addEventListener("error", () => cannotPlay(stage, hit, player.error && player.error.message, info.poster));
  stage.replaceChildren(player);
  if (!info.playable) {
    const from = info.preview_start, to = from + (info.preview_seconds || 0);
    message(`${info.reason}: playing a converted preview of ${clock(from)}–${clock(to)}.`, hit.links.media);
    player.addEventListener("loadeddata", () => $("#viewer-message").classList.add("done"), { once: true });
  }
}

function clock(s) { return `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`; }

async function showNote(stage, hit) {
  const pre = el("pre", { class: "full note-full" }, hit.text || (hit.segment && hit.segment.text) || "");
  stage.replaceChildren(pre);
  try {
    const r = await fetch(hit.links.media);
    if (r.ok && hits[current] === hit) pre.textContent = (await r.text()).slice(0, 200000);
  } catch (e) { /* keep the stored words */ }
}

function fillViewer(hit) {
  const stage = $("#viewer-stage");
  message("");
  $("#viewer-message").classList.remove("done");
  $("#viewer-title").textContent = `${current + 1}. ${fileName(hit)}`;
  $("#viewer-path").textContent = hit.source || hit.id;
  const download = $("#viewer-download");
  download.href = hit.links.media;
  download.setAttribute("download", fileName(hit));
  const detail = [hit.modality, hasStrength(hit) ? scoreText(hit) : "", scoreTitle(hit)];
  if (hit.duration) detail.push(`${hit.duration.toFixed(1)} s`);
  if (hit.segment) detail.push(`matched at ${hit.segment.location || hit.segment.kind}`);
  $("#viewer-detail").textContent = detail.filter(Boolean).join(" · ");
  $("#viewer-prev").disabled = current <= 0;
  $("#viewer-next").disabled = current >= hits.length - 1;
  if (hit.modality === "image") {
    const img = el("img", { class: "full", src: hit.links.media, alt: fileName(hit) });
    img.addEventListener("error", () => cannotPlay(stage, hit, "this browser cannot show this image"));
    stage.replaceChildren(img);
  } else if (hit.modality === "video" || hit.modality === "audio") {
    stage.replaceChildren(el("div", { class: "loading" }, "Loading…"));
    showPlayer(stage, hit);
  } else if (hit.modality === "text") {
    showNote(stage, hit);
  } else {
    const words = (hit.segment && hit.segment.text) || hit.text || "";
    stage.replaceChildren(el("pre", { class: "full note-full" }, words));
  }
}

function openViewer(i) {
  if (i < 0 || i >= hits.length) return;
  current = i;
  fillViewer(hits[i]);
  if (!viewer.open) viewer.showModal();
  $("#viewer-close").focus();
}

function closeViewer() {
  $("#viewer-stage").replaceChildren(); // stops playback
  if (viewer.open) viewer.close();
}

viewer.addEventListener("close", () => {
  $("#viewer-stage").replaceChildren();
  const back = results.querySelector(`.card[data-index="${current}"] .open`);
  if (back) back.focus();
});
viewer.addEventListener("click", (ev) => { if (ev.target === viewer) closeViewer(); }); // the backdrop
viewer.addEventListener("keydown", (ev) => {
  if (ev.target.closest("video, audio, a") && ev.key.startsWith("Arrow")) return; // seeking, not paging
  if (ev.key === "ArrowRight") { ev.preventDefault(); openViewer(current + 1); }
  if (ev.key === "ArrowLeft") { ev.preventDefault(); openViewer(current - 1); }
});
$("#viewer-close").addEventListener("click", closeViewer);
$("#viewer-like").addEventListener("click", () => {
  const hit = hits[current];
  closeViewer();
  if (hit) search({ like: hit.id, name: fileName(hit) });
});
$("#viewer-prev").addEventListener("click", () => openViewer(current - 1));
$("#viewer-next").addEventListener("click", () => openViewer(current + 1));

// -- keyboard in the grid: arrows move between results, Enter opens (the name is a button) ----------

function columns() {
  const cards = [...results.querySelectorAll(".card")];
  if (!cards.length) return 1;
  const top = cards[0].offsetTop;
  return Math.max(1, cards.filter((c) => c.offsetTop === top).length);
}

results.addEventListener("keydown", (ev) => {
  const li = ev.target.closest(".card");
  if (!li || !ev.target.classList.contains("open")) return;
  const i = Number(li.dataset.index);
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns(),
                 Home: -i, End: hits.length - 1 - i }[ev.key];
  if (step === undefined) return;
  ev.preventDefault();
  const next = Math.min(hits.length - 1, Math.max(0, i + step));
  const target = results.querySelector(`.card[data-index="${next}"] .open`);
  if (target) target.focus();
});

// -- the form, the drop zone, the chips --------------------------------------------------------------

$("#search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("#q").value.trim();
  if (text) search({ text });
});

const drop = $("#drop");
const fileInput = $("#file");
drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); fileInput.click(); }
});
fileInput.addEventListener("change", () => { if (fileInput.files[0]) search({ file: fileInput.files[0] }); });
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const file = ev.dataTransfer.files[0];
  if (file) search({ file });
});

document.querySelectorAll(".chip").forEach((chip) => {
  chip.addEventListener("click", () => {
    chip.setAttribute("aria-pressed", chip.getAttribute("aria-pressed") === "true" ? "false" : "true");
    if (lastQuery) search(lastQuery);
  });
});

health();

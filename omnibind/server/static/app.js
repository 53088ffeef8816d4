// omnibind search page: text or file queries against /v1/search, results as a grid.
"use strict";

const $ = (sel) => document.querySelector(sel);
const results = $("#results");
const status = $("#status");
const queryLine = $("#query-line");
let lastQuery = null; // {text} or {file}

function modalities() {
  return [...document.querySelectorAll(".chip")]
    .filter((c) => c.getAttribute("aria-pressed") === "true")
    .map((c) => c.dataset.modality);
}

async function health() {
  try {
    const r = await fetch("/healthz");
    const h = await r.json();
    status.textContent = `collection “${h.collection}” · ${h.items} items · space ${h.space}`;
  } catch (e) {
    status.textContent = "server unreachable";
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function scoreText(hit) {
  if (hit.score_kind === "probability") return `${(100 * hit.score).toFixed(1)}% match`;
  if (hit.score_kind === "z") return `z ${hit.score.toFixed(2)}`;
  return `cos ${hit.cosine.toFixed(3)}`;
}

function scoreShare(hit, best) {
  if (hit.score_kind === "probability") return Math.max(0.02, hit.score);
  return best > 0 ? Math.max(0.02, hit.score / best) : 0.02;
}

// The moment a hit matched: media start playing there (a W3C media fragment, #t=start,end).
function mediaSrc(hit) {
  const seg = hit.segment;
  if (!seg || seg.start === null || seg.start === undefined) return hit.links.media;
  return `${hit.links.media}#t=${seg.start.toFixed(2)}${seg.end ? "," + seg.end.toFixed(2) : ""}`;
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
  const name = (hit.source || hit.id).split("/").pop();
  if (hit.modality === "image") {
    box.append(el("img", { src: hit.links.thumbnail, alt: name, loading: "lazy" }));
  } else if (hit.modality === "video") {
    box.append(el("video", { src: mediaSrc(hit), poster: hit.links.thumbnail, controls: "", preload: "metadata",
                             "aria-label": name }));
  } else if (hit.modality === "audio") {
    const seconds = hit.duration ? `${hit.duration.toFixed(1)} s` : "";
    box.classList.add("sound");
    box.append(el("div", { class: "wave", "aria-hidden": "true" }, "♪"), el("div", { class: "dur" }, seconds),
               el("audio", { src: mediaSrc(hit), controls: "", preload: "none", "aria-label": name }));
  } else {
    const words = hit.segment && hit.segment.text ? hit.segment.text : hit.text || "";
    box.append(el("div", { class: "note" }, words.slice(0, 260)));
  }
  return box;
}

function render(data) {
  results.replaceChildren();
  const hits = data.results || [];
  if (!hits.length) {
    results.append(el("li", { class: "empty" }, "No results."));
    return;
  }
  const best = Math.max(...hits.map((h) => h.score));
  hits.forEach((hit, i) => {
    const name = (hit.source || hit.id).split("/").pop();
    const fill = el("span");
    fill.style.width = `${(100 * scoreShare(hit, best)).toFixed(0)}%`; // CSSOM, not a style attribute: the CSP allows no inline styles
    const bar = el("div", { class: "bar" }, fill);
    const meta = el("div", { class: "meta" },
      el("div", { class: "name", title: hit.source || hit.id }, `${i + 1}. ${name}`),
      el("div", { class: "row" }, el("span", { class: `badge ${hit.modality}` }, hit.modality),
         el("span", { class: "score" }, scoreText(hit))),
      bar);
    const where = segmentLine(hit);
    if (where) meta.append(where);
    results.append(el("li", { class: "card", "data-modality": hit.modality }, mediaFor(hit), meta));
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
    if (query.file) {
      const form = new FormData();
      form.append("file", query.file);
      form.append("k", "24");
      form.append("modality", wanted.join(","));
      response = await fetch("/v1/search", { method: "POST", body: form });
    } else {
      response = await fetch("/v1/search", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: query.text, k: 24, modality: wanted.join(",") }),
      });
    }
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    const what = query.file ? `the file “${query.file.name}”` : `“${query.text}”`;
    queryLine.textContent = `${data.results.length} results for ${what}`;
    render(data);
  } catch (e) {
    queryLine.replaceChildren(el("span", { class: "error" }, `Search failed: ${e.message}`));
    results.replaceChildren();
  }
}

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

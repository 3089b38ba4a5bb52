// The page of `rcml-st serve`: plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { mode: "id", key: sessionStorage.getItem("rcml-st-key") || "", relations: [] };

function headers() {
  return state.key ? { "X-API-Key": state.key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) {
    $("#key-label").hidden = false;
    $("#api-key").focus();
  }
  if (!response.ok) {
    throw new Error((body && body.error) || `HTTP ${response.status}`);
  }
  return body;
}

function setStatus(text, error = false) {
  const status = $("#status");
  status.textContent = text;
  status.className = error ? "error" : "";
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Images come from the API; with an API key they are fetched with the header and shown from a blob.
function image(url, alt) {
  if (!url) return el("div", { class: "noimg", text: "no image" });
  const img = el("img", { alt: alt, loading: "lazy" });
  if (!state.key) {
    img.src = url;
  } else {
    fetch(url, { headers: headers() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.replaceWith(el("div", { class: "noimg", text: "no image" })); });
  }
  return img;
}

function card(item, score) {
  const meta = el("div", { class: "meta" }, [
    el("div", { class: "id", text: item.id }),
    el("div", { class: "text", text: item.text || "(image only)" }),
  ]);
  if (score !== undefined) meta.prepend(el("div", { class: "score", text: score.toFixed(3) }));
  const node = el("div", { class: "card", "data-id": item.id, title: `search with ${item.id}` }, [
    image(item.image, item.text || item.id),
    meta,
  ]);
  node.addEventListener("click", () => queryById(item.id));
  return node;
}

function chosenRelations() {
  return [...document.querySelectorAll("#relations input:checked")].map((box) => box.value);
}

async function loadRelations() {
  const params = new URLSearchParams(location.search);
  const wanted = params.getAll("relation");
  const body = await api("/api/relations");
  state.relations = body.relations.map((r) => r.relation);
  const box = $("#relations");
  box.querySelectorAll("label").forEach((node) => node.remove());
  for (const { relation, points } of body.relations) {
    const input = el("input", { type: "checkbox", value: relation });
    input.checked = wanted.length === 0 || wanted.includes(relation);
    input.addEventListener("change", () => rerun());
    box.append(el("label", { title: `${points} points` }, [input, ` ${relation}`]));
  }
  setStatus(`collection ${body.collection}: ${body.relations.length} relations`);
}

let lastQuery = null;

function rerun() {
  if (lastQuery) lastQuery();
}

function searchParams() {
  const params = new URLSearchParams();
  for (const relation of chosenRelations()) params.append("relation", relation);
  params.set("limit", $("#limit").value || "8");
  params.set("modality", $("#modality").value);
  return params;
}

function showResults(body) {
  const results = $("#results");
  results.replaceChildren();
  for (const { relation, hits } of body.results) {
    const column = el("section", { class: "relation", "data-relation": relation }, [el("h2", { text: relation })]);
    for (const hit of hits) column.append(card(hit, hit.score));
    if (hits.length === 0) column.append(el("p", { text: "no results" }));
    results.append(column);
  }
}

function showQuery(label, node) {
  $("#query").replaceChildren(el("span", { class: "label", text: label }), node);
}

function remember(params) {
  const url = new URL(location.href);
  url.search = params.toString();
  history.replaceState(null, "", url);
}

async function run(describe, call) {
  lastQuery = () => run(describe, call);
  if (chosenRelations().length === 0) {
    setStatus("tick at least one relation", true);
    return null;
  }
  setStatus(`searching ${describe}...`);
  try {
    const body = await call();
    showResults(body);
    setStatus(`${describe}: ${body.results.length} relations, ${body.modality} vectors`);
    return body;
  } catch (error) {
    setStatus(error.message, true);
    return null;
  }
}

function queryById(id) {
  setMode("id");
  $("#id-input").value = id;
  $("#suggestions").hidden = true;
  run(`item ${id}`, async () => {
    const params = searchParams();
    params.set("id", id);
    const body = await api(`/api/search?${params}`);
    remember(new URLSearchParams({ id }));
    showQuery("query item", card(body.query.item));
    return body;
  });
}

function queryByText(text) {
  run(`text "${text}"`, async () => {
    const params = searchParams();
    params.set("text", text);
    const body = await api(`/api/search?${params}`);
    remember(new URLSearchParams({ text }));
    showQuery("query text", el("strong", { text: `"${text}"` }));
    return body;
  });
}

function queryByImage(file) {
  run(`photo ${file.name}`, async () => {
    const form = new FormData();
    form.append("image", file);
    const params = searchParams();
    for (const relation of params.getAll("relation")) form.append("relation", relation);
    form.append("limit", params.get("limit"));
    form.append("modality", params.get("modality"));
    const body = await api("/api/search", { method: "POST", body: form });
    const preview = el("img", { alt: file.name, class: "preview" });
    preview.src = URL.createObjectURL(file);
    preview.style.height = "96px";
    showQuery("query photo", preview);
    return body;
  });
}

function setMode(mode) {
  state.mode = mode;
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
  document.querySelectorAll("#query-form .mode").forEach((m) => { m.hidden = m.dataset.mode !== mode; });
  $("#go").hidden = mode === "image";
}

let suggestTimer = null;

async function suggest() {
  const words = $("#id-input").value.trim();
  const list = $("#suggestions");
  try {
    const body = await api(`/api/items?limit=12&contains=${encodeURIComponent(words)}`);
    list.replaceChildren(...body.items.map((item) => {
      const entry = el("li", { "data-id": item.id }, [
        image(item.image, item.id), el("span", { text: `${item.id} ${item.text || ""}` }),
      ]);
      entry.addEventListener("mousedown", (event) => { event.preventDefault(); queryById(item.id); });
      return entry;
    }));
    list.hidden = body.items.length === 0;
  } catch (error) {
    list.hidden = true;
  }
}

function wire() {
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("#query-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.mode === "id" && $("#id-input").value.trim()) queryById($("#id-input").value.trim());
    if (state.mode === "text" && $("#text-input").value.trim()) queryByText($("#text-input").value.trim());
  });
  $("#id-input").addEventListener("input", () => { clearTimeout(suggestTimer); suggestTimer = setTimeout(suggest, 200); });
  $("#id-input").addEventListener("focus", suggest);
  $("#id-input").addEventListener("blur", () => { $("#suggestions").hidden = true; });
  $("#image-input").addEventListener("change", (event) => {
    if (event.target.files.length) queryByImage(event.target.files[0]);
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) queryByImage(event.dataTransfer.files[0]);
  });
  $("#limit").addEventListener("change", rerun);
  $("#modality").addEventListener("change", rerun);
  $("#api-key").addEventListener("change", async (event) => {
    state.key = event.target.value;
    sessionStorage.setItem("rcml-st-key", state.key);
    await start();
  });
}

async function start() {
  try {
    await loadRelations();
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const params = new URLSearchParams(location.search);
  if (params.get("limit")) $("#limit").value = params.get("limit");
  if (params.get("id")) queryById(params.get("id"));
  else if (params.get("text")) { setMode("text"); $("#text-input").value = params.get("text"); queryByText(params.get("text")); }
}

wire();
start();

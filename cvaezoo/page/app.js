// The page of cvaezoo-serve: a client of its JSON API (POST /api/classify, /api/generate, /api/decode, /api/restyle).
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let eps = [];

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function status(text) { $("status").textContent = text; }

function image(src, alt) {
  const picture = document.createElement("img");
  picture.src = src;
  picture.alt = alt;
  return picture;
}

// ----- drawing ---------------------------------------------------------------------------------
const canvas = $("canvas");
const pen = canvas.getContext("2d");
let drawing = false, last = null, drawn = false;

function clearCanvas() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  drawn = false;
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

function stroke(from, to) {
  pen.strokeStyle = "#fff";
  pen.lineWidth = 22;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(from[0], from[1]);
  pen.lineTo(to[0], to[1]);
  pen.stroke();
  drawn = true;
}

let pending = null;  // a classify request waits until the pen has been up for a moment (several strokes: one request)
canvas.addEventListener("pointerdown", (event) => {
  clearTimeout(pending);
  drawing = true;
  last = point(event);
  canvas.setPointerCapture(event.pointerId);
  stroke(last, last);
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const now = point(event);
  stroke(last, now);
  last = now;
});
const finish = () => { if (drawing) { drawing = false; clearTimeout(pending); pending = setTimeout(() => classify(), 250); } };
canvas.addEventListener("pointerup", finish);
canvas.addEventListener("pointercancel", finish);
$("clear").addEventListener("click", () => { clearCanvas(); $("results").replaceChildren(); $("results").dataset.count = "0"; });

$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const picture = new Image();
    picture.onload = () => {
      clearCanvas();
      const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
      const w = picture.width * scale, h = picture.height * scale;
      pen.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      drawn = true;
      classify(reader.result);
    };
    picture.src = reader.result;
  };
  reader.readAsDataURL(file);
});

// ----- classify --------------------------------------------------------------------------------
let asked = 0;
async function classify(dataUrl) {
  if (!drawn) return;
  const mine = ++asked;
  const results = $("results");
  results.dataset.pending = "1";
  try {
    const answer = await api("/api/classify", {image: dataUrl || canvas.toDataURL("image/png")});
    if (mine !== asked) return;  // a later drawing's answer is coming
    $("centred").src = answer.input;
    results.replaceChildren(...answer.results.map(card));
    results.dataset.count = String(answer.results.length);
    status(`${answer.results.length} models answered`);
  } catch (error) {
    status(`classify: ${error.message}`);
  } finally {
    if (mine === asked) delete results.dataset.pending;
  }
}

function card(result) {
  const model = models.find((m) => m.name === result.model);
  const box = document.createElement("div");
  box.className = "model-result" + (result.abstain ? " abstains" : "");
  box.dataset.model = result.model;
  box.dataset.predicted = String(result.predicted);
  const title = document.createElement("h3");
  title.textContent = `${result.display_name} (${result.model})`;
  const verdict = document.createElement("div");
  verdict.className = "verdict";
  const label = model ? model.labels[result.predicted] : String(result.predicted);
  verdict.textContent = result.abstain ? `abstains (would say ${label})` : `says ${label}`;
  const score = document.createElement("div");
  score.className = "hint";
  score.textContent = `${result.score_name} ${result.score.toFixed(1)}, abstains below ${result.threshold.toFixed(1)}`;
  const bars = document.createElement("div");
  bars.className = "bars";
  result.probs.forEach((p, c) => {
    const name = document.createElement("span");
    name.textContent = model ? model.labels[c] : String(c);
    const bar = document.createElement("div");
    bar.className = "bar" + (c === result.predicted ? " top" : "");
    bar.dataset.class = String(c);
    bar.style.width = `${Math.max(1, 100 * p)}%`;
    const value = document.createElement("span");
    value.textContent = p.toFixed(3);
    bars.append(name, bar, value);
  });
  const pictures = document.createElement("div");
  pictures.className = "pictures";
  const seen = document.createElement("figure");
  seen.append(image(result.input, "as the model sees it"), "as it sees it");
  pictures.append(seen);
  if (result.reconstruction) {
    const again = document.createElement("figure");
    again.append(image(result.reconstruction, "its reconstruction"), "reconstruction");
    pictures.append(again);
  }
  box.append(title, verdict, score, bars, pictures);
  return box;
}

// ----- generate and sliders --------------------------------------------------------------------
function fill(select, names) {
  select.replaceChildren(...names.map(([value, text]) => { const o = document.createElement("option"); o.value = value; o.textContent = text; return o; }));
}

function labelsOf(name) { return (models.find((m) => m.name === name) || {labels: []}).labels; }

function fillLabels() { fill($("gen-label"), labelsOf($("gen-model").value).map((l, i) => [String(i), l])); }

let generating = 0;
async function generate() {
  const name = $("gen-model").value;
  if (!name) return;
  const mine = ++generating;
  const grid = $("grid");
  grid.dataset.pending = "1";
  try {
    const answer = await api("/api/generate", {model: name, label: Number($("gen-label").value || 0),
      temperature: Number($("gen-temperature").value), n: Number($("gen-n").value), seed: 0});
    if (mine !== generating) return;  // a later choice's grid is coming
    grid.replaceChildren(...answer.images.map((src, i) => image(src, `sample ${i}`)));
    grid.dataset.label = $("gen-label").value;
    eps = answer.eps;
    sliders();
    $("slider-image").src = answer.images[0];
  } catch (error) {
    status(`generate: ${error.message}`);
  } finally {
    if (mine === generating) delete grid.dataset.pending;
  }
}

function sliders() {
  const box = $("sliders");
  box.replaceChildren(...eps.map((value, d) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, {type: "range", min: "-3", max: "3", step: "0.1", value: value.toFixed(1)});
    input.className = "slider";
    input.dataset.dim = String(d);
    input.addEventListener("input", () => { eps[d] = Number(input.value); decode(); });
    label.append(`z${d} `, input);
    return label;
  }));
}

let decoding = 0;
async function decode() {
  const mine = ++decoding;
  const target = $("slider-image");
  target.dataset.pending = "1";
  try {
    const answer = await api("/api/decode", {model: $("gen-model").value, label: Number($("gen-label").value || 0), eps});
    if (mine === decoding) target.src = answer.image;
  } catch (error) {
    status(`decode: ${error.message}`);
  } finally {
    if (mine === decoding) delete target.dataset.pending;
  }
}

$("gen-model").addEventListener("change", () => { fillLabels(); generate(); });
$("gen-label").addEventListener("change", generate);
$("gen-temperature").addEventListener("input", () => { $("gen-temperature-value").textContent = Number($("gen-temperature").value).toFixed(1); });
$("gen-temperature").addEventListener("change", generate);
$("gen-n").addEventListener("change", generate);
$("generate").addEventListener("click", generate);

// ----- restyle ---------------------------------------------------------------------------------
$("restyle").addEventListener("click", async () => {
  const grid = $("restyle-grid");
  if (!drawn) { status("restyle: draw a digit first"); return; }
  grid.dataset.pending = "1";
  try {
    const answer = await api("/api/restyle", {model: $("restyle-model").value, image: canvas.toDataURL("image/png")});
    grid.replaceChildren(...answer.images.map((src, i) => image(src, `as ${labelsOf($("restyle-model").value)[i]}`)));
  } catch (error) {
    status(`restyle: ${error.message}`);
  } finally {
    delete grid.dataset.pending;
  }
});

// ----- complete ---------------------------------------------------------------------------------
async function complete(body) {
  const grid = $("complete-grid");
  grid.dataset.pending = "1";
  try {
    const answer = await api("/api/complete", {model: $("complete-model").value, n: 8, ...body});
    grid.replaceChildren(image(answer.given, "given"), ...answer.images.map((src, i) => image(src, `completion ${i}`)));
  } catch (error) {
    status(`complete: ${error.message}`);
  } finally {
    delete grid.dataset.pending;
  }
}
$("complete-test").addEventListener("click", () => complete({test_index: Math.floor(Math.random() * 500)}));
$("complete-drawing").addEventListener("click", () => {
  if (!drawn) { status("complete: draw a digit first"); return; }
  complete({image: canvas.toDataURL("image/png")});
});

// ----- start -----------------------------------------------------------------------------------
async function start() {
  clearCanvas();
  try {
    models = await api("/api/models");
  } catch (error) {
    status(`could not list the models: ${error.message}`);
    return;
  }
  fill($("gen-model"), models.filter((m) => m.generates).map((m) => [m.name, `${m.display_name} (${m.name})`]));
  fill($("restyle-model"), models.filter((m) => m.restyles).map((m) => [m.name, `${m.display_name} (${m.name})`]));
  const completing = models.filter((m) => m.completes);
  fill($("complete-model"), completing.map((m) => [m.name, `${m.given_quadrants} (${m.name})`]));
  $("complete-section").hidden = completing.length === 0;
  fillLabels();
  status(`${models.length} models loaded: ${models.map((m) => m.display_name).join(", ")}`);
  document.body.dataset.ready = "1";
  generate();
}
start();

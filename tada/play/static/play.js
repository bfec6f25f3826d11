// The steering playground page: menus from /api/menu, Generate posts the request, each α stop's
// WAV is fetched from its own URL as soon as its batch is done (the stop under the slider comes
// first and starts playing alone); once every stop is in, all of them loop together through the
// study's CrossfadePlayer and the lead slider crossfades between them without restarting.
// A spectrogram strip shows the stop that is audible.

import { CrossfadePlayer } from "../study-static/crossfade.js";

const $ = (id) => document.getElementById(id);
const player = new CrossfadePlayer();
const state = { menu: null, response: null, ready: [], stop: null, full: false, request: 0, timings: [] };
window.tadaPlay = { state, player };

function fmt(alpha) {
  return (alpha > 0 ? "+" : alpha < 0 ? "−" : "") + Math.abs(alpha).toPrecision(2);
}

function concepts() {
  return state.menu.concepts[$("method").value] || [];
}

function stopsOf(name) {
  const found = concepts().find((c) => c.concept === name);
  return found ? found.stops : [0];
}

function axisRows() {
  return Array.from(document.querySelectorAll("#axes .axis"));
}

function updateAxis(li) {
  const stops = stopsOf(li.querySelector("select").value);
  const slider = li.querySelector("input[type=range]");
  slider.max = String(stops.length - 1);
  li.querySelector("output").value = `α ${fmt(stops[Number(slider.value)] ?? 0)}`;
}

function addAxis(concept) {
  const rows = axisRows();
  if (rows.length >= state.menu.max_axes) return;
  const k = Math.floor(state.menu.n_stops / 2);
  const li = document.createElement("li");
  li.className = "axis" + (rows.length === 0 ? " lead" : "");
  const n = rows.length + 1;
  li.innerHTML = `<label>Concept ${n}<select></select></label>
    <input type="range" min="0" max="${state.menu.n_stops - 1}" step="1" value="${k}"
      aria-label="alpha of concept ${n}">
    <output></output>
    <button type="button" class="secondary remove" aria-label="Remove concept ${n}">Remove</button>`;
  const select = li.querySelector("select");
  for (const c of concepts()) select.add(new Option(c.concept + (c.calibrated ? "" : " (uncalibrated)"), c.concept));
  const taken = rows.map((r) => r.querySelector("select").value);
  const free = concepts().filter((c) => !taken.includes(c.concept));
  select.value = concept || (free.find((c) => c.calibrated) || free[0] || concepts()[0]).concept;
  const slider = li.querySelector("input[type=range]");
  select.addEventListener("change", () => { updateAxis(li); stale(); });
  slider.addEventListener("input", () => {
    updateAxis(li);
    if (li === axisRows()[0] && state.response) setStop(Number(slider.value));
    else stale();
  });
  li.querySelector(".remove").addEventListener("click", () => { li.remove(); relabel(); stale(); });
  $("axes").append(li);
  updateAxis(li);
  relabel();
}

function relabel() {
  axisRows().forEach((li, i) => {
    li.classList.toggle("lead", i === 0);
    li.querySelector(".remove").hidden = i === 0;
  });
  $("add-axis").disabled = axisRows().length >= state.menu.max_axes;
}

function stale() {
  if (state.response) $("status").textContent = "Settings changed: press Generate to hear them.";
}

function request() {
  return {
    prompt: $("prompt").value,
    seed: Number($("seed").value),
    method: $("method").value,
    axes: axisRows().map((li) => {
      const stops = stopsOf(li.querySelector("select").value);
      return { concept: li.querySelector("select").value, alpha: stops[Number(li.querySelector("input").value)] };
    }),
  };
}

function renderStops() {
  const ol = $("stops");
  ol.replaceChildren();
  if (!state.response) return;
  state.response.stops.forEach((s, i) => {
    const li = document.createElement("li");
    li.textContent = `α ${fmt(s.alpha)}`;
    li.classList.toggle("ready", state.ready[i]);
    li.classList.toggle("current", i === state.stop);
    ol.append(li);
  });
}

async function generate(event) {
  event.preventDefault();
  $("error").textContent = "";
  $("saved").textContent = "";
  const id = ++state.request;
  const t0 = performance.now();
  const timing = { start: t0, first: null, all: null };
  state.timings.push(timing);
  $("generate").disabled = true;
  $("status").textContent = "Generating…";
  let response;
  try {
    response = await fetch("api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request()),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    response = body;
  } catch (err) {
    $("error").textContent = String(err.message || err);
    $("status").textContent = "";
    $("generate").disabled = false;
    return;
  }
  $("generate").disabled = false;
  state.response = response;
  state.ready = response.stops.map(() => false);
  state.full = false;
  state.stop = response.first;
  renderStops();
  const urls = response.stops.map((s) => s.url);
  const loads = urls.map((url, i) => player.load(url).then((buffer) => {
    if (id === state.request) { state.ready[i] = true; renderStops(); }
    return buffer;
  }));
  try {
    await loads[response.first];
    if (id !== state.request) return;
    await player.play(`r${id}-first`, [urls[response.first]], 0);
    timing.first = performance.now() - t0;
    $("status").textContent = `First stop playing after ${(timing.first / 1000).toFixed(2)} s; rendering the others…`;
    $("save").disabled = false;
    drawSpectrogram(response.first);
    await Promise.all(loads);
    if (id !== state.request) return;
    const lead = Number(axisRows()[0].querySelector("input").value);
    state.stop = lead;
    await player.play(`r${id}`, urls, lead);
    state.full = true;
    timing.all = performance.now() - t0;
    $("status").textContent = `All ${urls.length} stops playing after ${(timing.all / 1000).toFixed(2)} s: drag the slider.`;
    renderStops();
    drawSpectrogram(lead);
  } catch (err) {
    if (id === state.request) $("error").textContent = String(err.message || err);
  }
}

function setStop(index) {
  if (!state.response || !state.full) return;
  state.stop = index;
  player.setStop(index);
  renderStops();
  drawSpectrogram(index);
}

async function save() {
  if (!state.response || state.stop === null) return;
  const key = state.response.stops[state.stop].key;
  const response = await fetch("api/save", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ key }),
  });
  const body = await response.json();
  if (!response.ok) { $("error").textContent = body.detail; return; }
  $("saved").textContent = `Saved ${body.wav} (sidecar ${body.sidecar})`;
}

// ----- spectrogram: log-power STFT of the decoded buffer, drawn once per stop --------------
const images = new Map();

function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k), wi = Math.sin(ang * k);
        const a = i + k, b = a + len / 2;
        const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi; re[a] += xr; im[a] += xi;
      }
    }
  }
}

function spectrogram(buffer, nfft = 512) {
  const x = buffer.getChannelData(0);
  const hop = nfft / 2;
  const frames = Math.max(1, Math.floor((x.length - nfft) / hop) + 1);
  const bins = nfft / 2;
  const out = new Float32Array(frames * bins);
  const re = new Float32Array(nfft), im = new Float32Array(nfft);
  for (let f = 0; f < frames; f++) {
    for (let i = 0; i < nfft; i++) {
      const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (nfft - 1));
      re[i] = (x[f * hop + i] || 0) * w;
      im[i] = 0;
    }
    fft(re, im);
    for (let b = 0; b < bins; b++) out[f * bins + b] = 10 * Math.log10(re[b] * re[b] + im[b] * im[b] + 1e-10);
  }
  return { data: out, frames, bins };
}

async function drawSpectrogram(index) {
  const url = state.response.stops[index].url;
  const canvas = $("spectrogram");
  const ctx = canvas.getContext("2d");
  if (!images.has(url)) {
    const spec = spectrogram(await player.load(url));
    const img = ctx.createImageData(spec.frames, spec.bins);
    let hi = -Infinity;
    for (const v of spec.data) hi = Math.max(hi, v);
    for (let f = 0; f < spec.frames; f++) {
      for (let b = 0; b < spec.bins; b++) {
        const t = Math.min(1, Math.max(0, (spec.data[f * spec.bins + b] - (hi - 80)) / 80));
        const p = ((spec.bins - 1 - b) * spec.frames + f) * 4;
        img.data[p] = 255 * Math.min(1, 1.6 * t);
        img.data[p + 1] = 255 * Math.max(0, 1.8 * t - 0.8);
        img.data[p + 2] = 255 * Math.max(0, Math.min(1, 2 * t) - Math.max(0, 3 * t - 2));
        img.data[p + 3] = 255;
      }
    }
    images.set(url, await createImageBitmap(img));
  }
  if (state.response && state.response.stops[state.stop] && state.response.stops[state.stop].url !== url) return;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(images.get(url), 0, 0, canvas.width, canvas.height);
  canvas.dataset.stop = String(index);
}

async function init() {
  try {
    const response = await fetch("api/menu");
    state.menu = await response.json();
  } catch (err) {
    $("status").textContent = "";
    $("error").textContent = `Could not load the menus: ${err}`;
    return;
  }
  for (const m of state.menu.methods) $("method").add(new Option(m, m));
  $("method").value = state.menu.default_method;
  $("prompt").maxLength = state.menu.max_prompt_chars;
  $("method").addEventListener("change", () => {
    const names = axisRows().map((li) => li.querySelector("select").value);
    $("axes").replaceChildren();
    const have = concepts().map((c) => c.concept);
    const keep = names.filter((n) => have.includes(n));
    if (keep.length === 0) addAxis();
    for (const n of keep) addAxis(n);
    stale();
  });
  $("add-axis").addEventListener("click", () => { addAxis(); stale(); });
  $("controls").addEventListener("submit", generate);
  $("save").addEventListener("click", save);
  addAxis();
  $("generate").disabled = false;
  $("status").textContent = `${state.menu.model}: ${state.menu.steps} steps, ${state.menu.duration} s clips, ` +
    `${state.menu.n_stops} stops per slider.`;
}

init();

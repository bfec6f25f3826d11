// The rating page: landing (musical skill), then one trial at a time.
//
// State lives in localStorage under STORE_KEY: participant id, skill, the plan the server drew
// for this participant (trial order, samples and their order), the position and the answers
// given so far, so a reload continues where it was, in the same order. A trial can be
// submitted only when every sample was played and every scale answered.
import { CrossfadePlayer } from "./crossfade.js";

const STORE_KEY = "tada-study";
const SCALES = [
  ["seamless", "Seamless Edit"],
  ["quality", "Audio Quality"],
  ["smoothness", "Smoothness"],
];
const $ = (id) => document.getElementById(id);

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function loadState() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY)) || {};
  } catch {
    return {};
  }
}

const state = Object.assign({ participant: null, skill: null, plan: null, position: 0, answers: {} }, loadState());
if (!state.participant) state.participant = uuid();
const save = () => localStorage.setItem(STORE_KEY, JSON.stringify(state));
const player = new CrossfadePlayer();
window.tadaStudy = { state, player, ready: null };

function show(id) {
  for (const s of ["loading", "landing", "trial", "done"]) $(s).hidden = s !== id;
}

async function fetchPlan() {
  const response = await fetch(`api/plan?participant=${encodeURIComponent(state.participant)}`);
  if (!response.ok) throw new Error(`the server refused the plan (HTTP ${response.status})`);
  const plan = await response.json();
  if (!state.plan || state.plan.bundle !== plan.bundle) {
    Object.assign(state, { plan, position: 0, answers: {} }); // a new bundle starts afresh
    save();
  }
}

function answersOf(trial) {
  state.answers[trial.trial] ??= {};
  const all = state.answers[trial.trial];
  for (const s of trial.samples) all[s.id] ??= { listened: false, visited: [] };
  return all;
}

function stopLabel(trial, value) {
  const centre = (state.plan.stops - 1) / 2;
  const step = value - centre;
  if (step === 0) return "0, unchanged";
  const towards = step > 0 ? trial.hint_pos : trial.hint_neg;
  return `${step > 0 ? "+" : "−"}${Math.abs(step)}, towards ${towards}`;
}

function missing(trial) {
  const answers = answersOf(trial);
  const unplayed = [];
  let unanswered = 0;
  trial.samples.forEach((s, k) => {
    if (!answers[s.id].listened) unplayed.push(k + 1);
    for (const [name] of SCALES) if (!answers[s.id][name]) unanswered += 1;
  });
  return { unplayed, unanswered };
}

function updateStatus(trial) {
  const { unplayed, unanswered } = missing(trial);
  const parts = [];
  if (unplayed.length) parts.push(`play sample${unplayed.length > 1 ? "s" : ""} ${unplayed.join(", ")}`);
  if (unanswered) parts.push(`answer ${unanswered} more scale${unanswered > 1 ? "s" : ""}`);
  $("status").textContent = parts.length ? `Still to do: ${parts.join("; ")}.` : "All done: you can submit this trial.";
  $("next").disabled = parts.length > 0;
}

function scaleGroup(trial, sample, k, name, label) {
  const answers = answersOf(trial)[sample.id];
  const fieldset = document.createElement("fieldset");
  fieldset.className = "scale";
  const legend = document.createElement("legend");
  legend.textContent = label;
  fieldset.append(legend);
  for (let v = 1; v <= 5; v += 1) {
    const id = `r-${k}-${name}-${v}`;
    const input = Object.assign(document.createElement("input"), { type: "radio", id, value: String(v) });
    input.name = `r-${k}-${name}`;
    input.checked = answers[name] === v;
    input.setAttribute("aria-label", `${label} of sample ${k + 1}: ${v} of 5`);
    input.addEventListener("change", () => {
      answers[name] = v;
      save();
      updateStatus(trial);
    });
    const lab = Object.assign(document.createElement("label"), { htmlFor: id, textContent: String(v) });
    lab.setAttribute("aria-hidden", "true");
    fieldset.append(input, lab);
  }
  return fieldset;
}

function sampleCard(trial, sample, k) {
  const answers = answersOf(trial)[sample.id];
  const centre = (state.plan.stops - 1) / 2;
  const li = document.createElement("li");
  li.className = "sample";
  li.dataset.sample = String(k);
  const title = Object.assign(document.createElement("h3"), { textContent: `Sample ${k + 1}` });
  const button = Object.assign(document.createElement("button"), { type: "button", className: "play", textContent: "Play" });
  button.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-label", `Play sample ${k + 1}`);
  const sliderId = `slider-${k}`;
  const label = Object.assign(document.createElement("label"), { htmlFor: sliderId, className: "slider-label" });
  label.textContent = `Edit strength of sample ${k + 1}`;
  const slider = Object.assign(document.createElement("input"), {
    type: "range", id: sliderId, min: "0", max: String(state.plan.stops - 1), step: "1", value: String(centre),
  });
  slider.setAttribute("aria-valuetext", stopLabel(trial, centre));
  const ends = document.createElement("div");
  ends.className = "ends";
  ends.setAttribute("aria-hidden", "true");
  ends.append(
    Object.assign(document.createElement("span"), { textContent: `− ${trial.hint_neg}` }),
    Object.assign(document.createElement("span"), { textContent: "0" }),
    Object.assign(document.createElement("span"), { textContent: `+ ${trial.hint_pos}` }),
  );
  const visit = (value) => {
    if (!answers.visited.includes(value)) answers.visited.push(value);
  };
  slider.addEventListener("input", () => {
    const value = Number(slider.value);
    slider.setAttribute("aria-valuetext", stopLabel(trial, value));
    if (player.isPlaying(sample.id)) {
      player.setStop(value);
      visit(value);
      save();
    }
  });
  button.addEventListener("click", async () => {
    if (player.isPlaying(sample.id)) {
      player.stop();
      return;
    }
    const started = await player.play(sample.id, sample.stops, Number(slider.value), { loopSeconds: trial.loop_seconds });
    if (started) {
      answers.listened = true;
      visit(Number(slider.value));
      save();
      updateStatus(trial);
    }
  });
  const scales = document.createElement("div");
  scales.className = "scales";
  for (const [name, text] of SCALES) scales.append(scaleGroup(trial, sample, k, name, text));
  li.append(title, button, label, slider, ends, scales);
  return li;
}

function syncButtons() {
  document.querySelectorAll("#samples .sample").forEach((li) => {
    const k = Number(li.dataset.sample);
    const trial = state.plan.trials[state.position];
    const playing = trial && player.isPlaying(trial.samples[k].id);
    const button = li.querySelector("button.play");
    button.textContent = playing ? "Stop" : "Play";
    button.setAttribute("aria-pressed", String(Boolean(playing)));
    button.setAttribute("aria-label", `${playing ? "Stop" : "Play"} sample ${k + 1}`);
    li.classList.toggle("playing", Boolean(playing));
  });
}
player.on(syncButtons);

function renderTrial() {
  player.stop();
  const trials = state.plan.trials;
  if (state.position >= trials.length) {
    show("done");
    return;
  }
  const trial = trials[state.position];
  $("trial-title").textContent = `Trial ${state.position + 1} of ${trials.length}: ${trial.concept}`;
  $("trial-prompt").textContent = trial.prompt;
  $("hint-pos").textContent = trial.hint_pos;
  $("hint-neg").textContent = trial.hint_neg;
  const list = $("samples");
  list.replaceChildren(...trial.samples.map((s, k) => sampleCard(trial, s, k)));
  $("next").textContent = state.position + 1 < trials.length ? "Submit and continue" : "Submit and finish";
  $("error").textContent = "";
  updateStatus(trial);
  show("trial");
  $("trial-title").focus();
  // this trial's audio first, then the next trial's in the background
  player.prefetch(trial.samples.flatMap((s) => s.stops)).then(() => {
    const next = trials[state.position + 1];
    if (next) player.prefetch(next.samples.flatMap((s) => s.stops));
  });
}

async function submit() {
  const trial = state.plan.trials[state.position];
  const answers = answersOf(trial);
  const body = {
    participant: state.participant,
    trial: trial.trial,
    trial_index: state.position,
    skill: state.skill,
    samples: trial.samples.map((s) => ({
      sample: s.id,
      listened: answers[s.id].listened,
      visited: [...answers[s.id].visited].sort((a, b) => a - b),
      seamless: answers[s.id].seamless,
      quality: answers[s.id].quality,
      smoothness: answers[s.id].smoothness,
    })),
  };
  $("next").disabled = true;
  try {
    const response = await fetch("api/submit", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const detail = await response.json().catch(() => ({}));
      throw new Error(detail.detail || `HTTP ${response.status}`);
    }
    state.position += 1;
    save();
    renderTrial();
  } catch (err) {
    $("error").textContent = `Could not submit (${err.message}). Please try again.`;
    updateStatus(trial);
  }
}

function setupLanding() {
  const start = $("start");
  for (const input of document.querySelectorAll("input[name=skill]")) {
    input.checked = Number(input.value) === state.skill;
    input.addEventListener("change", () => {
      start.disabled = false;
    });
  }
  start.disabled = !state.skill;
  $("skill-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = document.querySelector("input[name=skill]:checked");
    if (!chosen) return;
    state.skill = Number(chosen.value);
    save();
    renderTrial();
  });
}

async function main() {
  $("next").addEventListener("click", submit);
  setupLanding();
  try {
    await fetchPlan();
  } catch (err) {
    if (!state.plan) {
      $("loading").textContent = `The study could not be loaded: ${err.message}`;
      return;
    }
  }
  save();
  if (!state.skill) show("landing");
  else renderTrial();
}

window.tadaStudy.ready = main();

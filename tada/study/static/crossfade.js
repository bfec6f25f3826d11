// Web Audio crossfade player.
//
// A "sample" is a set of aligned loops ("stops", e.g. the same clip steered at seven α values).
// play() starts every stop of one sample at the same instant, each looping through its own
// gain node into a shared output gain; only the selected stop's gain is 1. setStop() moves the
// gains towards the new stop with setTargetAtTime (time constant `timeConstant`, 30 ms by
// default): the old gain decays as e^(−t/τ) while the new one rises as 1 − e^(−t/τ), so the two
// always sum to 1 and playback never restarts. One sample plays at a time: play() fades out
// whatever was playing. Decoded buffers are cached by URL, so prefetch() before play() makes
// the start immediate.
//
//   import { CrossfadePlayer } from "./crossfade.js";
//   const player = new CrossfadePlayer();
//   await player.play("sample-1", urls, 3, { loopSeconds: 3.75 });
//   player.setStop(5);
//   player.stop();

export class CrossfadePlayer {
  constructor({ context = null, timeConstant = 0.03, startDelay = 0.05 } = {}) {
    this._context = context;
    this.timeConstant = timeConstant;
    this.startDelay = startDelay;
    this.buffers = new Map(); // url -> Promise<AudioBuffer>
    this.current = null; // { key, sources, gains, output, stop, startedAt, loopSeconds }
    this.generation = 0; // incremented at every (re)start of playback
    this._pending = null;
    this._listeners = new Set();
  }

  get context() {
    if (!this._context) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this._context = new Ctx();
    }
    return this._context;
  }

  // Listen to "play", "stop" and "stop-change" events: fn(type, player).
  on(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  _emit(type) {
    for (const fn of this._listeners) fn(type, this);
  }

  load(url) {
    if (!this.buffers.has(url)) {
      const promise = fetch(url)
        .then((response) => {
          if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
          return response.arrayBuffer();
        })
        .then((data) => this.context.decodeAudioData(data));
      promise.catch(() => this.buffers.delete(url)); // a failed load may be retried
      this.buffers.set(url, promise);
    }
    return this.buffers.get(url);
  }

  prefetch(urls) {
    return Promise.allSettled(urls.map((url) => this.load(url)));
  }

  isPlaying(key) {
    return this.current !== null && (key === undefined || this.current.key === key);
  }

  // Start the loops `urls` of sample `key` with stop `stop` audible. Resolves true once
  // playback is scheduled, false when another play() or stop() came first.
  async play(key, urls, stop = 0, { loopSeconds = null } = {}) {
    const ctx = this.context;
    this.stop();
    const token = {};
    this._pending = token;
    if (ctx.state === "suspended") await ctx.resume();
    const buffers = await Promise.all(urls.map((url) => this.load(url)));
    if (this._pending !== token) return false;
    this._pending = null;
    const output = ctx.createGain();
    output.connect(ctx.destination);
    const startedAt = ctx.currentTime + this.startDelay;
    output.gain.setValueAtTime(0, 0);
    output.gain.setTargetAtTime(1, startedAt, 0.005); // no click at the start
    const sources = [];
    const gains = [];
    let loopEnd = Infinity;
    for (const buffer of buffers) loopEnd = Math.min(loopEnd, buffer.duration);
    if (loopSeconds) loopEnd = Math.min(loopEnd, loopSeconds);
    buffers.forEach((buffer, i) => {
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.loop = true;
      source.loopStart = 0;
      source.loopEnd = loopEnd;
      const gain = ctx.createGain();
      gain.gain.setValueAtTime(i === stop ? 1 : 0, 0);
      source.connect(gain).connect(output);
      source.start(startedAt);
      sources.push(source);
      gains.push(gain);
    });
    this.generation += 1;
    this.current = { key, sources, gains, output, stop, startedAt, loopSeconds: loopEnd };
    this._emit("play");
    return true;
  }

  // Crossfade to stop `index` of the playing sample (no restart).
  setStop(index) {
    const c = this.current;
    if (!c || index === c.stop) return;
    const now = this.context.currentTime;
    c.gains.forEach((gain, i) => {
      const param = gain.gain;
      if (param.cancelAndHoldAtTime) param.cancelAndHoldAtTime(now);
      else {
        param.cancelScheduledValues(now);
        param.setValueAtTime(param.value, now);
      }
      param.setTargetAtTime(i === index ? 1 : 0, now, this.timeConstant);
    });
    c.stop = index;
    this._emit("stop-change");
  }

  // Fade out and stop whatever plays.
  stop() {
    this._pending = null;
    const c = this.current;
    if (!c) return;
    this.current = null;
    const now = this.context.currentTime;
    c.output.gain.cancelScheduledValues(now);
    c.output.gain.setValueAtTime(c.output.gain.value, now);
    c.output.gain.setTargetAtTime(0, now, 0.01);
    for (const source of c.sources) source.stop(now + 0.08);
    setTimeout(() => c.output.disconnect(), 200);
    this._emit("stop");
  }

  // Seconds into the loop of the playing sample (null when nothing plays).
  position() {
    const c = this.current;
    if (!c) return null;
    const t = this.context.currentTime - c.startedAt;
    return t < 0 ? 0 : t % c.loopSeconds;
  }

  // Current gain of every stop of the playing sample ([] when nothing plays).
  gains() {
    return this.current ? this.current.gains.map((g) => g.gain.value) : [];
  }
}

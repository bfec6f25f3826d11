"""Render :class:`~tada.world.attributes.ClipAttributes` to audio with FluidSynth.

A clip is composed as MIDI note events (:func:`tada.world.compose.compose`, whose docstring says
how each concept is made audible) and synthesised with General MIDI sounds from pretty_midi's
bundled ``TimGM6mb.sf2``; the voice stem is shaped by :mod:`tada.world.effects` (formants,
consonants) and the mix gets the mood's spectral tilt.

Synthesis: the SoundFont is loaded once per :class:`Renderer`; every clip is played on a fresh
light FluidSynth synth that borrows it (reverb and chorus off, linear interpolation), with float
output through ``fluid_synth_write_float`` (no dither) and events on FluidSynth's 64-sample
blocks. The result is bit-identical for the same ``(attrs, seed, duration)`` whatever was
rendered before.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from tada.world.attributes import ClipAttributes
from tada.world.compose import CH_DRUMS, CH_NOISE, CH_VOCAL, Note, Score, compose
from tada.world.effects import add_consonants, tilt, voice_filter

__all__ = ["PEAK", "Note", "Renderer", "Score", "add_consonants", "compose", "default_soundfont",
           "score_to_pretty_midi", "tilt", "voice_filter"]

PEAK = 0.9
"""Rendered clips are scaled so that max |x| equals this."""
INTERPOLATION = 1
"""FluidSynth sample interpolation (0 none, 1 linear, 4 fourth order, 7 seventh order); linear
is the cheapest of the usable ones (about 8 % faster rendering than fourth order)."""

BLOCK = 64
"""FluidSynth's internal block size; events are placed on block boundaries."""

VOCAL_GAIN_DB = 5.0  # the voice sits this far above its plain synthesised level


def default_soundfont() -> str:
    """Path of pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2)."""
    import pretty_midi

    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.exists(path):
        raise FileNotFoundError(f"TimGM6mb.sf2 not found next to pretty_midi at {path}")
    return path


VOICE_CHANNELS = (CH_VOCAL, CH_NOISE)


def _with_notes(score: Score, notes: list[Note]) -> Score:
    chans = {n.channel for n in notes}
    return Score(programs=score.programs, volumes=score.volumes, notes=notes,
                 bends=[b for b in score.bends if b[1] in chans], bpm=score.bpm, key=score.key,
                 ccs=score.ccs)  # no vowels, no tilt: a plain stem


def score_to_pretty_midi(score: Score):
    """Convert a :class:`Score` to a ``pretty_midi.PrettyMIDI`` (for export and inspection)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=score.bpm)
    channels = sorted({n.channel for n in score.notes} | set(score.programs))
    for ch in channels:
        inst = pretty_midi.Instrument(program=score.programs.get(ch, 0), is_drum=ch == CH_DRUMS,
                                      name=f"ch{ch}")
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end)
                      for n in score.notes if n.channel == ch]
        inst.pitch_bends = [pretty_midi.PitchBend(v - 8192, t) for t, c, v in score.bends
                            if c == ch]
        pm.instruments.append(inst)
    return pm


def _cfunc(lib, name: str, restype, argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_QUIET = False


def _quiet_fluidsynth() -> None:
    """Silence FluidSynth's warning/info/debug log lines (errors still print)."""
    global _QUIET
    if _QUIET:
        return
    import fluidsynth

    fn = _cfunc(fluidsynth._fl, "fluid_set_log_function", ctypes.c_void_p,
                [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
    for level in (2, 3, 4):
        fn(level, None, None)
    _QUIET = True


class Renderer:
    """Synthesise clips with FluidSynth.

    The SoundFont is loaded once into a holder synth; each clip is played on a fresh, light
    synth (well under a millisecond to create) that borrows the loaded font. A reused synth
    keeps per-voice DSP state between clips (its output for a clip then depends on the clips
    rendered before), so a fresh one is what makes rendering bit-identical.
    """

    def __init__(self, sample_rate: int = 16000, soundfont: str | None = None) -> None:
        import fluidsynth

        _quiet_fluidsynth()
        self._fs = fluidsynth
        self.sample_rate = int(sample_rate)
        self.soundfont = soundfont or default_soundfont()
        self._holder = self._new_synth()
        sfid = self._holder.sfload(self.soundfont)
        if sfid < 0:
            raise RuntimeError(f"FluidSynth could not load {self.soundfont}")
        lib = fluidsynth._fl
        self._get_sfont = _cfunc(lib, "fluid_synth_get_sfont_by_id", ctypes.c_void_p,
                                 [ctypes.c_void_p, ctypes.c_int])
        self._add_sfont = _cfunc(lib, "fluid_synth_add_sfont", ctypes.c_int,
                                 [ctypes.c_void_p, ctypes.c_void_p])
        self._remove_sfont = _cfunc(lib, "fluid_synth_remove_sfont", ctypes.c_int,
                                    [ctypes.c_void_p, ctypes.c_void_p])
        self._interp = _cfunc(lib, "fluid_synth_set_interp_method", ctypes.c_int,
                              [ctypes.c_void_p, ctypes.c_int, ctypes.c_int])
        self._write = _cfunc(lib, "fluid_synth_write_float", ctypes.c_int,
                             [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                              ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int])
        self._font = self._get_sfont(self._holder.synth, sfid)
        if not self._font:
            raise RuntimeError("FluidSynth returned no SoundFont handle")

    def _new_synth(self):
        return self._fs.Synth(
            gain=0.5,
            samplerate=float(self.sample_rate),
            channels=16,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256,
               "synth.cpu-cores": 1},
        )

    def close(self) -> None:
        holder = getattr(self, "_holder", None)
        if holder is not None:
            self._holder = None
            try:
                holder.delete()
            except Exception:
                pass

    def __del__(self) -> None:
        self.close()

    def __getstate__(self):
        return {"sample_rate": self.sample_rate, "soundfont": self.soundfont}

    def __setstate__(self, state) -> None:
        self.__init__(state["sample_rate"], state["soundfont"])

    def render_score(self, score: Score, duration: float) -> np.ndarray:
        """Synthesise a :class:`Score` to float32 mono (not normalised)."""
        if self._holder is None:
            raise RuntimeError("Renderer is closed")
        if not score.vowels:
            return tilt(self._play_fresh(score, duration), score.tilt, self.sample_rate)
        voice = [n for n in score.notes if n.channel in VOICE_CHANNELS]
        band = [n for n in score.notes if n.channel not in VOICE_CHANNELS]
        rest = self._play_fresh(_with_notes(score, band), duration)
        sung = self._play_fresh(_with_notes(score, voice), duration)
        sung = voice_filter(sung, score.vowels, score.formant_scale, self.sample_rate)
        sung = add_consonants(sung, score.consonants, self.sample_rate)
        mix = rest + sung * np.float32(10.0 ** (VOCAL_GAIN_DB / 20.0))
        return tilt(mix, score.tilt, self.sample_rate)

    def _play_fresh(self, score: Score, duration: float) -> np.ndarray:
        s = self._new_synth()
        sfid = self._add_sfont(s.synth, self._font)
        try:
            return self._play(s, sfid, score, duration)
        finally:
            self._remove_sfont(s.synth, self._font)
            s.delete()

    def _play(self, s, sfid: int, score: Score, duration: float) -> np.ndarray:
        sr = self.sample_rate
        self._interp(s.synth, -1, INTERPOLATION)
        for ch, prog in sorted(score.programs.items()):
            s.program_select(ch, sfid, 128 if ch == CH_DRUMS else 0,
                             0 if ch == CH_DRUMS else prog)
        for ch in range(16):
            s.cc(ch, 7, int(score.volumes.get(ch, 100)))
            for ctrl, val in sorted(score.ccs.get(ch, {}).items()):
                s.cc(ch, int(ctrl), int(val))
            s.cc(ch, 10, 64)
        n_total = int(round(duration * sr))
        n_blocks = -(-n_total // BLOCK)
        left = np.zeros(n_blocks * BLOCK, dtype=np.float32)
        right = np.zeros(n_blocks * BLOCK, dtype=np.float32)
        events: list[tuple[int, int, int, int, int]] = []  # (block, order, ch, a, b)
        for n in score.notes:
            b0 = int(round(n.start * sr / BLOCK))
            b1 = max(b0 + 1, int(round(n.end * sr / BLOCK)))
            if b0 >= n_blocks:
                continue
            events.append((b0, 2, n.channel, n.pitch, n.velocity))
            if b1 < n_blocks:
                events.append((b1, 0, n.channel, n.pitch, 0))
        for t, ch, val in score.bends:
            bt = int(round(t * sr / BLOCK))
            if bt < n_blocks:
                events.append((bt, 1, ch, val, 0))
        events.sort()
        lp, rp = left.ctypes.data, right.ctypes.data
        pos = 0
        for blk, kind, ch, a, b in events:
            if blk > pos:
                self._write(s.synth, (blk - pos) * BLOCK, lp, pos * BLOCK, 1, rp, pos * BLOCK, 1)
                pos = blk
            if kind == 2:
                s.noteon(ch, a, b)
            elif kind == 0:
                s.noteoff(ch, a)
            else:
                s.pitch_bend(ch, a - 8192)
        if n_blocks > pos:
            self._write(s.synth, (n_blocks - pos) * BLOCK, lp, pos * BLOCK, 1, rp, pos * BLOCK, 1)
        return ((left + right) * np.float32(0.5))[:n_total]

    # -- public ------------------------------------------------------------------------------
    def render_midi(self, attrs: ClipAttributes, seed: int, duration: float = 4.0):
        """The clip as a ``pretty_midi.PrettyMIDI`` (same notes :meth:`render` synthesises)."""
        return score_to_pretty_midi(compose(attrs, seed, duration))

    def render(self, attrs: ClipAttributes, seed: int, duration: float = 4.0) -> np.ndarray:
        """Render one clip: float32 mono at ``sample_rate``, ``round(duration * sr)`` samples,
        peak-normalised to :data:`PEAK`; bit-identical for the same ``(attrs, seed, duration)``."""
        audio = self.render_score(compose(attrs, seed, duration), duration)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * np.float32(PEAK / peak)
        return audio.astype(np.float32, copy=False)

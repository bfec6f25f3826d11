"""Render :class:`~tada.world.attributes.ClipAttributes` to audio with FluidSynth.

A clip is composed as MIDI note events (:func:`compose`) and synthesised with General MIDI
sounds from pretty_midi's bundled ``TimGM6mb.sf2``. Every random choice comes from generators
seeded by ``(seed, part)`` only, never by the attributes, so two clips with the same seed that
differ in one attribute share key, contour, rhythm cells and velocities as far as the attribute
allows: a counterfactual pair.

How each concept is made audible:

* lead: the melody's GM program (piano 0/1, violin 40, nylon/steel guitar 24/25,
  overdriven / distorted electric guitar 29/30, flute 73, trumpet 56), its register, and its
  idiom: piano melodies in right-hand octaves, electric guitar notes bent up into pitch, and a
  piano or guitar lead also comps the chords every two beats (guitar as a quick strum, electric
  guitar as a power chord); bowed and blown leads sustain, plucked ones decay.
* tempo: slow is 60-80 BPM with quarter/half-note melodies and quarter-note accompaniment;
  fast is 140-170 BPM with eighth/sixteenth-note melodies and eighth-note accompaniment
  (about three times as many detected onsets per second).
* mood: happy is a major key, melody six semitones above the instrument's centre, hard
  velocities, chords voiced around D4 and a brightened mix (high-pass boost); sad is natural
  minor, five semitones below, soft velocities, chords around A3 and a darkened mix (low-pass).
* vocal: a voice line rendered apart and shaped by vowel formants that change per syllable
  (:func:`voice_filter`); female: Voice Oohs around D5 (MIDI 67-88), formants scaled by 1.2;
  male: Choir Aahs around B2 (MIDI 42-61), formants scaled by 0.92. The voice sits 5 dB forward
  and alternates half bars with the lead melody (call and response).
* vocal_style: sung is legato with vibrato, following chord tones; rap is short staccato
  syllables on every eighth note within two semitones, each with a falling pitch bend, a
  breath-noise layer and an unvoiced consonant burst (:func:`add_consonants`).
* genre: accompaniment instruments, harmony, rhythm and drum pattern (:data:`GENRE_PARTS`).
* drums: a GM kit on channel 10 with a per-genre pattern; maracas: GM key 70 on the
  accompaniment grid (quarters when slow, eighths when fast).

Synthesis: the SoundFont is loaded once per :class:`Renderer`; every clip is played on a fresh
light FluidSynth synth that borrows it (reverb and chorus off, linear interpolation), with float
output through ``fluid_synth_write_float`` (no dither) and events on FluidSynth's 64-sample
blocks. The result is bit-identical for the same ``(attrs, seed, duration)`` whatever was
rendered before.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

import numpy as np

from tada.world.attributes import ClipAttributes

PEAK = 0.9
INTERPOLATION = 1
"""FluidSynth sample interpolation (0 none, 1 linear, 4 fourth order, 7 seventh order); linear
is the cheapest of the usable ones (about 8 % faster rendering than fourth order)."""
"""Rendered clips are scaled so that max |x| equals this."""

BLOCK = 64
"""FluidSynth's internal block size; events are placed on block boundaries."""

# MIDI channels of the parts (channel 9 is the GM percussion channel).
CH_LEAD, CH_VOCAL, CH_NOISE, CH_CHORD, CH_BASS, CH_EXTRA, CH_DRUMS = 0, 1, 2, 3, 4, 5, 9

LEAD_PROGRAMS: dict[str, tuple[int, ...]] = {
    "piano": (0, 1),
    "violin": (40,),
    "acoustic_guitar": (24, 25),
    "electric_guitar": (29, 30),
    "flute": (73,),
    "trumpet": (56,),
}
LEAD_CENTER: dict[str, int] = {
    "piano": 67,
    "violin": 71,
    "acoustic_guitar": 60,
    "electric_guitar": 62,
    "flute": 76,
    "trumpet": 64,
}
LEAD_SUSTAINED = {"violin": True, "flute": True, "trumpet": True, "piano": False,
                  "acoustic_guitar": False, "electric_guitar": True}
LEAD_VOLUME = {"piano": 127, "violin": 85, "acoustic_guitar": 127, "electric_guitar": 120,
               "flute": 72, "trumpet": 127}

CHORD_VOLUME = {"classical": 50, "electronic": 50, "jazz": 40, "rock": 40, "reggae": 50}

VOCAL_PROGRAMS = {"female": 53, "male": 52}  # a rounder "ooh" voice, a fuller "aah" voice
VOCAL_VIBRATO = 100  # modulation wheel (CC1) value: FluidSynth's default CC1 -> vibrato depth
VOCAL_CENTER = {"female": 74, "male": 47}
RAP_CENTER = {"female": 69, "male": 48}
VOCAL_GAIN_DB = 5.0  # the voice sits this far above its plain synthesised level

# vowel formants (Hz, adult male); the female voice scales them by FORMANT_SCALE
VOWELS = (
    (730, 1090, 2440),  # a
    (530, 1840, 2480),  # e
    (270, 2290, 3010),  # i
    (570, 840, 2410),   # o
    (300, 870, 2240),   # u
)
FORMANT_GAINS = (1.0, 0.6, 0.35)
FORMANT_BW = (90.0, 130.0, 180.0)
FORMANT_SCALE = {"female": 1.2, "male": 0.92}
BREATH_NOISE = 121

GENRE_PARTS: dict[str, dict] = {
    # chord instrument(s), bass instrument, optional extra part
    "classical": {"chord": (48, 49), "bass": (42, 43), "extra": None},
    "electronic": {"chord": (89, 90), "bass": (38, 39), "extra": (80, 81)},
    "jazz": {"chord": (11,), "bass": (32,), "extra": None},
    "rock": {"chord": (18, 17), "bass": (34,), "extra": None},
    "reggae": {"chord": (16,), "bass": (33,), "extra": None},
}
"""Accompaniment programs per genre (drum pattern when drums are on).

classical: string ensemble sustained triads and a bowed cello/contrabass line (march: bass
drum, snare, a cymbal crash);
electronic: synth pad, pumping synth bass and a square/saw arpeggio (four-on-the-floor kick,
claps, off-beat open hats);
jazz: vibraphone seventh-chord comping and swung eighths, a walking acoustic bass (swung ride,
pedal hi-hat on 2 and 4);
rock: rock organ power chords on every subdivision with a picked electric bass (kick on 1 and
3, snare on 2 and 4, hi-hats);
reggae: drawbar organ off-beat "skank" stabs and a syncopated finger bass (one drop: kick and
side stick on 3, a kick on 1, cross-stick on 2 and 4, hi-hats).
"""

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2)),
    "jazz_major": ((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4)),
    "jazz_minor": ((1, 4, 0, 3), (0, 5, 1, 4), (3, 6, 2, 5), (0, 3, 1, 4)),
}
# GM percussion keys
KICK, ACOUSTIC_KICK, SIDE_STICK, SNARE, CLAP = 36, 35, 37, 38, 39
CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, CYMBAL_2 = 42, 44, 46, 49, 51, 57
MARACAS = 70

# random-stream identifiers, so that one part's draws never shift another's (timing and
# velocity jitter have one stream per MIDI channel)
_S_GLOBAL, _S_MELODY, _S_VOCAL, _S_CHORDS, _S_DRUMS, _S_HUMAN = range(6)


@dataclass(frozen=True)
class Note:
    channel: int
    pitch: int
    start: float
    end: float
    velocity: int


@dataclass
class Score:
    """A composed clip: programs, channel volumes and start-of-clip controllers, notes and
    pitch bends (times in seconds).

    `vowels` holds ``(start, end, vowel index)`` per sung or rapped syllable: the voice
    channels are rendered apart and shaped by those vowels' formants (see :func:`voice_filter`).
    `consonants` holds ``(time, length, level, noise seed)`` of noise bursts added to the voice
    (:func:`add_consonants`). `tilt` is the mix's spectral tilt (:func:`tilt`).
    """

    programs: dict[int, int]
    volumes: dict[int, int]
    notes: list[Note] = field(default_factory=list)
    bends: list[tuple[float, int, int]] = field(default_factory=list)
    bpm: float = 120.0
    key: int = 0
    ccs: dict[int, dict[int, int]] = field(default_factory=dict)
    vowels: list[tuple[float, float, int]] = field(default_factory=list)
    formant_scale: float = 1.0
    consonants: list[tuple[float, float, float, int]] = field(default_factory=list)
    tilt: str = ""


def default_soundfont() -> str:
    """Path of pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2)."""
    import pretty_midi

    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.exists(path):
        raise FileNotFoundError(f"TimGM6mb.sf2 not found next to pretty_midi at {path}")
    return path


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, stream])


def _degree_to_midi(tonic: int, scale: tuple[int, ...], degree: int) -> int:
    octave, step = divmod(degree, 7)
    return tonic + scale[step] + 12 * octave


def _nearest_tonic(key: int, center: int) -> int:
    """The MIDI note of pitch class `key` closest to `center`."""
    base = center - ((center - key) % 12)
    return base + 12 if center - base > 6 else base


def compose(attrs: ClipAttributes, seed: int, duration: float = 4.0) -> Score:
    """Compose the note events of one clip (deterministic in ``(attrs, seed, duration)``)."""
    g = _rng(seed, _S_GLOBAL)
    u_tempo, key = g.random(), int(g.integers(12))
    lead_var, _, chord_var, bass_var, extra_var, vocal_half = g.integers(0, 1 << 16, 6)
    fast = attrs.tempo == "fast"
    happy = attrs.mood == "happy"
    bpm = 140.0 + 30.0 * u_tempo if fast else 60.0 + 20.0 * u_tempo
    beat = 60.0 / bpm
    n_beats = int(np.ceil(duration / beat)) + 1
    scale = MAJOR if happy else MINOR
    genre = attrs.genre
    swing = genre == "jazz"
    sub = 0.5 if fast else 1.0

    def at(b: float) -> float:
        """Beat position -> seconds, with swung off-beat eighths in jazz."""
        if swing:
            whole, frac = divmod(b, 1.0)
            if abs(frac - 0.5) < 1e-9:
                b = whole + 2.0 / 3.0
        return b * beat

    parts = GENRE_PARTS[genre]
    programs = {
        CH_LEAD: LEAD_PROGRAMS[attrs.lead][lead_var % len(LEAD_PROGRAMS[attrs.lead])],
        CH_CHORD: parts["chord"][chord_var % len(parts["chord"])],
        CH_BASS: parts["bass"][bass_var % len(parts["bass"])],
    }
    volumes = {CH_LEAD: LEAD_VOLUME[attrs.lead], CH_CHORD: CHORD_VOLUME[genre], CH_BASS: 50,
               CH_DRUMS: 127}
    # expression narrows the loudness gap that the mood's velocities open (timbre stays)
    ccs: dict[int, dict[int, int]] = {CH_LEAD: {11: 100 if happy else 127}}
    has_vocal = attrs.vocal != "none"

    def vocal_turn(b: float) -> bool:
        """Call and response: with a vocal, it sings one half of each bar, the lead the other."""
        return ((b % 4.0) < 2.0 - 1e-9) == (vocal_half % 2 == 0)

    def turn_end(b: float) -> float:
        return (np.floor(b / 2.0 + 1e-9) + 1.0) * 2.0

    if parts["extra"] is not None:
        programs[CH_EXTRA] = parts["extra"][extra_var % len(parts["extra"])]
        volumes[CH_EXTRA] = 35
    notes: list[Note] = []
    bends: list[tuple[float, int, int]] = []
    human: dict[int, np.random.Generator] = {}

    def add(ch: int, pitch: int, b0: float, b1: float, vel: float,
            jitter: float = 0.008) -> Note | None:
        h = human.setdefault(ch, _rng(seed, _S_HUMAN + 16 * (ch + 1)))
        t0 = at(b0) + float(h.normal(0.0, jitter))
        t1 = at(b1) if b1 != b0 else t0 + 0.05
        v = min(127, max(1, int(round(vel + h.normal(0.0, 6.0)))))
        t0 = max(0.0, t0)
        if t0 >= duration:
            return None
        note = Note(ch, min(127, max(0, int(pitch))), t0, max(t1, t0 + 0.03), v)
        notes.append(note)
        return note

    # --- harmony -----------------------------------------------------------------------
    c = _rng(seed, _S_CHORDS)
    table = ("jazz_" if genre == "jazz" else "") + ("major" if happy else "minor")
    prog = PROGRESSIONS[table][int(c.integers(len(PROGRESSIONS[table])))]
    bar = 4
    chord_root_center = 62 if happy else 57
    chord_tonic = _nearest_tonic(key, chord_root_center)
    bass_tonic = _nearest_tonic(key, 36)

    def chord_degrees(i: int) -> list[int]:
        d = prog[(i // bar) % len(prog)]
        tones = [d, d + 2, d + 4]
        if genre == "jazz":
            tones.append(d + 6)
        return tones

    for b in range(0, n_beats, bar):
        tones = chord_degrees(b)
        pitches = [_degree_to_midi(chord_tonic, scale, t) for t in tones]
        root = _degree_to_midi(bass_tonic, scale, tones[0])
        fifth = _degree_to_midi(bass_tonic, scale, tones[0] + 4)
        if genre == "classical":
            for p in pitches:
                add(CH_CHORD, p, b, b + bar, 70)
            add(CH_BASS, root, b, b + 2, 80)
            add(CH_BASS, fifth - 12 if fifth - 12 >= 28 else fifth, b + 2, b + 4, 75)
        elif genre == "electronic":
            for p in pitches:
                add(CH_CHORD, p + 12, b, b + bar, 60)
            k = 0.0
            while k < bar:
                add(CH_BASS, root, b + k, b + k + sub * 0.8, 95)
                arp = pitches[int(k / sub) % len(pitches)] + 12
                add(CH_EXTRA, arp, b + k, b + k + sub * 0.5, 70)
                k += sub
        elif genre == "jazz":
            hits = (0.0, 1.5, 3.0) if fast else (0.0, 2.5)
            for h in hits:
                for p in pitches:
                    add(CH_CHORD, p, b + h, b + h + (0.9 if fast else 1.5), 72)
            walk = [root, _degree_to_midi(bass_tonic, scale, tones[0] + 2), fifth,
                    _degree_to_midi(bass_tonic, scale, tones[0] + 5)]
            for i in range(bar):
                add(CH_BASS, walk[i], b + i, b + i + 0.9, 88)
        elif genre == "rock":
            power = [pitches[0], pitches[0] + 7, pitches[0] + 12]
            k = 0.0
            while k < bar:
                for p in power:
                    add(CH_CHORD, p, b + k, b + k + sub * 0.9, 85)
                add(CH_BASS, root, b + k, b + k + sub * 0.9, 95)
                k += sub
        elif genre == "reggae":
            stabs = [k + 0.5 for k in np.arange(0, bar, 1.0)] if fast else [1.0, 3.0]
            for s in stabs:
                for p in pitches:
                    add(CH_CHORD, p + 12, b + s, b + s + (0.2 if fast else 0.3), 80)
            for off, p, length in ((0.0, root, 1.2), (1.5, root, 0.4), (2.0, fifth, 0.9),
                                   (3.5, root + 12, 0.4)):
                add(CH_BASS, p, b + off, b + off + length, 95)

    # --- lead melody -------------------------------------------------------------------
    m = _rng(seed, _S_MELODY)
    center = LEAD_CENTER[attrs.lead] + (6 if happy else -5)
    tonic = _nearest_tonic(key, center)
    cells_fast = ((0.5, 0.5), (0.25, 0.25, 0.5), (0.5, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25))
    cells_slow = ((1.0, 1.0), (1.5, 0.5), (2.0,), (1.0, 1.0))
    cells = cells_fast if fast else cells_slow
    cell_len = 1.0 if fast else 2.0
    steps = np.array([-2, -1, -1, 0, 1, 1, 2, 3, -3])
    degree = int(m.choice([0, 2, 4]))
    lead_vel = 108 if happy else 80
    sustained = LEAD_SUSTAINED[attrs.lead]
    gate = (0.95 if sustained else 1.0) if not fast else (0.8 if sustained else 0.9)
    b = 0.0
    lead = attrs.lead
    while at(b) < duration:
        cell = cells[int(m.integers(len(cells)))]
        rest = m.random() < 0.08
        for length in cell:
            degree = min(7, max(-3, degree + int(m.choice(steps))))
            on_beat = abs(b - round(b)) < 1e-9
            accent = 10 if on_beat else 0
            bend_up = int(m.integers(2800, 4096))
            if not rest and not (has_vocal and vocal_turn(b)):
                pitch = _degree_to_midi(tonic, scale, degree)
                note = add(CH_LEAD, pitch, b, b + length * gate, lead_vel + accent)
                if note is None:
                    pass
                elif lead == "piano":
                    # right-hand octaves
                    notes.append(Note(CH_LEAD, pitch - 12, note.start, note.end,
                                      max(1, note.velocity - 20)))
                elif lead == "electric_guitar" and length >= (0.5 if fast else 1.0):
                    # a string bend up into the note
                    bends.append((note.start, CH_LEAD, 8192 - bend_up))
                    bends.append((note.start + min(0.12, 0.4 * (note.end - note.start)),
                                  CH_LEAD, 8192))
            b += length
        b = cell_len * np.ceil(b / cell_len - 1e-9)

    # a piano or guitar lead also backs the harmony every two beats, the way a pianist or a
    # guitarist comps under a tune
    back_vel = lead_vel - 35
    for bb in range(0, n_beats, 2):
        tones = chord_degrees(bb)[:3]
        if lead == "piano":
            for t in tones:
                add(CH_LEAD, _degree_to_midi(tonic - 12, scale, t), bb, bb + 1.9, back_vel)
        elif lead == "acoustic_guitar":
            first = add(CH_LEAD, _degree_to_midi(tonic - 12, scale, tones[0]), bb, bb + 1.9, back_vel)
            if first is not None:
                for j, t in enumerate(tones[1:] + [tones[0] + 7]):
                    notes.append(Note(CH_LEAD, _degree_to_midi(tonic - 12, scale, t),
                                      first.start + 0.02 * (j + 1), first.end, back_vel))
        elif lead == "electric_guitar":
            root = _degree_to_midi(tonic - 12, scale, tones[0])
            first = add(CH_LEAD, root, bb, bb + 1.8, back_vel)
            if first is not None:
                notes.append(Note(CH_LEAD, root + 7, first.start, first.end, back_vel))

    # --- vocal -------------------------------------------------------------------------
    vowels: list[tuple[float, float, int]] = []
    consonants: list[tuple[float, float, float, int]] = []
    if attrs.vocal != "none":
        v = _rng(seed, _S_VOCAL)
        programs[CH_VOCAL] = VOCAL_PROGRAMS[attrs.vocal]
        if attrs.vocal_style == "sung":
            volumes[CH_VOCAL] = 127
            ccs[CH_VOCAL] = {1: VOCAL_VIBRATO}
            vtonic = _nearest_tonic(key, VOCAL_CENTER[attrs.vocal] + (2 if happy else -2))
            durations = (1.0, 2.0, 1.5, 0.5) if fast else (2.0, 1.0, 3.0, 2.0)
            b = float(v.choice([0.0, 1.0]))
            while at(b) < duration:
                length = float(v.choice(durations))
                tones = chord_degrees(int(b))
                deg = int(v.choice(tones[:3])) + int(v.choice([0, 0, 7, -7]))
                deg = min(7, max(-2, deg))
                vowel = int(v.integers(len(VOWELS)))
                if vocal_turn(b):
                    end = min(b + length * 0.95, turn_end(b) - 0.05)
                    note = add(CH_VOCAL, _degree_to_midi(vtonic, scale, deg), b, end, 105)
                    if note is not None:
                        vowels.append((note.start, note.end, vowel))
                b += length
        else:
            volumes[CH_VOCAL] = 127
            programs[CH_NOISE] = BREATH_NOISE
            volumes[CH_NOISE] = 127
            center_r = RAP_CENTER[attrs.vocal]
            pitches_r = [center_r - 2, center_r, center_r, center_r + 2, center_r + 1]
            b = 0.0
            step = 0.5
            while at(b) < duration:
                if v.random() > 0.12 and vocal_turn(b):
                    p = int(v.choice(pitches_r))
                    accent = 15 if abs(b - round(b)) < 1e-9 else 0
                    length = step * float(v.choice([0.35, 0.45, 0.55]))
                    up, down = int(v.integers(600, 1800)), int(v.integers(800, 2000))
                    vowel = int(v.integers(len(VOWELS)))
                    syl = add(CH_VOCAL, p, b, b + length, 100 + accent, jitter=0.004)
                    add(CH_NOISE, p + 12, b, b + length * 0.6, 110 + accent, jitter=0.0)
                    cons = (float(v.uniform(0.02, 0.045)), float(v.uniform(0.6, 1.0)),
                            int(v.integers(1 << 30)))
                    if syl is not None:
                        vowels.append((syl.start, syl.end, vowel))
                        consonants.append((syl.start, *cons))
                        bends.append((syl.start, CH_VOCAL, 8192 + up))
                        bends.append((syl.start + 0.6 * (syl.end - syl.start), CH_VOCAL,
                                      8192 - down))
                b += step

    # --- drums and maracas ---------------------------------------------------------------
    d = _rng(seed, _S_DRUMS)
    if attrs.drums:
        crash_first = d.random() < 0.5
        for bb in range(0, n_beats, bar):
            hits: list[tuple[float, int, float]] = []
            if genre == "rock":
                hits += [(0, KICK, 110), (2, KICK, 105), (1, SNARE, 110), (3, SNARE, 110)]
                if fast:
                    hits.append((2.5, KICK, 95))
                hits += [(k, CLOSED_HAT, 80) for k in np.arange(0, bar, sub)]
                if bb == 0 and crash_first:
                    hits.append((0, CRASH, 100))
            elif genre == "electronic":
                hits += [(k, KICK, 118) for k in range(bar)]
                hits += [(1, CLAP, 105), (3, CLAP, 105)]
                hits += [(k + 0.5, OPEN_HAT, 80) for k in range(bar)]
                if fast:
                    hits += [(k, CLOSED_HAT, 70) for k in np.arange(0, bar, 0.25) if k % 0.5]
            elif genre == "jazz":
                ride = [0, 1, 1.5, 2, 3, 3.5] if fast else [0, 1, 2, 3]
                hits += [(k, RIDE, 85) for k in ride]
                hits += [(1, PEDAL_HAT, 80), (3, PEDAL_HAT, 80), (0, ACOUSTIC_KICK, 100),
                         (2, ACOUSTIC_KICK, 90)]
                if fast:
                    hits.append((2.5, SNARE, 55))
            elif genre == "reggae":
                # one drop on 3 with a rockers kick on 1, cross-stick on 2 and 4
                hits += [(2, KICK, 112), (2, SIDE_STICK, 110), (0, KICK, 100),
                         (1, SIDE_STICK, 90), (3, SIDE_STICK, 90), (3.5, OPEN_HAT, 85)]
                hits += [(k, CLOSED_HAT, 80) for k in np.arange(0, bar, sub)]
            elif genre == "classical":
                hits += [(0, ACOUSTIC_KICK, 105), (2, ACOUSTIC_KICK, 95)]
                hits += [(1, SNARE, 95), (3, SNARE, 95)]
                hits += [(k, SNARE, 60) for k in np.arange(0.5, bar, 1.0)] if fast else []
                if bb == 0:
                    hits.append((0, CYMBAL_2, 95))
            for off, key_, vel in hits:
                add(CH_DRUMS, key_, bb + float(off), bb + float(off) + 0.1, vel, jitter=0.004)
    if attrs.maracas:
        k = 0.0
        while at(k) < duration:
            accent = 20 if abs(k - round(k)) < 1e-9 else 0
            add(CH_DRUMS, MARACAS, k, k + 0.1, 95 + accent + float(d.normal(0, 4)), jitter=0.004)
            k += sub

    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    bends.sort()
    return Score(programs=programs, volumes=volumes, notes=notes, bends=bends, bpm=bpm, key=key,
                 ccs=ccs, vowels=vowels, consonants=consonants,
                 tilt="bright" if happy else "dark",
                 formant_scale=FORMANT_SCALE.get(attrs.vocal, 1.0))


VOICE_CHANNELS = (CH_VOCAL, CH_NOISE)


def _with_notes(score: Score, notes: list[Note]) -> Score:
    chans = {n.channel for n in notes}
    return Score(programs=score.programs, volumes=score.volumes, notes=notes,
                 bends=[b for b in score.bends if b[1] in chans], bpm=score.bpm, key=score.key,
                 ccs=score.ccs)  # no vowels, no tilt: a plain stem


TILT_LOWPASS_HZ = 1800.0
TILT_HIGHPASS_HZ = 2500.0


def tilt(audio: np.ndarray, kind: str, sr: int) -> np.ndarray:
    """Spectral tilt of the mix: "dark" keeps 35 % dry over a one-pole low-pass at 1.8 kHz,
    "bright" adds half of a one-pole high-pass at 2.5 kHz; anything else leaves it alone."""
    from scipy.signal import lfilter

    x = np.asarray(audio, dtype=np.float32)
    if kind == "dark":
        a = float(np.exp(-2.0 * np.pi * TILT_LOWPASS_HZ / sr))
        low = lfilter([1.0 - a], [1.0, -a], x)
        return (0.35 * x + 0.65 * low).astype(np.float32)
    if kind == "bright":
        a = float(np.exp(-2.0 * np.pi * TILT_HIGHPASS_HZ / sr))
        low = lfilter([1.0 - a], [1.0, -a], x)
        return (x + 0.5 * (x - low)).astype(np.float32)
    return x


CONSONANT_HIGHPASS_HZ = 3000.0


def add_consonants(voice: np.ndarray, bursts: list[tuple[float, float, float, int]],
                   sr: int) -> np.ndarray:
    """Add unvoiced consonants: high-passed (3 kHz) white-noise bursts with a fast exponential
    decay, at ``level`` times three times the voice's RMS, one per ``(time, length, level,
    seed)``."""
    from scipy.signal import lfilter

    x = np.asarray(voice, dtype=np.float32)
    if not bursts:
        return x
    out = x.copy()
    ref = 3.0 * float(np.sqrt(np.mean(x * x))) if np.any(x) else 0.05
    a = float(np.exp(-2.0 * np.pi * CONSONANT_HIGHPASS_HZ / sr))
    for t, length, level, seed in bursts:
        i0 = int(round(t * sr))
        n = int(round(length * sr))
        if i0 >= len(out) or n <= 0:
            continue
        n = min(n, len(out) - i0)
        noise = np.random.default_rng(seed).standard_normal(n)
        high = noise - lfilter([1.0 - a], [1.0, -a], noise)
        env = np.exp(-np.arange(n) / (0.3 * n))
        out[i0:i0 + n] += (ref * level * high * env).astype(np.float32)
    return out


def voice_filter(audio: np.ndarray, vowels: list[tuple[float, float, int]], scale: float,
                 sr: int, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """Shape a voice stem with vowel formants, syllable by syllable.

    A short-time Fourier transform of the stem is multiplied by a spectral envelope made of
    three Gaussian formant peaks (:data:`VOWELS` times `scale`, gains :data:`FORMANT_GAINS`)
    over a floor, with the partials below the first formant mostly kept, with each frame taking the vowel of the syllable it falls in (smoothed over
    about 25 ms); the stem's RMS is kept.
    """
    x = np.asarray(audio, dtype=np.float32)
    if not vowels or not np.any(x):
        return x
    if n_fft % hop:
        raise ValueError("hop must divide n_fft")
    n = len(x)
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    pad = np.concatenate([np.zeros(n_fft // 2, np.float32), x, np.zeros(n_fft, np.float32)])
    n_frames = 1 + (len(pad) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(pad[idx] * win, axis=1).astype(np.complex64)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    envs = np.empty((len(VOWELS), len(freqs)), dtype=np.float32)
    for k, formants in enumerate(VOWELS):
        # the low partials below the first formant keep most of their level (the fundamental
        # of a voice stays strong), the rest is shaped by the formant peaks over a floor
        below = 1.0 / (1.0 + np.exp((freqs - 0.85 * formants[0] * scale) / 40.0))
        e = 0.08 + 0.6 * below
        for f, g, bw in zip(formants, FORMANT_GAINS, FORMANT_BW):
            e += g * np.exp(-0.5 * ((freqs - f * scale) / (bw * scale)) ** 2)
        envs[k] = e
    t = (np.arange(n_frames) * hop) / sr
    weights = np.zeros((n_frames, len(VOWELS)), dtype=np.float32)
    weights[:, vowels[0][2]] = 1.0
    for start, end, vowel in vowels:
        weights[t >= start - 0.01] = 0.0
        weights[t >= start - 0.01, vowel] = 1.0
    k = 3
    kernel = np.ones(k, dtype=np.float32) / k
    weights = np.stack([np.convolve(weights[:, j], kernel, mode="same") for j in range(len(VOWELS))], 1)
    spec *= weights @ envs
    frames = np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * win
    r = n_fft // hop
    out = np.zeros((n_frames + r, hop), dtype=np.float32)
    norm = np.zeros((n_frames + r, hop), dtype=np.float32)
    w2 = (win * win).reshape(r, hop)
    for j in range(r):
        out[j:j + n_frames] += frames[:, j * hop:(j + 1) * hop]
        norm[j:j + n_frames] += w2[j]
    out, norm = out.ravel(), norm.ravel()
    out = out[n_fft // 2: n_fft // 2 + n] / np.maximum(norm[n_fft // 2: n_fft // 2 + n], 1e-3)
    rms_in = float(np.sqrt(np.mean(x * x)))
    rms_out = float(np.sqrt(np.mean(out * out)))
    if rms_out > 0:
        out *= np.float32(rms_in / rms_out)
    return out.astype(np.float32)


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

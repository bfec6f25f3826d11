"""Compose :class:`~tada.world.attributes.ClipAttributes` as MIDI note events (:func:`compose`).

Every random choice comes from generators seeded by ``(seed, part)`` only, never by the
attributes, so two clips with the same seed that differ in one attribute share key, contour,
rhythm cells and velocities as far as the attribute allows: a counterfactual pair. The
:class:`Score` is synthesised by :class:`tada.world.render.Renderer`.

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
  (:func:`~tada.world.effects.voice_filter`); female: Voice Oohs around D5 (MIDI 67-88),
  formants scaled by 1.2; male: Choir Aahs around B2 (MIDI 42-61), formants scaled by 0.92.
  The voice sits 5 dB forward and alternates half bars with the lead melody (call and
  response).
* vocal_style: sung is legato with vibrato, following chord tones; rap is short staccato
  syllables on every eighth note within two semitones, each with a falling pitch bend, a
  breath-noise layer and an unvoiced consonant burst
  (:func:`~tada.world.effects.add_consonants`).
* genre: accompaniment instruments, harmony, rhythm and drum pattern (:data:`GENRE_PARTS`).
* drums: a GM kit on channel 10 with a per-genre pattern; maracas: GM key 70 on the
  accompaniment grid (quarters when slow, eighths when fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tada.world.attributes import ClipAttributes
from tada.world.effects import VOWELS

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
    channels are rendered apart and shaped by those vowels' formants (see
    :func:`~tada.world.effects.voice_filter`). `consonants` holds ``(time, length, level, noise
    seed)`` of noise bursts added to the voice (:func:`~tada.world.effects.add_consonants`).
    `tilt` is the mix's spectral tilt (:func:`~tada.world.effects.tilt`).
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

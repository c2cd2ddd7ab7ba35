"""Lullaby melodies as plain note data, new ones made from a seed, and chords to accompany them.

The traditional tunes are public domain (composers dead for over a century, or folk songs),
written here from the tunes themselves as `pitch/beats` tokens: `E4/1.5` is a dotted quarter
note E above middle C, `r/1` a quarter rest; beats are quarter notes. Each tune is one group
of the transfer set, so a melody is never on both sides of a split. The generated tunes follow
what makes a lullaby (slow, stepwise, major or pentatonic, 3/4 or 4/4, ending on the tonic)
so the model hears tunes that no list of songs holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"^(?:([A-G])([#b]?)(-?\d)|r)/(\d*\.?\d+)$")
_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PENTATONIC = (0, 2, 4, 7, 9)


@dataclass(frozen=True)
class Melody:
    """A tune: (MIDI pitch or None for a rest, beats) pairs in a meter and a key."""

    name: str
    meter: tuple[int, int]  # time signature, e.g. (3, 4) or (6, 8)
    tonic: int  # pitch class of the key, 0 = C
    minor: bool
    notes: tuple[tuple[int | None, float], ...]
    pickup: float = 0.0  # beats before the first bar line; the last bar is short by as much

    @property
    def bar_beats(self) -> float:
        return self.meter[0] * 4 / self.meter[1]

    @property
    def beats(self) -> float:
        return sum(d for _, d in self.notes)


def parse(text: str) -> tuple[tuple[int | None, float], ...]:
    """`C4/1 r/.5 F#4/.5` -> ((60, 1.0), (None, 0.5), (66, 0.5)); bar lines `|` are ignored."""
    notes = []
    for token in text.replace("|", " ").split():
        m = _TOKEN.match(token)
        if not m:
            raise ValueError(f"bad note {token!r}: write pitch/beats like C4/1, Bb3/.5 or r/2")
        letter, accidental, octave, beats = m.groups()
        pitch = None
        if letter:
            pitch = 12 * (int(octave) + 1) + _STEPS[letter] + {"#": 1, "b": -1, "": 0}[accidental]
        notes.append((pitch, float(beats)))
    return tuple(notes)


def tune(name: str, meter: tuple[int, int], key: str, text: str) -> Melody:
    """A melody from bar-separated text; every bar must be full (a pickup and the last bar
    together make one), so a slip in the transcription fails at import, not in the audio."""
    tonic, _, mode = key.partition(" ")
    if tonic[:1] not in _STEPS or mode not in ("major", "minor"):
        raise ValueError(f"{name}: key {key!r} should look like 'F major' or 'A minor'")
    bar = meter[0] * 4 / meter[1]
    lengths = [sum(d for _, d in parse(b)) for b in text.split("|")]
    pickup = lengths[0] if lengths[0] < bar else 0.0
    inner = lengths[1:-1] if pickup else lengths[:-1]
    last_ok = abs(lengths[-1] + pickup - bar) < 1e-9 or (not pickup and lengths[-1] % bar == 0)
    if not last_ok or any(x % bar for x in inner):
        raise ValueError(f"{name}: bars of {lengths} beats do not fit {meter[0]}/{meter[1]}")
    pc = (_STEPS[tonic[0]] + {"#": 1, "b": -1}.get(tonic[1:], 0)) % 12
    return Melody(name, meter, pc, mode == "minor", parse(text), pickup)


TRADITIONAL: tuple[Melody, ...] = (
    tune(
        "brahms-wiegenlied",  # Brahms, Op. 49 No. 4 (1868)
        (3, 4),
        "F major",
        "A4/.5 A4/.5 | C5/2 A4/.5 A4/.5 | C5/2 A4/.5 C5/.5 | F5/1 E5/1.5 D5/.5 |"
        " D5/1 C5/1 G4/.5 A4/.5 | Bb4/1 G4/1 G4/.5 A4/.5 | Bb4/2 G4/.5 Bb4/.5 |"
        " E5/.5 D5/.5 C5/1 E5/1 | F5/2 F4/.5 F4/.5 | F5/2 D5/.5 Bb4/.5 | C5/2 A4/.5 F4/.5 |"
        " Bb4/1 C5/1 D5/1 | C5/2 F4/.5 F4/.5 | F5/2 D5/.5 Bb4/.5 | C5/2 A4/.5 F4/.5 |"
        " Bb4/1 A4/1 G4/1 | F4/2",
    ),
    tune(
        "twinkle-twinkle",  # French folk tune "Ah! vous dirai-je, maman" (1761)
        (4, 4),
        "C major",
        "C4/1 C4/1 G4/1 G4/1 | A4/1 A4/1 G4/2 | F4/1 F4/1 E4/1 E4/1 | D4/1 D4/1 C4/2 |"
        " G4/1 G4/1 F4/1 F4/1 | E4/1 E4/1 D4/2 | G4/1 G4/1 F4/1 F4/1 | E4/1 E4/1 D4/2 |"
        " C4/1 C4/1 G4/1 G4/1 | A4/1 A4/1 G4/2 | F4/1 F4/1 E4/1 E4/1 | D4/1 D4/1 C4/2",
    ),
    tune(
        "frere-jacques",  # French round (18th century)
        (4, 4),
        "F major",
        "F4/1 G4/1 A4/1 F4/1 | F4/1 G4/1 A4/1 F4/1 | A4/1 Bb4/1 C5/2 | A4/1 Bb4/1 C5/2 |"
        " C5/.5 D5/.5 C5/.5 Bb4/.5 A4/1 F4/1 | C5/.5 D5/.5 C5/.5 Bb4/.5 A4/1 F4/1 |"
        " F4/1 C4/1 F4/2 | F4/1 C4/1 F4/2",
    ),
    tune(
        "au-clair-de-la-lune",  # French folk song (18th century)
        (4, 4),
        "G major",
        "G4/1 G4/1 G4/1 A4/1 | B4/2 A4/2 | G4/1 B4/1 A4/1 A4/1 | G4/4 |"
        " G4/1 G4/1 G4/1 A4/1 | B4/2 A4/2 | G4/1 B4/1 A4/1 A4/1 | G4/4 |"
        " A4/1 A4/1 A4/1 A4/1 | E4/2 E4/2 | A4/1 G4/1 F#4/1 E4/1 | D4/4 |"
        " G4/1 G4/1 G4/1 A4/1 | B4/2 A4/2 | G4/1 B4/1 A4/1 A4/1 | G4/4",
    ),
    tune(
        "mary-had-a-little-lamb",  # Lowell Mason (1830s)
        (4, 4),
        "C major",
        "E4/1 D4/1 C4/1 D4/1 | E4/1 E4/1 E4/2 | D4/1 D4/1 D4/2 | E4/1 G4/1 G4/2 |"
        " E4/1 D4/1 C4/1 D4/1 | E4/1 E4/1 E4/1 E4/1 | D4/1 D4/1 E4/1 D4/1 | C4/4",
    ),
    tune(
        "row-your-boat",  # traditional (1852)
        (6, 8),
        "C major",
        "C4/1.5 C4/1.5 | C4/1 D4/.5 E4/1.5 | E4/1 D4/.5 E4/1 F4/.5 | G4/3 |"
        " C5/.5 C5/.5 C5/.5 G4/.5 G4/.5 G4/.5 | E4/.5 E4/.5 E4/.5 C4/.5 C4/.5 C4/.5 |"
        " G4/1 F4/.5 E4/1 D4/.5 | C4/3",
    ),
    tune(
        "london-bridge",  # English nursery rhyme (17th century)
        (4, 4),
        "C major",
        "G4/1.5 A4/.5 G4/1 F4/1 | E4/1 F4/1 G4/2 | D4/1 E4/1 F4/2 | E4/1 F4/1 G4/2 |"
        " G4/1.5 A4/.5 G4/1 F4/1 | E4/1 F4/1 G4/2 | D4/2 G4/2 | E4/1 C4/3",
    ),
    tune(
        "ode-to-joy",  # Beethoven, Symphony No. 9 (1824)
        (4, 4),
        "C major",
        "E4/1 E4/1 F4/1 G4/1 | G4/1 F4/1 E4/1 D4/1 | C4/1 C4/1 D4/1 E4/1 | E4/1.5 D4/.5 D4/2 |"
        " E4/1 E4/1 F4/1 G4/1 | G4/1 F4/1 E4/1 D4/1 | C4/1 C4/1 D4/1 E4/1 | D4/1.5 C4/.5 C4/2 |"
        " D4/1 D4/1 E4/1 C4/1 | D4/1 E4/.5 F4/.5 E4/1 C4/1 | D4/1 E4/.5 F4/.5 E4/1 D4/1 |"
        " C4/1 D4/1 G3/2 | E4/1 E4/1 F4/1 G4/1 | G4/1 F4/1 E4/1 D4/1 | C4/1 C4/1 D4/1 E4/1 |"
        " D4/1.5 C4/.5 C4/2",
    ),
    tune(
        "greensleeves",  # English ballad (16th century)
        (3, 4),
        "A minor",
        "A4/1 | C5/2 D5/1 | E5/1.5 F#5/.5 E5/1 | D5/2 B4/1 | G4/1.5 A4/.5 B4/1 | C5/2 A4/1 |"
        " A4/1.5 G#4/.5 A4/1 | B4/2 G#4/1 | E4/2 A4/1 | C5/2 D5/1 | E5/1.5 F#5/.5 E5/1 |"
        " D5/2 B4/1 | G4/1.5 A4/.5 B4/1 | C5/1.5 B4/.5 A4/1 | G#4/1.5 F#4/.5 G#4/1 | A4/2",
    ),
    tune(
        "fur-elise",  # Beethoven, WoO 59 (1810), first theme
        (3, 8),
        "A minor",
        "E5/.25 D#5/.25 | E5/.25 D#5/.25 E5/.25 B4/.25 D5/.25 C5/.25 |"
        " A4/.5 r/.25 C4/.25 E4/.25 A4/.25 | B4/.5 r/.25 E4/.25 G#4/.25 B4/.25 |"
        " C5/.5 r/.25 E4/.25 E5/.25 D#5/.25 | E5/.25 D#5/.25 E5/.25 B4/.25 D5/.25 C5/.25 |"
        " A4/.5 r/.25 C4/.25 E4/.25 A4/.25 | B4/.5 r/.25 E4/.25 C5/.25 B4/.25 | A4/1",
    ),
    tune(
        "alle-meine-entchen",  # German children's song (19th century)
        (4, 4),
        "C major",
        "C4/1 D4/1 E4/1 F4/1 | G4/2 G4/2 | A4/1 A4/1 A4/1 A4/1 | G4/4 | A4/1 A4/1 A4/1 A4/1 |"
        " G4/4 | F4/1 F4/1 F4/1 F4/1 | E4/2 E4/2 | D4/1 D4/1 D4/1 D4/1 | C4/4",
    ),
    tune(
        "amazing-grace",  # "New Britain", American hymn tune (1829)
        (3, 4),
        "G major",
        "D4/1 | G4/2 B4/.5 G4/.5 | B4/2 A4/1 | G4/2 E4/1 | D4/2 D4/1 | G4/2 B4/.5 G4/.5 |"
        " B4/2 A4/.5 B4/.5 | D5/3 | D5/2 B4/1 | D5/2 B4/.5 G4/.5 | B4/2 A4/1 | G4/2 E4/1 |"
        " D4/2 D4/1 | G4/2 B4/.5 G4/.5 | B4/2 A4/1 | G4/3 | G4/2",
    ),
    tune(
        "stille-nacht",  # Gruber (1818)
        (6, 8),
        "C major",
        "G4/1.5 A4/.5 G4/1 | E4/3 | G4/1.5 A4/.5 G4/1 | E4/3 | D5/2 D5/1 | B4/3 | C5/2 C5/1 |"
        " G4/3 | A4/2 A4/1 | C5/1.5 B4/.5 A4/1 | G4/1.5 A4/.5 G4/1 | E4/3 | A4/2 A4/1 |"
        " C5/1.5 B4/.5 A4/1 | G4/1.5 A4/.5 G4/1 | E4/3 | D5/2 D5/1 | F5/1.5 D5/.5 B4/1 |"
        " C5/3 | E5/3 | C5/1 G4/1 E4/1 | G4/1.5 F4/.5 D4/1 | C4/6",
    ),
    tune(
        "pachelbel-canon",  # Pachelbel, Canon in D (17th century), first entries
        (4, 4),
        "D major",
        "F#5/2 E5/2 | D5/2 C#5/2 | B4/2 A4/2 | B4/2 C#5/2 | D5/1 C#5/1 B4/1 A4/1 |"
        " G4/1 F#4/1 G4/1 E4/1 | D4/1 F#4/1 A4/1 G4/1 | F#4/1 D4/1 F#4/1 E4/1",
    ),
)

_RHYTHMS = {
    3: ((2, 1), (1, 1, 1), (1.5, 0.5, 1), (1, 2), (2, 0.5, 0.5)),
    4: ((1, 1, 1, 1), (2, 2), (2, 1, 1), (1.5, 0.5, 2), (1, 1, 2), (1, 0.5, 0.5, 2)),
}
_LAST = {3: (3,), 4: (4,)}


def generate(name: str, seed: int) -> Melody:
    """A new 8-bar lullaby: a 2-bar motif, its answer, the motif again, a close on the tonic.

    Major or major pentatonic, 3/4 or 4/4, mostly steps with an occasional leap; the second
    phrase ends away from the tonic and the last lands on it, as folk lullabies do.
    """
    rng = np.random.default_rng(seed)
    beats_per_bar = int(rng.choice([3, 4]))
    scale = PENTATONIC if rng.random() < 0.4 else MAJOR
    tonic = int(rng.integers(0, 12))
    base = 60 + (tonic if tonic < 7 else tonic - 12)
    degree = int(rng.choice([0, 2, 4]))  # start on a chord tone of the tonic
    n = len(scale)

    def pitch(d: int) -> int:
        return base + 12 * (d // n) + scale[d % n]

    def phrase(bars: int, end: int | None) -> list[tuple[int, float]]:
        nonlocal degree
        out: list[tuple[int, float]] = []
        for bar in range(bars):
            last = end is not None and bar == bars - 1
            durations = _LAST[beats_per_bar] if last else _RHYTHMS[beats_per_bar]
            rhythm = durations if last else durations[int(rng.integers(len(durations)))]
            for i, d in enumerate(rhythm):
                if last and i == len(rhythm) - 1:
                    degree = end  # type: ignore[assignment]
                else:
                    step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
                    degree = int(np.clip(degree + step, -2, n + 3))
                out.append((pitch(degree), float(d)))
        return out

    motif = phrase(2, None)
    answer = phrase(2, int(rng.choice([1, n // 2 + 1, 4 % n])))
    close = phrase(2, 0)
    notes = motif + answer + motif + close
    return Melody(name, (beats_per_bar, 4), tonic, False, tuple(notes))


# Chords a key offers, as (root in scale degrees, preference); triads are built on the scale.
_CHORD_DEGREES = ((0, 3), (4, 2), (3, 2), (5, 1), (1, 0))


def chords(melody: Melody) -> list[tuple[float, float, tuple[int, int, int]]]:
    """A triad for each bar (half bar in 4/4): (start, beats, pitch classes).

    The triad of the key covering most of the span's melody wins, the tonic and dominant
    preferred on ties; the last span is the tonic, as the tune ends there.
    """
    scale = MINOR if melody.minor else MAJOR
    span = melody.bar_beats / 2 if melody.bar_beats == 4 else melody.bar_beats
    triads = []
    for root, preference in _CHORD_DEGREES:
        pcs = tuple((melody.tonic + scale[(root + k) % 7]) % 12 for k in (0, 2, 4))
        if melody.minor and root == 4:  # harmonic minor: the dominant has a major third
            pcs = (pcs[0], (pcs[1] + 1) % 12, pcs[2])
        triads.append((pcs, preference))
    out = []
    start = 0.0
    while start < melody.beats - 1e-9:
        first = start == 0 and melody.pickup
        end = min(start + (melody.pickup if first else span), melody.beats)
        weight = dict.fromkeys(range(12), 0.0)
        t = 0.0
        for p, d in melody.notes:
            overlap = min(t + d, end) - max(t, start)
            if p is not None and overlap > 0:
                weight[p % 12] += overlap
            t += d
        best = max(triads, key=lambda tp: (sum(weight[pc] for pc in tp[0]), tp[1]))
        out.append((start, end - start, best[0]))
        start = end
    out[-1] = (out[-1][0], out[-1][1], triads[0][0])
    return out

"""Lullabies, music boxes and sampled voices: melodies arranged as MIDI and rendered by fluidsynth.

An `Arrangement` says who plays a melody how (instrument, accompaniment, tempo, key, register,
room); `plan` draws a seeded list of them to fill a number of minutes, `parts` turns one into
MIDI parts, and `Fluidsynth.render` plays them through a General MIDI soundfont. Everything but
the rendering is pure, so the plans are tested without a synthesiser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from pi_monitor.training.corpus import resample
from pi_monitor.training.melodies import Melody, chords
from pi_monitor.training.midi import Note, Part, smf

# General MIDI programs (0-based, as sent in a program change) and the register each sounds
# best in (the MIDI pitch the melody's median is moved near).
MUSIC_BOX = {
    10: ("music box", 84),
    8: ("celesta", 79),
    9: ("glockenspiel", 84),
    11: ("vibraphone", 72),
    14: ("tubular bells", 67),
}
LULLABY = {
    0: ("piano", 72),
    12: ("marimba", 72),
    13: ("xylophone", 79),
    46: ("harp", 67),
    24: ("nylon guitar", 64),
    73: ("flute", 76),
    74: ("recorder", 76),
    79: ("ocarina", 76),
    48: ("strings", 67),
    49: ("slow strings", 67),
    88: ("new age pad", 67),
    89: ("warm pad", 67),
}
VOICE = {52: ("choir aahs", 67), 53: ("voice oohs", 67)}
ACCOMPANIMENT = (48, 89, 46, 0, 24)  # strings, warm pad, harp, piano, nylon guitar
SUSTAINED = {48, 49, 52, 53, 73, 74, 79, 88, 89}  # played legato, accompanied by held chords
RENDER_RATE = 32000  # rendered above the output rate, then low-passed down to it

INSTRUMENT_NAMES = {
    p: name for table in (MUSIC_BOX, LULLABY, VOICE) for p, (name, _) in table.items()
}


def category_of(program: int) -> str:
    """Manifest category: mechanical/metallic players, sampled voices, or other lullaby music."""
    if program in MUSIC_BOX:
        return "music_box"
    return "synth_voice" if program in VOICE else "lullaby_music"


@dataclass(frozen=True)
class Arrangement:
    """One rendering of a melody: who plays it, how fast, in which key and room, how often."""

    melody: Melody
    program: int
    accompaniment: int | None  # program of a soft accompaniment, None for the melody alone
    bpm: float
    transpose: int  # semitones, before the melody is moved to the instrument's register
    repeats: int
    reverb_send: int
    chorus_send: int
    room_size: float
    peak_db: float  # the render is scaled to this peak level
    seed: int

    @property
    def seconds(self) -> float:
        return self.repeats * self.melody.beats * 60 / self.bpm

    @property
    def category(self) -> str:
        return category_of(self.program)


def plan(melodies: tuple[Melody, ...], voice: bool, minutes: float, seed: int) -> list[Arrangement]:
    """Seeded arrangements, round-robin over `melodies`, until they last `minutes`.

    Instrument plans draw a music box or celesta/glockenspiel/vibraphone/bells for half of
    the renderings (the music box itself most often) and a lullaby instrument for the rest;
    voice plans use the sampled choir and 'ooh' voices, usually alone.
    """
    rng = np.random.default_rng(seed)
    out: list[Arrangement] = []
    total = 0.0
    while total < minutes * 60:
        melody = melodies[len(out) % len(melodies)]
        if voice:
            program = int(rng.choice(list(VOICE)))
            accompaniment = None if rng.random() < 0.6 else int(rng.choice([24, 46, 89]))
        elif rng.random() < 0.5:
            program = 10 if rng.random() < 0.4 else int(rng.choice([8, 9, 11, 14]))
            accompaniment = program if rng.random() < 0.5 else None
        else:
            program = int(rng.choice(list(LULLABY)))
            accompaniment = int(rng.choice(ACCOMPANIMENT)) if rng.random() < 0.5 else None
        bpm = float(rng.uniform(60, 90))
        target = rng.uniform(25, 60)
        repeats = max(1, round(target / (melody.beats * 60 / bpm)))
        arrangement = Arrangement(
            melody=melody,
            program=program,
            accompaniment=accompaniment,
            bpm=round(bpm, 1),
            transpose=int(rng.integers(-4, 6)),
            repeats=repeats,
            reverb_send=int(rng.integers(20, 91)),
            chorus_send=int(rng.choice([0, 0, 20, 40, 60])),
            room_size=round(float(rng.uniform(0.2, 0.9)), 2),
            peak_db=round(float(rng.uniform(-20, -3)), 1),
            seed=int(rng.integers(2**31)),
        )
        out.append(arrangement)
        total += arrangement.seconds
    return out


def _register_shift(melody: Melody, target: int) -> int:
    """Whole octaves that bring the melody's median pitch nearest `target`."""
    median = float(np.median([p for p, _ in melody.notes if p is not None]))
    return 12 * round((target - median) / 12)


def parts(a: Arrangement) -> tuple[Part, ...]:
    """The melody (channel 0) and its accompaniment (channel 1) as MIDI parts."""
    rng = np.random.default_rng(a.seed)
    table = {**MUSIC_BOX, **LULLABY, **VOICE}
    target = table[a.program][1]
    if a.program in VOICE and rng.random() < 0.4:
        target = 55  # a lower, male register
    shift = a.transpose + _register_shift(a.melody, target - a.transpose)
    legato = 0.97 if a.program in SUSTAINED else 0.9
    jitter = 0.0 if a.program in MUSIC_BOX else 0.02  # a music box's cylinder keeps time
    base_velocity = int(rng.integers(70, 101))
    melody: list[Note] = []
    for r in range(a.repeats):
        t = r * a.melody.beats
        for pitch, beats in a.melody.notes:
            if pitch is not None:
                start = max(0.0, t + rng.uniform(-jitter, jitter))
                velocity = int(np.clip(base_velocity + rng.integers(-6, 7), 1, 127))
                melody.append(Note(start, beats * legato, pitch + shift, velocity))
            t += beats
    lead = Part(0, a.program, tuple(melody), 100, a.reverb_send, a.chorus_send)
    if a.accompaniment is None:
        return (lead,)
    return lead, _accompany(a, shift, rng)


def _accompany(a: Arrangement, shift: int, rng: np.random.Generator) -> Part:
    """Held chords for sustained instruments, broken chords for plucked and struck ones."""
    program = a.accompaniment
    assert program is not None
    low = 48 if program not in MUSIC_BOX else 60  # a music box's bass comb is still high
    velocity = int(rng.integers(35, 56))
    notes: list[Note] = []
    for r in range(a.repeats):
        for start, beats, pcs in chords(a.melody):
            t0 = r * a.melody.beats + start
            root, third, fifth = (low + (pc + shift - low) % 12 for pc in pcs)
            voicing = (root, fifth if fifth > root else fifth + 12, third + 12)
            if program in SUSTAINED:
                notes += [Note(t0, beats * 0.98, p, velocity) for p in voicing]
                continue
            step = 0.5 if beats >= 1 else beats
            for k in range(round(beats / step)):
                notes.append(Note(t0 + k * step, step * 1.5, voicing[k % 3], velocity))
    return Part(1, program, tuple(notes), 80, a.reverb_send, a.chorus_send)


class RenderError(RuntimeError):
    """fluidsynth did not turn an arrangement into audio."""


@dataclass(frozen=True)
class Fluidsynth:
    """A fluidsynth binary, with the library path it needs when unpacked from packages."""

    binary: Path
    library_path: str = ""

    @classmethod
    def find(cls, tools: Path) -> Fluidsynth | None:
        """The one unpacked under `tools` (see transfer.fetch_tools), else one on PATH."""
        unpacked = tools / "fluidsynth" / "usr" / "bin" / "fluidsynth"
        if unpacked.is_file():
            libs = sorted(str(p) for p in tools.glob("*/usr/lib/*-linux-gnu") if p.is_dir())
            return cls(unpacked, os.pathsep.join(libs))
        on_path = shutil.which("fluidsynth")
        return cls(Path(on_path)) if on_path else None

    def render(self, a: Arrangement, soundfont: Path, rate: int) -> np.ndarray:
        """float32 mono audio at `rate` of `a` played with `soundfont`, peak at a.peak_db."""
        song = smf(parts(a), a.bpm, a.melody.meter)
        settings = {
            "synth.reverb.room-size": a.room_size,
            "synth.reverb.level": 0.9,
            "synth.reverb.width": 1.0,
            "synth.chorus.level": 1.5,
        }
        env = dict(os.environ)
        if self.library_path:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (self.library_path, env.get("LD_LIBRARY_PATH", "")) if p
            )
        with tempfile.TemporaryDirectory(prefix="pi-monitor-render-") as tmp:
            mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
            mid.write_bytes(song)
            command = [str(self.binary), "-ni", "-q", "-F", str(wav), "-T", "wav", "-O", "float"]
            command += ["-r", str(RENDER_RATE), "-g", "0.5"]
            for key, value in settings.items():
                command += ["-o", f"{key}={value}"]
            done = subprocess.run(
                [*command, str(soundfont), str(mid)], capture_output=True, text=True, env=env
            )
            if done.returncode != 0 or not wav.is_file():
                raise RenderError(
                    f"{self.binary} could not render {a.melody.name} with {soundfont}: "
                    f"{done.stderr.strip()[-400:]}"
                )
            audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
        x = _trim_tail(resample(audio.mean(axis=1), sr, rate))
        peak = float(np.max(np.abs(x))) or 1.0
        return (x * (10 ** (a.peak_db / 20) / peak)).astype(np.float32)


def _trim_tail(x: np.ndarray, below_peak_db: float = -60.0) -> np.ndarray:
    """Cut the render after its last sample within `below_peak_db` of its peak (the synth
    plays on until every voice has died away)."""
    loud = np.flatnonzero(np.abs(x) > np.max(np.abs(x), initial=0.0) * 10 ** (below_peak_db / 20))
    return x[: loud[-1] + 1] if len(loud) else x

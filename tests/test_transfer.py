"""Transfer audio: the MIDI writer, the melodies, the plans, and the builder on fake packages.

Nothing here downloads, except the one test marked slow that fetches a real 10 MB package
(skipped without the Debian mirror). The fluidsynth test skips, saying why, when no fluidsynth
is unpacked in the cache (`python -m pi_monitor.training transfer` puts one there) or on PATH.
"""

from __future__ import annotations

import csv
import fnmatch
import shutil
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pi_monitor.training import debian, lullabies, transfer
from pi_monitor.training.corpus import DEFAULT_CACHE, read_manifest
from pi_monitor.training.melodies import TRADITIONAL, Melody, chords, generate, tune
from pi_monitor.training.midi import TICKS_PER_BEAT, Note, Part, smf

CORPUS_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "cry-data" / "manifest.csv"
TOOLS = DEFAULT_CACHE / "transfer-tools"
SR = 16000


# ---- MIDI ----


def _events(data: bytes) -> list[tuple[int, bytes]]:
    """(absolute tick, message) of a format-0 file, checking every chunk length on the way."""
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, TICKS_PER_BEAT)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    track = data[22:]
    assert len(track) == length
    out, i, tick = [], 0, 0
    while i < len(track):
        delta = 0
        while True:
            byte = track[i]
            i += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        tick += delta
        status = track[i]
        if status == 0xFF:
            size = track[i + 2]
            message = track[i : i + 3 + size]
        else:
            message = track[i : i + (2 if status >> 4 == 0xC else 3)]
        out.append((tick, message))
        i += len(message)
    assert out[-1][1] == b"\xff\x2f\x00", "the track must end with end-of-track"
    return out


def test_midi_file_holds_every_note_at_its_tick_with_valid_chunks() -> None:
    notes = (Note(0, 1, 60, 90), Note(1, 0.5, 64, 80), Note(100, 2, 67, 70))  # a 3-byte delta
    events = _events(smf((Part(0, 10, notes, reverb=50, chorus=20),), 72, (3, 4)))
    ons = [(t, m[1], m[2]) for t, m in events if m[0] == 0x90]
    offs = [(t, m[1]) for t, m in events if m[0] == 0x80]
    assert ons == [(0, 60, 90), (480, 64, 80), (48000, 67, 70)]
    assert offs == [(480, 60), (720, 64), (48960, 67)]
    assert (0, b"\xc0\x0a") in events  # program change to the music box
    assert (0, b"\xb0\x5b\x32") in events and (0, b"\xb0\x5d\x14") in events  # reverb, chorus
    assert (0, b"\xff\x58\x04\x03\x02\x18\x08") in events  # 3/4
    assert (0, b"\xff\x51\x03" + round(60e6 / 72).to_bytes(3, "big")) in events


def test_midi_note_off_comes_before_a_note_on_at_the_same_tick() -> None:
    events = _events(smf((Part(0, 0, (Note(0, 1, 60, 90), Note(1, 1, 60, 90))),), 60))
    at_480 = [m[0] for t, m in events if t == 480]
    assert at_480 == [0x80, 0x90]


@pytest.mark.parametrize(
    "part",
    [
        Part(9, 0, (Note(0, 1, 60, 90),)),
        Part(0, 128, (Note(0, 1, 60, 90),)),
        Part(0, 0, (Note(0, 1, 128, 90),)),
        Part(0, 0, (Note(0, 0, 60, 90),)),
    ],
)
def test_midi_writer_refuses_the_drum_channel_and_out_of_range_values(part: Part) -> None:
    with pytest.raises(ValueError):
        smf((part,), 60)


# ---- melodies and arrangements ----


def test_traditional_melodies_fill_their_bars_and_stay_in_a_playable_range() -> None:
    assert len({m.name for m in TRADITIONAL}) == len(TRADITIONAL) >= 12
    for m in TRADITIONAL:
        pitches = [p for p, _ in m.notes if p is not None]
        assert min(pitches) >= 48 and max(pitches) <= 84, m.name
        assert m.beats % m.bar_beats == 0, m.name
        assert all(d > 0 for _, d in m.notes), m.name


def test_tune_refuses_a_bar_that_does_not_fit_the_meter() -> None:
    assert tune("ok", (3, 4), "C major", "C4/1 | E4/2 G4/1 | C5/2").pickup == 1
    with pytest.raises(ValueError, match="do not fit 3/4"):
        tune("slip", (3, 4), "C major", "C4/1 | E4/2 G4/2 | C5/2")
    with pytest.raises(ValueError, match="bad note"):
        tune("typo", (4, 4), "C major", "H4/4")


def test_generated_melodies_are_seeded_eight_bars_and_end_on_the_tonic() -> None:
    a, b, c = generate("a", 7), generate("a", 7), generate("a", 8)
    assert a == b and a.notes != c.notes
    for m in (generate(f"m{i}", i) for i in range(30)):
        assert m.meter in ((3, 4), (4, 4)) and m.beats == 8 * m.bar_beats
        assert m.notes[-1][0] % 12 == m.tonic


def test_chords_cover_the_melody_and_close_on_the_tonic_triad() -> None:
    for m in (*TRADITIONAL, generate("g", 3)):
        spans = chords(m)
        assert spans[0][0] == 0 and abs(sum(b for _, b, _ in spans) - m.beats) < 1e-9
        assert spans[-1][2][0] == m.tonic
        assert m.pickup == 0 or spans[0][1] == m.pickup


def test_plans_fill_their_minutes_with_seeded_instrument_and_voice_renderings() -> None:
    instruments = lullabies.plan(TRADITIONAL, False, 10, seed=1)
    assert instruments == lullabies.plan(TRADITIONAL, False, 10, seed=1)
    assert sum(a.seconds for a in instruments) >= 600
    assert {a.category for a in instruments} == {"music_box", "lullaby_music"}
    assert all(60 <= a.bpm <= 90 for a in instruments)
    voices = lullabies.plan(TRADITIONAL, True, 5, seed=1)
    assert {a.category for a in voices} == {"synth_voice"}
    assert {a.program for a in voices} == {52, 53}  # choir aahs, voice oohs


def test_arranged_parts_move_the_melody_into_the_instrument_register() -> None:
    melody = TRADITIONAL[1]  # twinkle, median G4
    for a in lullabies.plan((melody,), False, 20, seed=2):
        lead = lullabies.parts(a)[0]
        median = np.median([n.pitch for n in lead.notes])
        target = {**lullabies.MUSIC_BOX, **lullabies.LULLABY}[a.program][1]
        assert abs(median - target) <= 6, (a.program, median)
        assert len(lead.notes) == a.repeats * sum(p is not None for p, _ in melody.notes)


def test_no_melody_is_rendered_in_two_sources() -> None:
    rendered = [s for s in transfer.catalogue(0) if isinstance(s, transfer.RenderedSource)]
    names = [m.name for s in rendered for m in s.melodies]
    assert len(names) == len(set(names))
    assert {s.source for s in rendered} == {
        "generated:fluidsynth-fluidr3",
        "generated:fluidsynth-timgm6mb",
        "generated:fluidsynth-voice-fluidr3",
        "generated:fluidsynth-voice-timgm6mb",
    }


def _soundfont() -> Path | None:
    for path in (
        TOOLS / "timgm6mb-soundfont" / "usr/share/sounds/sf2/TimGM6mb.sf2",
        Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
        Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    ):
        if path.is_file():
            return path
    return None


def test_fluidsynth_plays_a_written_midi_file_at_the_written_pitch() -> None:
    synth, soundfont = lullabies.Fluidsynth.find(TOOLS), _soundfont()
    if synth is None or soundfont is None:
        pytest.skip(
            f"no fluidsynth and GM soundfont in {TOOLS} or on this machine: "
            "run `python -m pi_monitor.training transfer` once"
        )
    melody = Melody("a", (4, 4), 9, False, ((69, 4.0),))
    a = lullabies.Arrangement(melody, 73, None, 60.0, 0, 1, 30, 0, 0.3, -6.0, seed=0)
    x = synth.render(a, soundfont, SR)
    assert 3.0 < len(x) / SR < 10.0
    assert np.max(np.abs(x)) == pytest.approx(10 ** (-6 / 20), rel=1e-3)
    pitch = lullabies.parts(a)[0].notes[0].pitch
    spectrum = np.abs(np.fft.rfft(x[SR : 3 * SR] * np.hanning(2 * SR)))
    peak_hz = np.argmax(spectrum) * SR / (2 * SR)
    assert peak_hz == pytest.approx(440 * 2 ** ((pitch - 69) / 12), rel=0.03)


def test_a_synthesiser_that_fails_is_reported_with_the_melody_and_soundfont(
    tmp_path: Path,
) -> None:
    a = lullabies.plan(TRADITIONAL[:1], False, 0.1, seed=0)[0]
    broken = lullabies.Fluidsynth(Path(shutil.which("false") or "/bin/false"))
    with pytest.raises(lullabies.RenderError, match=r"brahms-wiegenlied with .*none\.sf2"):
        broken.render(a, tmp_path / "none.sf2", SR)


# ---- the builder, on fake packages ----

GPL = "Files: *\nCopyright: someone\nLicense: GPL-2+\n"
DEP5 = (
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    "Files: *\nCopyright: a\nLicense: GPL-3+\n\n"
    "Files: usr/share/fake/nc/*\nCopyright: b\nLicense: CC-BY-NC-3.0\n"
)


def _tone(seconds: float, hz: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def make_package(tree: Path, package: str, copyright: str) -> None:
    """A package as `dpkg-deb -x` leaves it: music tracks, speech by two speakers, a silent
    file, a non-commercial file and a text file."""
    root = tree / package
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright)
    music = root / "usr/share/fake/music"
    music.mkdir(parents=True)
    soundfile.write(music / "long track.ogg", _tone(45, 330), 22050)
    soundfile.write(music / "short.flac", _tone(5, 440), 22050)
    soundfile.write(music / "silence.wav", np.zeros(22050 * 3, np.float32), 22050)
    (music / "notes.txt").write_text("not audio")
    for spk in ("anna", "bert"):
        (root / "usr/share/fake/voices" / spk).mkdir(parents=True)
        for i in range(3):
            soundfile.write(root / f"usr/share/fake/voices/{spk}/{i}.wav", _tone(2, 200), 22050)
    (root / "usr/share/fake/nc").mkdir()
    soundfile.write(root / "usr/share/fake/nc/x.wav", _tone(2, 300), 22050)


class FakeApt:
    """Stands in for `debian.fetch`: copies a prepared package tree, counting the calls."""

    def __init__(self, tree: Path) -> None:
        self.tree, self.calls = tree, []

    def __call__(self, package: str, into: Path) -> Path:
        self.calls.append(package)
        into.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copytree(self.tree / package, into / package))


def _source(
    package: str = "fake-music", cap: float = 10.0, licence: str | None = "GPL-2+"
) -> transfer.PackageSource:
    return transfer.PackageSource(
        package,
        (
            transfer.Take("*/music/*", "music", transfer.TRACK),
            transfer.Take("*/voices/*", "adult_speech", r"voices/(?P<spk>[^/]+)/"),
            transfer.Take("*/nc/*", "household", transfer.FILE),
        ),
        licence,
        r"License: GPL-[23]\+",
        cap,
    )


@pytest.fixture
def apt(tmp_path: Path) -> FakeApt:
    make_package(tmp_path / "tree", "fake-music", GPL)
    make_package(tmp_path / "tree", "fake-dep5", DEP5)
    return FakeApt(tmp_path / "tree")


def test_build_writes_16k_flac_pieces_and_rows_with_the_corpus_columns(
    apt: FakeApt, tmp_path: Path
) -> None:
    out = tmp_path / "transfer"
    rows, report = transfer.build(out, tmp_path / "tools", 0, (_source(),), apt)
    header = (out / "manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(transfer.COLUMNS)
    if CORPUS_MANIFEST.is_file():
        assert header == CORPUS_MANIFEST.read_text().splitlines()[0]
    clips = read_manifest(out)
    assert len(clips) == len(rows) == 3 + 1 + 6 + 1  # 45 s -> 3 pieces, 5 s, 6 voices, nc
    for c in clips:
        audio, sr = soundfile.read(out / c.path)
        assert sr == SR and audio.ndim == 1 and c.path.endswith(".flac")
        assert len(audio) / SR == pytest.approx(c.duration_s, abs=0.01) and c.duration_s <= 20
        assert c.label == "not_cry" and c.source == "debian:fake-music" and c.orig_sr == 22050
    groups = {c.group for c in clips}
    assert "debian:fake-music|track:long track" in groups
    assert {"debian:fake-music|spk:anna", "debian:fake-music|spk:bert"} <= groups
    assert report.skipped == {"debian:fake-music: silent piece": 1}


def test_build_reuses_what_is_there_and_rebuilds_a_changed_source(
    apt: FakeApt, tmp_path: Path
) -> None:
    out = tmp_path / "transfer"
    transfer.build(out, tmp_path / "tools", 0, (_source(),), apt)
    manifest = (out / "manifest.csv").read_bytes()
    flac = sorted(out.rglob("*.flac"))
    stamps = [f.stat().st_mtime_ns for f in flac]
    _, again = transfer.build(out, tmp_path / "tools", 0, (_source(),), apt)
    assert apt.calls == ["fake-music"] and again.reused == ["debian:fake-music"]
    assert (out / "manifest.csv").read_bytes() == manifest
    assert [f.stat().st_mtime_ns for f in flac] == stamps
    rows, rebuilt = transfer.build(out, tmp_path / "tools", 0, (_source(cap=0.3),), apt)
    assert apt.calls == ["fake-music"] * 2 and rebuilt.built == ["debian:fake-music"]
    assert 18 <= sum(float(r["duration_s"]) for r in rows) < 18 + 20
    assert len(list(out.rglob("*.flac"))) == len(rows)


def test_build_is_deterministic_for_a_seed(apt: FakeApt, tmp_path: Path) -> None:
    a, _ = transfer.build(tmp_path / "a", tmp_path / "tools", 3, (_source(cap=0.5),), apt)
    b, _ = transfer.build(tmp_path / "b", tmp_path / "tools", 3, (_source(cap=0.5),), apt)
    assert a == b
    for r in a:
        assert (tmp_path / "a" / r["path"]).read_bytes() == (
            tmp_path / "b" / r["path"]
        ).read_bytes()


def test_a_cap_shares_time_between_categories_and_takes_groups_in_turn() -> None:
    def cand(name: str, category: str, group: str, seconds: float) -> transfer.Candidate:
        return transfer.Candidate(Path(name), name, category, group, "GPL-2+", SR, seconds)

    candidates = [cand(f"t{i}.ogg", "music", f"t{i}", 100) for i in range(3)]
    candidates += [cand(f"s{i}.wav", "adult_speech", "spk", 2) for i in range(4)]
    order = transfer.schedule(candidates, seed=0)
    assert len(order) == 3 * 5 + 4
    assert sum(c.category == "adult_speech" for c, *_ in order[:5]) == 4  # 4 x 2 s vs 20 s
    music = [c for c, *_ in order if c.category == "music"]
    assert len({c.group for c in music[:3]}) == 3
    assert all(stop - start <= transfer.PIECE_S for _, _, start, stop in order)


def test_pieces_are_equal_at_most_20_s_and_cover_the_file() -> None:
    assert transfer.pieces(45) == [(0, 15), (15, 30), (30, 45)]
    assert transfer.pieces(20) == [(0, 20)]
    assert transfer.pieces(3.5) == [(0, 3.5)]


def test_per_file_licences_come_from_the_copyright_and_unusable_ones_are_left_out(
    apt: FakeApt, tmp_path: Path
) -> None:
    rows, report = transfer.build(
        tmp_path / "t", tmp_path / "tools", 0, (_source("fake-dep5", licence=None),), apt
    )
    assert {r["license"] for r in rows} == {"GPL-3+"}
    assert not any(r["category"] == "household" for r in rows)
    assert report.skipped["debian:fake-dep5: licence CC-BY-NC-3.0 does not allow use"] == 1


def test_build_stops_when_the_copyright_no_longer_says_the_recorded_licence(
    tmp_path: Path,
) -> None:
    make_package(tmp_path / "tree", "fake-music", "Files: *\nLicense: Proprietary\n")
    with pytest.raises(debian.PackageError, match="fake-music: its copyright file"):
        transfer.build(
            tmp_path / "t", tmp_path / "tools", 0, (_source(),), FakeApt(tmp_path / "tree")
        )
    assert not (tmp_path / "t" / "audio" / "debian_fake-music").exists()


def test_the_outside_check_uses_no_training_package_and_takes_no_cry() -> None:
    def take(spec: transfer.PackageSource, name: str) -> str | None:
        found = (t for t in spec.takes if fnmatch.fnmatchcase(name, t.glob))
        return next((t.category for t in found), None)

    outside = {s.package: s for s in transfer.outside_catalogue()}
    trained = {s.package for s in transfer.catalogue() if isinstance(s, transfer.PackageSource)}
    assert not outside.keys() & trained
    sounds = "usr/share/scratch/Media/Sounds"
    assert take(outside["scratch"], f"{sounds}/Human/BabyCry.mp3") is None
    assert take(outside["scratch"], f"{sounds}/Human/Scream-female.wav") == "human_sounds"
    assert take(outside["scratch"], f"{sounds}/Animal/Kitten.wav") == "cat"
    assert take(outside["xemacs21-basesupport"], "usr/share/xemacs21/etc/sounds/cry.wav") is None
    noises = "usr/share/qabcs/abcs/all/noises"
    assert take(outside["qabcs-data"], f"{noises}/cat.ogg") == "cat"
    assert take(outside["qabcs-data"], f"{noises}/lion.ogg") == "animal_other"
    assert take(outside["qabcs-data"], f"{noises}/piano.ogg") == "music"
    assert take(outside["qabcs-data"], f"{noises}/balloons.ogg") == "sound_effects"
    assert take(outside["qabcs-data"], "usr/share/qabcs/abcs/en/sounds/a.ogg") is None
    voices = "usr/share/games/hedgewars/Data/Sounds/voices"
    assert take(outside["hedgewars-data"], f"{voices}/Singer/Hello.ogg") == "singing_unknown_sex"
    assert take(outside["hedgewars-data"], f"{voices}/Pirate/Ow1.ogg") == "adult_speech"


def test_outside_sources_leave_out_what_the_corpus_holds() -> None:
    every = {s.source for s in transfer.outside_catalogue()}
    assert {s.source for s in transfer.outside_sources({"debian:scratch"})} == every - {
        "debian:scratch"
    }
    if not CORPUS_MANIFEST.is_file():
        pytest.skip(f"cry-data not found at {CORPUS_MANIFEST.parent} (it sits beside the project)")
    with CORPUS_MANIFEST.open(newline="") as f:
        assert not every & {row["source"] for row in csv.DictReader(f)}


def test_dep5_licence_takes_the_last_matching_stanza() -> None:
    assert debian.dep5_licence(DEP5, "usr/share/fake/music/a.ogg") == "GPL-3+"
    assert debian.dep5_licence(DEP5, "usr/share/fake/nc/x.wav") == "CC-BY-NC-3.0"
    assert debian.dep5_licence("no stanzas here", "a") is None


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A format-1 Qt resource bundle holding `files` (name: (data, zlib?)) in one folder."""
    names, data, nodes = b"", b"", []

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    nodes.append(struct.pack(">IHII", 0, 2, 1, 1))  # root: one child, node 1
    nodes.append(struct.pack(">IHII", name("dir"), 2, len(files), 2))
    for file, (blob, compress) in files.items():
        stored = len(blob).to_bytes(4, "big") + zlib.compress(blob) if compress else blob
        nodes.append(struct.pack(">IHHHI", name(file), int(compress), 0, 0, len(data)))
        data += len(stored).to_bytes(4, "big") + stored
    tree = b"".join(nodes)
    header = b"qres" + struct.pack(">IIII", 1, 20, 20 + len(tree), 20 + len(tree) + len(data))
    return header + tree + data + names


def test_rcc_entries_reads_plain_and_compressed_files(tmp_path: Path) -> None:
    bundle = tmp_path / "a.rcc"
    bundle.write_bytes(_rcc({"a.ogg": (b"plain bytes", False), "b.wav": (b"z" * 999, True)}))
    assert dict(debian.rcc_entries(bundle)) == {
        "/dir/a.ogg": b"plain bytes",
        "/dir/b.wav": b"z" * 999,
    }
    (tmp_path / "bad.rcc").write_bytes(b"nope")
    with pytest.raises(debian.PackageError, match="not a Qt resource bundle"):
        list(debian.rcc_entries(tmp_path / "bad.rcc"))


def _mirror_reachable() -> bool:
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_a_real_package_downloads_unpacks_and_matches_its_recorded_licence(
    tmp_path: Path,
) -> None:
    if shutil.which("apt-get") is None or not _mirror_reachable():
        pytest.skip("needs apt-get and the Debian mirror (downloads asc-music, 10 MB)")
    spec = next(s for s in transfer.catalogue(0) if s.source == "debian:asc-music")
    spec = transfer.PackageSource(spec.package, spec.takes, spec.licence, spec.evidence, 0.5)
    rows, _ = transfer.build(tmp_path / "t", tmp_path / "tools", 0, (spec,))
    assert 30 <= sum(float(r["duration_s"]) for r in rows) < 30 + 20
    assert {r["license"] for r in rows} == {"GPL-2+"}

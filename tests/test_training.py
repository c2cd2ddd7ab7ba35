"""Training code on a tiny generated corpus: splits, augmentation, the labelled pool, the cry
teacher, seeded distillation, export.

Pool and training tests need torch and ai-edge-litert (the `train` extra) and the teachers in
../shared/teachers; they skip with a reason without them. No accuracy is asserted: a few
steps on synthetic tones prove the plumbing, not the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile

from pi_monitor.training import augment
from pi_monitor.training.corpus import (
    SAMPLE_RATE,
    AudioCache,
    Clip,
    Split,
    group_split,
    held_out_groups,
    is_permissive,
    leave_one_source_out,
    read_manifest,
)
from pi_monitor.training.examples import (
    FRONT_END,
    SPEED_RANGE,
    UNKNOWN,
    WINDOW_FRAMES,
    WINDOW_HOP_FRAMES,
    ExampleSampler,
    Mixing,
    window_samples,
)

if TYPE_CHECKING:
    from pi_monitor.training.evaluate import TeacherRows
    from pi_monitor.training.heads import CryTeacher

TEACHERS = Path(__file__).resolve().parents[2] / "shared" / "teachers"

SR = 16000
HEADER = "path,label,category,source,group,license,orig_sr,duration_s\n"


def _tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A wailing harmonic tone with a 350-550 Hz pitch, like a cry's shape."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(350, 550) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return 0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))


class _InMemory:
    """Stands in for the audio cache: each clip's signal from a dict, by file."""

    def __init__(self, audio: dict[Path, np.ndarray]) -> None:
        self._audio = audio

    def audio(self, clip: Clip) -> np.ndarray:
        return self._audio[clip.file].astype(np.float32)


def make_corpus(root: Path, per_source: int = 4) -> Path:
    """Two cry sources and two negative families, several groups each, as 16 kHz FLAC."""
    rng = np.random.default_rng(1)
    rows = []
    kinds = [
        ("cry", "cry", "toneA", "MIT"),
        ("cry", "cry", "toneB", "CC BY-NC 3.0"),
        ("not_cry", "cat", "animalsrc", "CC0"),
        ("not_cry", "whitenoise_appliance", "noisesrc", "CC0"),
    ]
    for label, category, source, licence in kinds:
        for i in range(per_source):
            path = f"audio/{source}/{i}.flac"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            x = _tone(rng, 2.0) if label == "cry" else 0.05 * rng.standard_normal(2 * SR)
            soundfile.write(root / path, x.astype(np.float32), SR)
            rows.append(f"{path},{label},{category},{source},{source}|g{i},{licence},{SR},2.0\n")
    (root / "manifest.csv").write_text(HEADER + "".join(rows))
    return root


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def cache(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> AudioCache:
    return AudioCache(read_manifest(tiny_corpus), SR, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def teachers() -> Path:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (.[train])")
    if not (TEACHERS / "yamnet.tflite").is_file():
        pytest.skip(f"teachers not found at {TEACHERS} (they sit beside the project in ../shared)")
    return TEACHERS


@pytest.fixture(scope="module")
def pools(tiny_corpus: Path, cache: AudioCache, teachers: Path, tmp_path_factory) -> tuple:
    from pi_monitor.training.pool import PoolSpec, build

    split = held_out_groups(read_manifest(tiny_corpus))
    folder = tmp_path_factory.mktemp("pools")
    train = build(split.train, cache, PoolSpec(512, 0), folder / "t", teachers, 0, False)
    val = build(split.val, cache, PoolSpec(256, 1), folder / "v", teachers, 0, False)
    return split, train, val


@pytest.fixture(scope="module")
def cry_teacher(pools: tuple) -> CryTeacher:
    """The cry teacher fitted on the training pool, as `train` fits it."""
    from pi_monitor.training.heads import fit_cry_teacher

    split, train_pool, val_pool = pools
    rows = train_pool.usable(split.train)
    return fit_cry_teacher(train_pool, rows, val_pool, val_pool.usable(split.val))


def test_group_split_never_puts_a_group_on_two_sides(tiny_corpus: Path) -> None:
    train, val, test = group_split(read_manifest(tiny_corpus))
    sides = [{c.group for c in part} for part in (train, val, test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert all(sides)


def test_leave_one_source_out_keeps_the_held_out_source_and_family_out_of_training(
    tiny_corpus: Path,
) -> None:
    split = leave_one_source_out(read_manifest(tiny_corpus), "toneA", "animals")
    seen = split.train + split.val
    assert not any(c.source == "toneA" or c.category == "cat" for c in seen)
    assert {c.source for c in split.test} >= {"toneA", "animalsrc"}


def test_a_fold_keeps_every_other_clip_on_its_held_out_groups_side() -> None:
    def clip(source: str, group: str, category: str, label: str = "not_cry") -> Clip:
        return Clip(f"{source}/{group}.flac", label, category, source, group, "CC0", 16000, 1.0)

    cries = [clip("babies", f"b{i}", "cry", "cry") for i in range(8)]
    # one source whose groups span two families: holding out "noise" takes some of its groups
    sleep = [
        clip("sleep", f"s{i}", "ambient_rain" if i % 2 else "lullaby_music") for i in range(12)
    ]
    clips = cries + sleep
    assert {c.family for c in sleep} == {"noise", "music"}
    base = held_out_groups(clips)
    side = {
        c.file: n
        for n, part in zip("tvx", (base.train, base.val, base.test), strict=True)
        for c in part
    }
    fold = leave_one_source_out(clips, "babies", "noise")
    for name, part in zip("tvx", (fold.train, fold.val, fold.test), strict=True):
        assert all(side[c.file] == name for c in part if c.family == "music")
    assert all(c.family != "noise" and not c.is_cry for c in fold.train + fold.val)


def test_a_split_that_moves_one_clip_gets_a_new_fingerprint_under_the_same_name() -> None:
    clips = [
        Clip(f"s/{i}.flac", "not_cry", "speech", "s", f"g{i}", "CC0", 16000, 1.0) for i in range(4)
    ]
    split = Split("fold", tuple(clips[:2]), (clips[2],), (clips[3],))
    same = Split("fold", tuple(reversed(clips[:2])), (clips[2],), (clips[3],))
    moved = Split("fold", (clips[0],), (clips[1], clips[2]), (clips[3],))
    assert split.fingerprint == same.fingerprint
    assert moved.fingerprint != split.fingerprint


def test_leave_one_source_out_names_the_choices_for_an_unknown_source(tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="toneA"):
        leave_one_source_out(read_manifest(tiny_corpus), "nope", "animals")


def test_licences_marked_non_commercial_or_unknown_are_not_permissive() -> None:
    assert is_permissive("MIT (repo LICENSE)") and is_permissive("ODbL 1.0 / DbCL 1.0")
    assert not is_permissive("ESC-50 derived, CC BY-NC 3.0")
    assert not is_permissive("NONE in repo (unknown)")


def test_cache_returns_each_clip_as_decoded(tiny_corpus: Path, cache: AudioCache) -> None:
    clip = read_manifest(tiny_corpus)[0]
    original, _ = soundfile.read(tiny_corpus / clip.path, dtype="float32")
    np.testing.assert_allclose(cache.audio(clip), original, atol=1 / 32768)


def test_mix_puts_the_signal_at_the_requested_snr() -> None:
    rng = np.random.default_rng(0)
    signal, noise = rng.standard_normal(8000), rng.standard_normal(8000)
    mixed = augment.mix(signal.astype(np.float32), noise.astype(np.float32), 6.0)
    added = mixed - signal
    snr = 20 * np.log10(augment.active_rms(signal) / augment.rms(added))
    assert snr == pytest.approx(6.0, abs=0.01)


def test_band_limit_and_noise_are_finite_and_seeded() -> None:
    a = augment.band_limit(
        np.random.default_rng(3), augment.coloured_noise(np.random.default_rng(3), 8000, 8000), 8000
    )
    b = augment.band_limit(
        np.random.default_rng(3), augment.coloured_noise(np.random.default_rng(3), 8000, 8000), 8000
    )
    assert np.all(np.isfinite(a)) and np.array_equal(a, b)


def test_tonal_sound_is_harmonic_seeded_and_at_unit_level() -> None:
    a = augment.tonal_sound(np.random.default_rng(5), 8000, 8000)
    b = augment.tonal_sound(np.random.default_rng(5), 8000, 8000)
    assert np.array_equal(a, b) and augment.rms(a) == pytest.approx(1.0, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(a))
    peak_share = np.sort(spectrum)[-len(spectrum) // 20 :].sum() / spectrum.sum()
    assert peak_share > 0.3, "energy should sit in harmonic lines (white noise: 0.11)"


def test_a_speed_change_moves_pitch_with_speed_and_keeps_the_window_length() -> None:
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for n in (round(16000 / SPEED_RANGE[0]), round(16000 / SPEED_RANGE[1])):
        slower_or_faster = augment.change_speed(tone, n)
        assert slower_or_faster.shape == (n,) and slower_or_faster.dtype == np.float32
        peak_hz = np.argmax(np.abs(np.fft.rfft(slower_or_faster))) * 16000 / n
        assert peak_hz == pytest.approx(440 * 16000 / n, abs=16000 / n)


def test_pool_names_stay_when_new_options_are_off_and_speed_cuts_short_clips() -> None:
    from pi_monitor.training.pool import PoolSpec

    def clip(i: int) -> Clip:
        label, category = ("cry", "cry") if i < 2 else ("not_cry", "cat")
        return Clip(f"s/{i}.flac", label, category, "s", f"g{i}", "CC0", 16000, 1.0)

    clips = [clip(i) for i in range(4)]
    assert PoolSpec(64, 0).digest(clips) == "fa43c0d8e723"  # the name before speed changes
    assert PoolSpec(64, 0, Mixing(speed=0.5)).digest(clips) != "fa43c0d8e723"
    assert PoolSpec(64, 0, teachers_listen="end").digest(clips) != "fa43c0d8e723"
    in_turn = PoolSpec(64, 0, Mixing(in_turn=0.2)).digest(clips)
    assert in_turn != "fa43c0d8e723"
    assert PoolSpec(64, 0, Mixing(in_turn=0.2, runs_of_one=0.5)).digest(clips) != in_turn
    assert PoolSpec(64, 0, window_frames=WINDOW_FRAMES).digest(clips) == "fa43c0d8e723"
    assert PoolSpec(64, 0, window_frames=101).digest(clips) != "fa43c0d8e723"
    # a clip a little shorter than a window, cut at every speed
    short = Clip("s/short.flac", "not_cry", "cat", "s", "g9", "CC0", 16000, 1.0)
    audio = {c.file: _tone(np.random.default_rng(i), 2.0) for i, c in enumerate(clips)}
    audio[short.file] = _tone(np.random.default_rng(9), (window_samples() - 200) / SR)

    sampler = ExampleSampler([*clips[:2], short], _InMemory(audio), Mixing(speed=1.0))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    drawn = [sampler.example(rng, i % 2 == 1).audio for i in range(64)]
    assert all(a.shape == (window_samples(),) for a in drawn)


def test_sounds_in_turn_end_one_negative_and_start_the_next_in_one_window() -> None:
    clips = [
        Clip("s/cry.flac", "cry", "cry", "s", "g0", "CC0", 16000, 2.0),
        Clip("s/cat.flac", "not_cry", "cat", "s", "g1", "CC0", 16000, 2.0),
        Clip("s/quiet.flac", "not_cry", "white_noise", "t", "g2", "CC0", 16000, 2.0),
    ]
    audio = {c.file: _tone(np.random.default_rng(i), 2.0) for i, c in enumerate(clips)}
    audio[clips[2].file] = np.zeros(2 * SR, np.float32)

    mixing = Mixing(in_turn=1.0, reverb=0.0, band_limit=0.0)
    sampler = ExampleSampler(clips, _InMemory(audio), mixing)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    drawn = [sampler.example(rng, cry=False) for _ in range(40)]
    assert all(len(e.parts) == 2 and e.label == 0 for e in drawn)
    cat_then_quiet = [e.audio for e in drawn if e.parts == (clips[1], clips[2])]
    assert cat_then_quiet
    fifth = window_samples() // 5  # the quiet clip's fifth holds only the mic's noise floor
    assert all(augment.rms(a[-fifth:]) < augment.rms(a[:fifth]) / 10 for a in cat_then_quiet)


def test_runs_of_one_follow_a_sound_with_another_from_its_group() -> None:
    """One cat's meows in a run: the second sound of a window is from the first's group."""
    clips = [
        Clip("s/cry.flac", "cry", "cry", "s", "g0", "CC0", 16000, 2.0),
        *(
            Clip(f"c/{i}.flac", "not_cry", "cat", "c", f"cat{i % 3}", "CC0", 16000, 1.0)
            for i in range(6)
        ),
        Clip("v/talk.flac", "not_cry", "adult_speech", "v", "talker", "CC0", 16000, 2.0),
    ]
    audio = {c.file: _tone(np.random.default_rng(i), c.duration_s) for i, c in enumerate(clips)}
    rng = np.random.default_rng(7)
    mixing = Mixing(in_turn=1.0, runs_of_one=1.0)
    sampler = ExampleSampler(clips, _InMemory(audio), mixing)  # type: ignore[arg-type]
    drawn = [sampler.example(rng, cry=False) for _ in range(60)]
    assert all(first.group == second.group for first, second in (e.parts for e in drawn))
    assert {e.parts[0].family for e in drawn} == {"animals", "speech"}
    sampler = ExampleSampler(clips, _InMemory(audio), Mixing(in_turn=1.0))  # type: ignore[arg-type]
    mixed = [sampler.example(rng, cry=False).parts for _ in range(60)]
    assert any(first.group != second.group for first, second in mixed)


def test_teachers_listen_to_a_windows_middle_or_its_last_samples() -> None:
    from pi_monitor.training.pool import teachers_start
    from pi_monitor.training.teachers import WINDOW_SAMPLES

    spare = window_samples() - WINDOW_SAMPLES
    assert teachers_start("middle") == spare // 2
    assert teachers_start("end") + WINDOW_SAMPLES == window_samples()
    longer = window_samples(frames=101)
    assert teachers_start("end", 101) + WINDOW_SAMPLES == longer
    assert teachers_start("middle", 101) == (longer - WINDOW_SAMPLES) // 2


def test_filter_designs_on_the_cache_grid_match_a_fresh_design() -> None:
    import scipy.signal

    fresh = scipy.signal.butter(4, 2350, fs=16000, output="sos")
    assert np.allclose(augment.butter(4, 2351.7, 16000), fresh)


def test_sampler_examples_are_seeded_windows_that_name_their_clips(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    clips = read_manifest(tiny_corpus)
    sampler = ExampleSampler(clips, cache)
    first = [sampler.example(np.random.default_rng(4), i % 2 == 1) for i in range(16)]
    again = [sampler.example(np.random.default_rng(4), i % 2 == 1) for i in range(16)]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.audio, b.audio) and a.label == b.label and a.parts == b.parts
        assert a.audio.shape == (window_samples(),) and a.audio.dtype == np.float32
    cries = [e for e in first if e.label != 0]
    assert all(e.parts[0].is_cry for e in cries)
    assert all(not c.is_cry for e in first if e.label == 0 for c in e.parts)


def test_a_cry_that_begins_inside_the_window_is_left_to_the_teachers(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    sampler = ExampleSampler(read_manifest(tiny_corpus), cache, Mixing(partial_cry=1.0))
    example = sampler.example(np.random.default_rng(0), cry=True)
    assert example.label == UNKNOWN


def test_a_mined_window_makes_a_negative_of_itself_and_a_cry_over_it(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    clips = read_manifest(tiny_corpus)
    sampler = ExampleSampler(clips, cache)
    hard = next(c for c in clips if c.family == "animals")
    rng = np.random.default_rng(0)
    negative = sampler.hard(rng, hard, 8000, cry=False)
    over = sampler.hard(rng, hard, 8000, cry=True)
    assert (negative.label, negative.parts) == (0, (hard,))
    assert over.label == 1 and over.parts[0] == hard and over.parts[1].is_cry
    for e in (negative, over):
        assert e.audio.shape == (window_samples(),) and np.all(np.isfinite(e.audio))


def test_mining_keeps_one_window_per_loud_moment_highest_first() -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.mining import peaks

    scores = np.array([0.1, 0.6, 0.9, 0.7, 0.2, 0.55, 0.1, 0.1, 0.1, 0.8, 0.49])
    assert peaks(scores, 0.5, 4).tolist() == [2, 9]
    assert peaks(scores, 0.5, 1).tolist() == [1, 2, 3, 5, 9]
    assert peaks(scores, 0.95, 4).tolist() == []


def test_training_package_does_not_import_torch_for_data_and_evaluation() -> None:
    code = (
        "import sys, pi_monitor.training, pi_monitor.training.evaluate, "
        "pi_monitor.training.examples, pi_monitor.training.corpus; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_pool_holds_features_teacher_outputs_and_labels_whatever_the_worker_count(
    pools: tuple, tiny_corpus: Path, cache: AudioCache, teachers: Path, tmp_path: Path
) -> None:
    from pi_monitor.training.pool import PoolSpec, build

    split, train, _ = pools
    assert len(train) == 512
    assert train["features"].shape == (512, WINDOW_FRAMES, FRONT_END.n_mels)
    assert set(np.unique(train["label"])) <= {UNKNOWN, 0, 1}
    assert np.all(np.isfinite(np.asarray(train["yamnet_embedding"], np.float32)))
    again = build(split.train, cache, PoolSpec(512, 0), tmp_path / "again", teachers, 1, False)
    for name in ("features", "label", "parts"):
        assert np.array_equal(again[name], train[name]), name


def test_a_fold_uses_no_pool_window_made_of_what_it_holds_out(
    pools: tuple, tiny_corpus: Path
) -> None:
    _, train, _ = pools
    fold = leave_one_source_out(read_manifest(tiny_corpus), "toneA", "animals")
    rows = train.usable(fold.train)
    assert 0 < len(rows) < len(train)
    allowed = {str(c.file) for c in fold.train}
    used = {train.clip_files[i] for i in np.unique(train["parts"][rows]) if i >= 0}
    assert used <= allowed


def test_mined_windows_join_the_pool_labelled_by_the_teachers_and_named_by_their_clips(
    pools: tuple, cache: AudioCache, teachers: Path, tmp_path: Path
) -> None:
    from pi_monitor.training.pool import PoolSpec, build

    split, train, _ = pools
    animal = next(i for i, c in enumerate(split.train) if c.family == "animals")
    windows = ((animal, 4000, True), (animal, 4000, False), (animal, 4000, False))
    spec = PoolSpec(len(windows), 7, hard=windows)
    mined = build(split.train, cache, spec, tmp_path / "mined", teachers, 0, False)
    assert len(mined) == 256  # one chunk, the windows repeated to fill it
    assert mined["label"][:3].tolist() == [1, 0, 0]
    assert np.all(mined["parts"][:, 0] == animal)
    joined = train.join(mined)
    assert len(joined) == len(train) + 256
    assert np.array_equal(joined["features"][len(train) :], mined["features"])
    fold = leave_one_source_out(split.train, "toneA", "animals")
    assert np.all(joined.usable(fold.train) < len(train))  # a fold drops the animal's windows


def test_pools_of_other_clips_extend_with_their_clips_numbered_after_the_first_pools(
    pools: tuple,
) -> None:
    split, train, val = pools
    both = train.extend(val)
    assert len(both) == len(train) + len(val)
    assert both.clip_files == train.clip_files + val.clip_files
    moved = both["parts"][len(train) :]
    assert np.array_equal(moved == -1, val["parts"] == -1)
    named = [[both.clip_files[i] for i in row if i >= 0] for row in moved]
    assert named == [[val.clip_files[i] for i in row if i >= 0] for row in val["parts"]]
    alone = both.usable(split.train)  # a validation window made of no clip may stay
    assert np.all(alone[: len(train)] == np.arange(len(train)))
    assert np.all(moved[alone[len(train) :] - len(train)] == -1)
    assert len(both.usable(split.train + split.val)) == len(both)


def test_windows_holding_a_weighted_family_weigh_more_and_the_rest_weigh_one(
    pools: tuple, tiny_corpus: Path
) -> None:
    split, train, _ = pools
    rows = train.usable(split.train)
    weights = train.weights(rows, split.train, {"animals": 3.0})
    animal = {str(c.file) for c in split.train if c.family == "animals"}
    holds = [
        any(train.clip_files[i] in animal for i in parts if i >= 0)
        for parts in train["parts"][rows]
    ]
    assert any(holds) and not all(holds)
    assert np.array_equal(weights, np.where(holds, 3.0, 1.0))


def test_a_heavily_penalised_head_keeps_the_teachers_own_judgement() -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.heads import fit_head

    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((400, 8))
    prior = rng.standard_normal(400) * 3
    labels = (embedding[:, 0] > 0).astype(float)  # the data disagree with the prior
    val = (embedding, prior, labels)
    free = fit_head(embedding, prior, labels, val, penalties=(1e-6,))
    stiff = fit_head(embedding, prior, labels, val, penalties=(1e3,))
    assert abs(free.weights[0]) > 10 * abs(stiff.weights[0])
    assert np.corrcoef(stiff.logit(embedding, prior), prior)[0, 1] > 0.99


def test_negative_hard_weight_one_teaches_a_non_cry_zero_whatever_the_teacher_says(
    pools: tuple, cry_teacher: CryTeacher
) -> None:
    from pi_monitor.classifier import sigmoid
    from pi_monitor.training.heads import teacher_logits
    from pi_monitor.training.train import Recipe, _targets

    split, train_pool, _ = pools
    rows = train_pool.usable(split.train)
    soft = sigmoid(teacher_logits(cry_teacher, train_pool, rows))
    labels = np.asarray(train_pool["label"][rows])
    assert soft[labels == 0].max() > 0.01, "the teacher has doubts about some non-cries"
    blended = _targets(train_pool, rows, cry_teacher, Recipe())
    np.testing.assert_allclose(blended[labels == 0], 0.5 * soft[labels == 0], rtol=1e-6)
    np.testing.assert_allclose(blended[labels == 1], 0.5 + 0.5 * soft[labels == 1], rtol=1e-6)
    np.testing.assert_allclose(blended[labels < 0], soft[labels < 0], rtol=1e-6)
    strict = _targets(train_pool, rows, cry_teacher, Recipe(negative_hard_weight=1.0))
    assert np.all(strict[labels == 0] == 0)
    np.testing.assert_array_equal(strict[labels != 0], blended[labels != 0])


def test_an_animal_negative_weight_teaches_zero_only_where_a_non_cry_holds_an_animal(
    pools: tuple, cry_teacher: CryTeacher
) -> None:
    from pi_monitor.training.train import Recipe, _targets

    split, train_pool, _ = pools
    rows = train_pool.usable(split.train)
    recipe = Recipe(family_negative_weights=(("animals", 1.0),))
    per_row = train_pool.weights(
        rows, split.train, dict(recipe.family_negative_weights), recipe.negative_hard_weight
    )
    animal = per_row == 1.0
    labels = np.asarray(train_pool["label"][rows])
    assert (animal & (labels == 0)).any() and (~animal & (labels == 0)).any()
    blended = _targets(train_pool, rows, cry_teacher, Recipe())
    targets = _targets(train_pool, rows, cry_teacher, recipe, per_row)
    assert np.all(targets[animal & (labels == 0)] == 0)
    np.testing.assert_array_equal(
        targets[~animal | (labels != 0)], blended[~animal | (labels != 0)]
    )


def test_animal_classes_can_learn_yamnets_probabilities_and_the_rest_stay_mn04s(
    pools: tuple,
) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.classifier import sigmoid
    from pi_monitor.training.train import (
        ANIMAL_CLASSES,
        YAMNET_ANIMAL_CLASSES,
        Recipe,
        _audioset_targets,
    )

    split, train_pool, _ = pools
    rows = train_pool.usable(split.train)
    mn04 = sigmoid(np.asarray(train_pool["mn04_logit"][rows], np.float32))
    yamnet = np.asarray(train_pool["yamnet_probability"][rows], np.float32)
    np.testing.assert_array_equal(_audioset_targets(train_pool, rows, Recipe()), mn04)
    mixed = _audioset_targets(train_pool, rows, Recipe(animal_teacher="yamnet"))
    np.testing.assert_array_equal(mixed[:, ANIMAL_CLASSES], yamnet[:, YAMNET_ANIMAL_CLASSES])
    np.testing.assert_array_equal(mixed[:, : ANIMAL_CLASSES.start], mn04[:, : ANIMAL_CLASSES.start])
    np.testing.assert_array_equal(mixed[:, ANIMAL_CLASSES.stop :], mn04[:, ANIMAL_CLASSES.stop :])


def test_band_shift_moves_each_window_whole_within_its_limit_and_repeats_the_edge_band() -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.train import _shift_bands

    bands = np.arange(64, dtype=np.float32)
    feats = np.tile(bands, (200, 101, 1))
    out = _shift_bands(np.random.default_rng(0), feats, 2)
    shifts = 32 - out[:, 0, 32]
    assert set(shifts.tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    for window, shift in zip(out, shifts.astype(int), strict=True):
        expected = np.clip(bands - shift, 0, 63)
        np.testing.assert_array_equal(window, np.broadcast_to(expected, window.shape))


def test_distillation_is_reproducible_and_exports_a_model_the_service_loads(
    pools: tuple, cry_teacher: CryTeacher, cache: AudioCache, tmp_path: Path
) -> None:
    from pi_monitor.classifier import CryClassifier
    from pi_monitor.training.export import export
    from pi_monitor.training.train import Recipe, train

    from model_cost import model_cost

    split, train_pool, val_pool = pools
    rows, val_rows = train_pool.usable(split.train), val_pool.usable(split.val)
    recipe = Recipe(epochs=0.05, batch=8, val_every=2, threads=1)
    models = []
    for name in ("a", "b"):
        trained = train(
            train_pool,
            rows,
            train_pool.weights(rows, split.train, dict(recipe.family_weights)),
            val_pool,
            val_rows,
            cry_teacher,
            split.val,
            cache,
            split.name,
            recipe,
            False,
        )
        models.append(export(trained, tmp_path / f"{name}.onnx"))
    frames = np.random.default_rng(0).normal(-8, 3, (WINDOW_FRAMES + 36, FRONT_END.n_mels))
    a, b = (m.predict(frames.astype(np.float32))[1] for m in models)
    assert len(a) == 4
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert models[0].info.features == FRONT_END
    assert models[0].info.threshold == pytest.approx(trained.threshold, abs=1e-4)
    assert isinstance(models[0], CryClassifier)
    cost = model_cost(tmp_path / "a.onnx")
    assert (cost.macs_per_window, cost.macs_per_hop) == (
        trained.macs_per_window,
        trained.macs_per_hop,
    )


def test_the_teacher_embedding_loss_is_zero_along_the_teacher_and_two_against_it() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.train import TEACHER_EMBEDDINGS, _embedding_loss

    rng = np.random.default_rng(0)
    pool = {
        name: rng.random((6, d)).astype(np.float32)
        for name, d in zip(TEACHER_EMBEDDINGS, (8, 5), strict=True)
    }
    centres = [pool[name].mean(axis=0) for name in TEACHER_EMBEDDINGS]
    rows = np.arange(6)
    along = [
        torch.from_numpy(3 * (pool[n] - c))[:, :, None]
        for n, c in zip(TEACHER_EMBEDDINGS, centres, strict=True)
    ]
    loss = _embedding_loss(along, pool, rows, centres)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    against = [-h for h in along]
    assert _embedding_loss(against, pool, rows, centres).item() == pytest.approx(2.0, abs=1e-6)


def test_teacher_embedding_heads_train_survive_a_checkpoint_and_stay_out_of_the_export(
    pools: tuple, cry_teacher: CryTeacher, cache: AudioCache, tmp_path: Path
) -> None:
    import onnx

    from pi_monitor.training.export import export
    from pi_monitor.training.train import Recipe, load_checkpoint, save_checkpoint, train

    split, train_pool, val_pool = pools
    rows, val_rows = train_pool.usable(split.train), val_pool.usable(split.val)
    recipe = Recipe(epochs=0.05, batch=8, val_every=2, threads=1, teacher_embedding_weight=1.0)
    trained = train(
        train_pool, rows, train_pool.weights(rows, split.train, {}), val_pool, val_rows,
        cry_teacher, split.val, cache, split.name, recipe, False,
    )  # fmt: skip
    assert [head.out_channels for head in trained.model.teachers] == [1024, 384]
    save_checkpoint(trained, tmp_path / "te.pt")
    loaded = load_checkpoint(tmp_path / "te.pt")
    assert loaded.recipe == recipe
    assert loaded.model.state_dict().keys() == trained.model.state_dict().keys()
    export(trained, tmp_path / "te.onnx")
    shapes = [tuple(t.dims) for t in onnx.load(tmp_path / "te.onnx").graph.initializer]
    assert not any(1024 in shape or 384 in shape for shape in shapes), shapes


def _tiny_run(tiny_corpus: Path, teachers: Path, tmp_path: Path) -> list[str]:
    """The options every command of a test run on the tiny corpus shares."""
    return [
        "--corpus",
        str(tiny_corpus),
        "--cache",
        str(tmp_path / "cache"),
        "--teachers",
        str(teachers),
        "--no-transfer",
        "--examples",
        "512",
        "--workers",
        "0",
    ]


def test_cli_trains_evaluates_and_tabulates_on_a_corpus_folder(
    tiny_corpus: Path, teachers: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main
    from pi_monitor.training.train import load_checkpoint

    model = tmp_path / "m.onnx"
    common = _tiny_run(tiny_corpus, teachers, tmp_path)
    train = ["train", *common, "--epochs", "0.05", "--threads", "1", "--out", str(model)]
    train += ["--checkpoint", str(tmp_path / "m.pt")]
    assert main(train) == 0
    stages = [
        f
        for name in ("stage1.pt", "stage1-mined.json", "stage2.pt")
        for f in tmp_path.glob(f"m-*-{name}")
    ]
    assert len(stages) == 3
    written = [f.stat().st_mtime_ns for f in stages]
    model.unlink()
    assert main(train) == 0 and model.is_file()  # both stages found again, not retrained
    assert [f.stat().st_mtime_ns for f in stages] == written
    # stage 1 kept; mined again, stage 2 anew
    assert main([*train, "--mined-cries", "2", "--mine-threshold", "0.6"]) == 0
    assert [f.stat().st_mtime_ns == t for f, t in zip(stages, written, strict=True)] == [
        True,
        False,
        False,
    ]
    mined = json.loads(stages[1].read_text())
    assert (mined["mining"]["cries"], mined["mining"]["threshold"]) == (2, 0.6)
    assert (
        sum(cry for _, _, cry in mined["windows"])
        == 2 * sum(not cry for _, _, cry in mined["windows"]) / mined["mining"]["negatives"]
    )
    first = stages[0].stat().st_mtime_ns
    narrow = ["--train-seed", "1", "--widths", "8,8,16,16,16,16,16"]
    assert main([*train, *narrow]) == 0  # same split, so the same files; stage 1 anew
    assert stages[0].stat().st_mtime_ns != first
    recipe = load_checkpoint(tmp_path / "m.pt").recipe
    assert (recipe.seed, recipe.widths) == (1, (8, 8, 16, 16, 16, 16, 16))
    assert recipe != load_checkpoint(stages[0]).recipe  # a later stage: fewer epochs, lower rate
    first = stages[0].stat().st_mtime_ns
    assert main([*train, *narrow, "--last-from-scratch"]) == 0  # stage 1 kept
    assert stages[0].stat().st_mtime_ns == first
    assert load_checkpoint(tmp_path / "m.pt").recipe == load_checkpoint(stages[0]).recipe
    mined_at = stages[1].stat().st_mtime_ns
    finish = ["--finish-animal-negative-hard-weight", "1"]
    assert main([*train, *narrow, *finish]) == 0  # stage 1 and its mining kept, the last anew
    assert [stages[0].stat().st_mtime_ns, stages[1].stat().st_mtime_ns] == [first, mined_at]
    assert load_checkpoint(tmp_path / "m.pt").recipe.family_negative_weights == (("animals", 1.0),)
    assert load_checkpoint(stages[0]).recipe.family_negative_weights == ()
    last = [*train, "--with-val-groups", "--checkpoint", str(tmp_path / "last.pt")]
    last += ["--out", str(tmp_path / "last.onnx")]
    for alone in (last, [*train, "--temperature", "0.8"]):
        with pytest.raises(SystemExit, match="--with-val-groups and --temperature go together"):
            main(alone)
    assert main([*last, "--temperature", "0.8"]) == 0
    trained = load_checkpoint(tmp_path / "last.pt")
    assert trained.split == "held-out-groups+val"
    assert (trained.temperature, trained.threshold) == (0.8, 0.95)  # none fitted on what it learnt
    report = tmp_path / "r.json"
    evaluate = ["evaluate", *common, "--model", str(model)]
    assert main([*evaluate, "--with-teachers", "--report", str(report)]) == 0
    rows = [r["scorer"] for r in json.loads(report.read_text())]
    assert rows == [
        "pi-monitor",
        "YAMNet class 20 as it is",
        "mn04 class 23 as it is",
        "teacher ensemble",
    ]
    once, twice = tmp_path / "val1.json", tmp_path / "val2.json"
    assert main([*evaluate, "--on", "val", "--report", str(once)]) == 0
    assert main([*evaluate, "--on", "val", "--mixtures-per-cry", "2", "--report", str(twice)]) == 0
    mixtures = [json.loads(r.read_text())[0]["events"]["+0 dB"]["mixtures"] for r in (once, twice)]
    assert mixtures[0] > 0 and mixtures[1] == 2 * mixtures[0]
    assert main(["compare", str(once), str(once)]) == 0  # the same run: no difference anywhere
    assert "| all | -6 dB |" in (same := capsys.readouterr().out) and "| +0.000 |" in same
    with pytest.raises(SystemExit):
        main(["compare", str(once), str(twice)])
    assert "read both with the same --on and --mixtures-per-cry" in capsys.readouterr().err
    assert main(["tables", str(report)]) == 0
    tables = capsys.readouterr().out
    assert "| held-out-groups | YAMNet class 20 as it is |" in tables and "per source" in tables


def test_cli_trains_and_mines_a_student_that_hears_a_longer_window(
    tiny_corpus: Path, teachers: Path, tmp_path: Path
) -> None:
    from pi_monitor.classifier import CryClassifier
    from pi_monitor.training.__main__ import main
    from pi_monitor.training.train import load_checkpoint

    model, checkpoint = tmp_path / "long.onnx", tmp_path / "long.pt"
    train = ["train", *_tiny_run(tiny_corpus, teachers, tmp_path), "--window-frames", "77"]
    train += ["--epochs", "0.05", "--threads", "1", "--mine-rounds", "1", "--mine-threshold", "0"]
    train += ["--out", str(model), "--checkpoint", str(checkpoint)]
    with pytest.raises(SystemExit, match="--window-frames 77 needs 8 --widths, one per layer; 7"):
        main([*train, "--widths", "8,8,16,16,16,16,16"])
    assert not list(tmp_path.glob("cache/pool-*"))  # refused before any pool was built
    assert main(train) == 0
    assert CryClassifier(model).info.window_frames == 77
    assert load_checkpoint(checkpoint).recipe.widths == (16, 32, 32, 64, 64, 96, 96, 96)
    (mined,) = tmp_path.glob("long-*-stage1-mined.json")
    assert json.loads(mined.read_text())["windows"]  # the second stage learnt from them
    pools = tmp_path.glob("cache/pool-*/features.npy")
    assert {np.load(f, mmap_mode="r").shape[1] for f in pools} == {77}


def test_cli_joins_short_and_long_students_under_a_threshold_of_its_own(
    tiny_corpus: Path, teachers: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.classifier import CryClassifier
    from pi_monitor.training.__main__ import main
    from pi_monitor.training.combine import GATE_LOGIT
    from pi_monitor.training.evaluate import StudentScorer, validation_threshold

    from model_cost import model_cost
    from model_factory import loudness_model

    run = _tiny_run(tiny_corpus, teachers, tmp_path)
    short_model, long, other = (tmp_path / f"{n}.onnx" for n in ("short", "long", "other"))
    train = ["train", *run, "--epochs", "0.05", "--threads", "1", "--mine-rounds", "0"]
    train += ["--checkpoint", str(tmp_path / "long.pt")]  # not the user's ~/.cache/pi-monitor
    # the short member: loud windows score high, silence falls below the gate (a trained tiny
    # student's silence does not), 53 frames on the real front end
    frames = {"window_frames": WINDOW_FRAMES, "window_hop_frames": WINDOW_HOP_FRAMES}
    loudness_model(short_model, **dataclasses.asdict(FRONT_END), **frames)
    assert main([*train, "--window-frames", "77", "--out", str(long)]) == 0
    assert main([*train, "--window-frames", "77", "--train-seed", "1", "--out", str(other)]) == 0
    joined, half, three = tmp_path / "j.onnx", tmp_path / "j16.onnx", tmp_path / "j3.onnx"
    assert main(["join", *run, str(short_model), str(long), "--out", str(joined)]) == 0
    assert main(["join", *run, str(short_model), str(long), "--out", str(half), "--float16"]) == 0
    students = [str(short_model), str(other), str(long)]  # a window may equal the longest
    assert main(["join", *run, *students, "--out", str(three), "--float16"]) == 0
    least, gated_mean = tmp_path / "least.onnx", tmp_path / "gated_mean.onnx"
    for out, combine in ((least, "min"), (gated_mean, "gated-mean")):
        pair = [str(short_model), str(long)]
        assert main(["join", *run, *pair, "--out", str(out), "--combine", combine]) == 0
    assert "threshold" in capsys.readouterr().out

    j, short, lo = CryClassifier(joined), CryClassifier(short_model), CryClassifier(long)
    assert j.info.window_frames == 77
    assert j.info.heard_frames == short.info.window_frames  # dated where the short member hears
    clips = read_manifest(tiny_corpus)  # the rule on the join's own scores, not a member's copied
    scorer, cache = StudentScorer(joined), AudioCache(clips, SAMPLE_RATE, tmp_path / "cache")
    val = held_out_groups(clips, 0).val
    assert j.info.threshold == round(validation_threshold(scorer, val, cache, floor=0.5), 4)
    probe = np.random.default_rng(3).normal(-8, 3, (77 + 12 * 12, 64)).astype(np.float32)
    mean = (short.predict(probe)[1][2:] + lo.predict(probe)[1]) / 2  # 53 frames end 2 hops in
    np.testing.assert_allclose(j.predict(probe)[1], mean, atol=1e-4)
    np.testing.assert_allclose(CryClassifier(half).predict(probe)[1], mean, atol=1e-2)
    assert half.stat().st_size < 0.6 * joined.stat().st_size
    seed1 = CryClassifier(other).predict(probe)[1]
    mean3 = (short.predict(probe)[1][2:] + seed1 + lo.predict(probe)[1]) / 3
    np.testing.assert_allclose(CryClassifier(three).predict(probe)[1], mean3, atol=1e-2)
    assert CryClassifier(three).info.heard_frames == short.info.window_frames
    both = np.minimum(short.predict(probe)[1][2:], lo.predict(probe)[1])  # each must hear it
    gated_join = CryClassifier(least)
    np.testing.assert_allclose(gated_join.predict(probe)[1], both, atol=1e-4)
    assert not np.allclose(both, mean, atol=1e-2)  # the probe tells a min from a mean
    # below the gate (silence) the first member's logit stands, whatever the long one says
    quiet = np.full((77 + 12 * 4, 64), np.log(1e-6), np.float32)
    assert (short.predict(quiet)[1] < GATE_LOGIT).all()
    np.testing.assert_allclose(gated_join.predict(quiet)[1], short.predict(quiet)[1][2:], atol=1e-4)
    assert not np.allclose(short.predict(quiet)[1][2:], lo.predict(quiet)[1], atol=1e-2)
    mixed = np.concatenate([quiet, probe])  # one batch, some windows on each side of the gate
    first, other_logits = short.predict(mixed)[1][2:], lo.predict(mixed)[1]
    gated = np.where(first < GATE_LOGIT, first, np.minimum(first, other_logits))
    assert (first < GATE_LOGIT).any() and (gated != first).any()
    np.testing.assert_allclose(gated_join.predict(mixed)[1], gated, atol=1e-4)
    averaged = np.where(first < GATE_LOGIT, first, (first + other_logits) / 2)
    np.testing.assert_allclose(CryClassifier(gated_mean).predict(mixed)[1], averaged, atol=1e-4)
    # the long member runs inside the gate's If, and its multiply-adds count (the short has none)
    assert model_cost(gated_mean).macs_per_window == model_cost(long).macs_per_window > 0
    # a trained short member reads only its own window's frames: a join costs what its members
    # cost alone, not the short one's positions over the long window that it would then drop
    trained_short, pair = tmp_path / "trained_short.onnx", tmp_path / "pair.onnx"
    assert main([*train, "--out", str(trained_short)]) == 0  # 53 frames
    assert main(["join", *run, str(trained_short), str(long), "--out", str(pair)]) == 0
    alone = model_cost(trained_short).macs_per_window + model_cost(long).macs_per_window
    assert model_cost(pair).macs_per_window == alone
    probe_short = CryClassifier(trained_short).predict(probe)[1][2:]
    pair_mean = (probe_short + lo.predict(probe)[1]) / 2
    np.testing.assert_allclose(CryClassifier(pair).predict(probe)[1], pair_mean, atol=1e-4)

    given = tmp_path / "given.onnx"  # thresholds chosen on validation beforehand, recorded as is
    pair_args = ["join", *run, str(short_model), str(long), "--out", str(given)]
    assert main([*pair_args, "--threshold", "0.9", "--sure-threshold", "0.97"]) == 0
    info = CryClassifier(given).info
    assert (info.threshold, info.sure_threshold) == (0.9, 0.97)
    assert "(given), sure-threshold 0.9700" in capsys.readouterr().out
    refused = ["join", *run, str(short_model), str(long), "--out", str(tmp_path / "no.onnx")]
    with pytest.raises(SystemExit, match="below the on-threshold"):
        main([*refused, "--threshold", "0.9", "--sure-threshold", "0.8"])
    assert not (tmp_path / "no.onnx").exists()
    with pytest.raises(SystemExit):
        main(["join", *run, str(short_model), str(long), "--out", str(given), "--threshold", "1.5"])
    assert "not an on-threshold from 0.5 to 0.99" in capsys.readouterr().err

    swapped = tmp_path / "swapped.onnx"
    assert main(["join", *run, str(long), str(short_model), "--out", str(swapped)]) == 2
    assert "must equal or exceed" in capsys.readouterr().err and not swapped.exists()
    assert main(["join", *run, str(long), "--out", str(swapped)]) == 2
    assert "two students or more" in capsys.readouterr().err and not swapped.exists()


def test_cli_names_a_missing_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pi_monitor.training.__main__ import main

    assert main(["evaluate", "--corpus", str(tmp_path / "none"), "--no-transfer"]) == 2
    assert "manifest.csv" in capsys.readouterr().err


def test_the_trade_off_curve_ranks_the_run_that_sits_above_the_line_first(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main

    def report(alarms: int, f1: float) -> list[dict]:
        return [{"false_alarms": {"false_alarms": alarms}, "events": {"+0 dB": {"f1": f1}}}]

    runs = {
        "a": (10, 0.75),
        "b": (14, 0.77),
        "better": (16, 0.83),
        "c": (18, 0.79),
        "d": (22, 0.81),
    }
    for name, (alarms, f1) in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(report(alarms, f1)))
    paths = [str(tmp_path / f"{name}.json") for name in runs]
    assert main(["curve", *paths]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| better | 16 | 0.830 | +0.")
    with pytest.raises(SystemExit):
        main(["curve", *paths[:2]])
    assert "three reports" in capsys.readouterr().err


def _onsets(found: list[int], others: list[int]) -> list[dict]:
    """A validation report row whose every background and SNR holds these mixtures' onsets."""
    snrs = {snr: {"found": found, "other_onsets": others} for snr in ("-6 dB", "+0 dB", "+6 dB")}
    row = {"split": "val", "seed": 0, "threshold": 0.95, "events": snrs}
    return [{**row, "events_by_background": {"music": snrs}}]


def test_compare_tells_a_tie_from_a_gain_on_the_same_mixtures(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main

    runs = {
        "before": _onsets([1] * 50 + [0] * 50, [0] * 100),
        "tie": _onsets([0] + [1] * 50 + [0] * 49, [0] * 100),  # one cry lost, another found
        "gain": _onsets([1] * 60 + [0] * 40, [0] * 99 + [2]),
    }
    for name, rows in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))

    def compare(after: str) -> list[list[str]]:
        assert (
            main(["compare", str(tmp_path / "before.json"), str(tmp_path / f"{after}.json")]) == 0
        )
        lines = capsys.readouterr().out.splitlines()
        return [[c.strip() for c in line.split("|")[1:-1]] for line in lines[3:]]

    tie = compare("tie")
    assert len(tie) == 6 and tie[0][:6] == ["all", "-6 dB", "100", "0.667", "0.667", "+0.000"]
    low, high = (float(x) for x in tie[0][6].split(" to "))
    assert low < 0 < high and tie[0][7:] == ["1 / 1", "1.00"]
    gain = compare("gain")  # 60 of 100 found and two other onsets: F1 2x60 / (2x60 + 2 + 40)
    assert gain[3][:6] == ["music", "-6 dB", "100", "0.667", "0.741", "+0.074"]
    assert float(gain[3][6].split(" to ")[0]) > 0 and gain[3][7:] == ["10 / 0", "0.00"]


def test_compare_refuses_reports_that_do_not_pair_up(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main

    def refusal(rows: list[dict]) -> str:
        (tmp_path / "a.json").write_text(json.dumps(_onsets([1, 0], [0, 0])))
        (tmp_path / "b.json").write_text(json.dumps(rows))
        with pytest.raises(SystemExit):
            main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
        return capsys.readouterr().err

    assert "2 mixtures against 3" in refusal(_onsets([1, 0, 1], [0, 0, 0]))
    assert "differ in seed, so" in refusal([{**_onsets([1, 0], [0, 0])[0], "seed": 1}])
    old = [{"threshold": 0.95, "events": {"-6 dB": {"f1": 0.6}}}]
    assert "b: no mixture-by-mixture onsets for all -6 dB" in (message := refusal(old))
    assert "evaluate that model again with --report" in message


def _refusal(command: str, path: Path, capsys: pytest.CaptureFixture) -> str:
    """The one error line `command` gives for the report file at `path` (exit code 2)."""
    from pi_monitor.training.__main__ import main

    with pytest.raises(SystemExit) as refused:
        main([command, str(path)])
    assert refused.value.code == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert str(path) in line and "evaluate --report FILE" in line
    return line


@pytest.mark.parametrize("command", ["tables", "curve"])
def test_tables_and_curve_name_a_missing_or_unreadable_report_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert "No such file" in _refusal(command, tmp_path / "none.json", capsys)
    assert "Is a directory" in _refusal(command, tmp_path, capsys)


@pytest.mark.parametrize("command", ["tables", "curve"])
def test_tables_and_curve_name_a_report_file_that_is_not_json(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for content in (b"{not json", b"\xff\xfe\x00"):
        (tmp_path / "r.json").write_bytes(content)
        assert "not a JSON report" in _refusal(command, tmp_path / "r.json", capsys)


@pytest.mark.parametrize("command", ["tables", "curve"])
def test_tables_and_curve_name_a_json_file_that_is_not_report_rows(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "r.json"
    for rows in ({"scorer": "x"}, [], [1], [{"scorer": "x"}, "row"]):
        report.write_text(json.dumps(rows))
        assert "not a list of report rows" in _refusal(command, report, capsys)
    report.write_text(json.dumps([{"scorer": "x", "events": {}}]))
    assert "report rows lack false_alarms" in _refusal(command, report, capsys)


def test_tables_names_the_keys_its_tables_need_that_a_curve_row_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps([{"false_alarms": {"false_alarms": 3}, "events": {}}]))
    assert "lack split, scorer, threshold, clip," in _refusal("tables", report, capsys)


def _teacher_rows(audio: np.ndarray, score: Callable[[np.ndarray], float]) -> TeacherRows:
    """A stand-in teacher's rows: `score` of each window at the teachers' window and hop."""
    from pi_monitor.training.evaluate import TeacherRows
    from pi_monitor.training.teachers import HOP_SAMPLES, WINDOW_SAMPLES

    starts = np.arange(0, max(1, len(audio) - WINDOW_SAMPLES + 1), HOP_SAMPLES)
    scores = np.array([score(audio[s : s + WINDOW_SAMPLES]) for s in starts])
    return TeacherRows(starts / SR, (starts + WINDOW_SAMPLES / 2) / SR, {"yamnet": scores})


def test_outside_figures_count_the_clips_a_scorer_calls_cry_and_blame_their_family(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.evaluate import TeacherScorer, format_outside, outside_figures

    def loud_is_cry(audio: np.ndarray) -> TeacherRows:
        return _teacher_rows(audio, lambda w: 0.99 if np.sqrt(np.mean(w**2)) > 0.1 else 0.01)

    # the tiny corpus's cry-like tones play the part of sung notes: each a false alarm
    clips = [
        dataclasses.replace(c, label="not_cry", category="singing_unknown_sex") if c.is_cry else c
        for c in read_manifest(tiny_corpus)
    ]
    report = outside_figures(TeacherScorer("yamnet", loud_is_cry, 0.5), clips, cache, plays=1)
    assert report["called_cry"] == {
        "cat": {"clips": 4, "called_cry": 0},
        "singing_unknown_sex": {"clips": 8, "called_cry": 8},
        "whitenoise_appliance": {"clips": 4, "called_cry": 0},
    }
    assert {w["category"] for w in report["worst"][:8]} == {"singing_unknown_sex"}
    alarms = {f: v["false_alarms"] for f, v in report["false_alarms"]["per_family"].items()}
    assert alarms["singing"] >= 1 and alarms["animals"] == alarms["noise"] == 0  # tones merge
    (source, n), *_ = report["false_alarms"]["by_source"].items()  # the report names the source
    assert source.endswith("|singing_unknown_sex") and n == report["false_alarms"]["false_alarms"]
    assert f"; most from {source} {n} (100%)" in format_outside(report)


def test_an_alarm_is_blamed_where_its_crossing_window_is_dated_however_it_was_confirmed() -> None:
    """A sure window confirms at its crossing, a doubtful bout windows later, and a burst that
    fell back does not count: the clip blamed is the one playing when the crossing that counted
    was decided."""
    pytest.importorskip("scipy", reason="scipy not installed (pip install -e .[train])")
    from pi_monitor.detector import CryDetector, DetectorParams
    from pi_monitor.events import Score
    from pi_monitor.training.evaluate import crossings

    params = DetectorParams(0.8, 0.5, 0.5, 2.0, 0.75, sure_threshold=0.95)
    scores = [0.1] * 4 + [0.97] + [0.1] * 12 + [0.9, 0.2] + [0.9] * 5 + [0.1] * 12
    detector, events = CryDetector(params), []
    for i, score in enumerate(scores):
        events.append(Score(t=i * 0.25, score=score, logit=0.0))
        events += detector.update(i * 0.25, score, i * 0.25 + 0.5)
    assert crossings(events, params) == [1.0 + 0.5, 19 * 0.25 + 0.5]


def test_more_plays_add_orders_and_leave_the_first_play_as_it_was(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    """The outside check averages several orders; the first is the one a single play uses."""
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.evaluate import TeacherScorer, false_alarm_figures

    plays: list[str] = []  # each stream the scorer heard, by digest

    def counting(audio: np.ndarray) -> TeacherRows:
        plays.append(hashlib.sha1(audio.tobytes()).hexdigest())
        return _teacher_rows(audio, lambda w: 0.01)

    clips = [c for c in read_manifest(tiny_corpus) if not c.is_cry]
    scorer = TeacherScorer("yamnet", counting, 0.5)
    one = false_alarm_figures(scorer, clips, cache, seed=0)
    first = list(plays)
    three = false_alarm_figures(scorer, clips, cache, seed=0, plays=3)
    assert len(first) == 2 and plays[2:4] == first and len(plays) == 2 + 6
    assert len(set(plays[2:])) == 6  # each later play is a new order
    assert three["hours"] == pytest.approx(3 * one["hours"]) and three["plays"] == 3
    for family, v in three["per_family"].items():
        assert v["hours"] == pytest.approx(3 * one["per_family"][family]["hours"])


def test_the_student_scores_a_clip_shorter_than_its_own_window_whatever_its_context(
    tmp_path: Path,
) -> None:
    """Clips are padded to the model's window as its metadata gives it, not the training
    code's: a student that hears twice as long is read by the same evaluation."""
    from pi_monitor.training.evaluate import StudentScorer, clip_score

    from model_factory import loudness_model

    front_end = {k: getattr(FRONT_END, k) for k in ("sample_rate", "n_fft", "hop_length")}
    for frames in (WINDOW_FRAMES, 2 * WINDOW_FRAMES - 5):
        model = loudness_model(tmp_path / f"{frames}.onnx", window_frames=frames, **front_end)
        scorer = StudentScorer(model)
        assert scorer.window_samples == window_samples(frames=frames)
        short = np.full(scorer.window_samples // 3, 0.3, np.float32)
        assert 0.0 < clip_score(scorer, short) < 1.0


def test_export_names_a_missing_or_foreign_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.__main__ import main

    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    for name, says in (("none.pt", "no checkpoint there"), ("notes.pt", "not a checkpoint")):
        with pytest.raises(SystemExit) as refused:
            main(["export", str(tmp_path / name), "--out", str(tmp_path / "m.onnx")])
        assert refused.value.code == 2
        line = capsys.readouterr().err.splitlines()[-1]
        assert f"{tmp_path / name}: {says}" in line
    assert not (tmp_path / "m.onnx").exists()


def test_evaluate_names_a_missing_model_before_reading_the_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main

    model = tmp_path / "none.onnx"
    args = ["evaluate", "--model", str(model), "--corpus", str(tmp_path / "no-corpus")]
    assert main(args) == 2
    assert f"{model}: model file not found" in capsys.readouterr().err


def test_cli_refuses_widths_and_mixture_counts_that_are_not_counts(
    capsys: pytest.CaptureFixture,
) -> None:
    from pi_monitor.training.__main__ import main

    with pytest.raises(SystemExit):
        main(["train", "--widths", "16,wide"])
    assert "'16,wide' is not comma-separated integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--mixtures-per-cry", "0"])
    assert "'0' is not a whole number of at least 1" in capsys.readouterr().err
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    with pytest.raises(SystemExit):
        main(["train", "--window-frames", "60"])
    assert "a window of 60 frames is not 53 plus a multiple of 24" in capsys.readouterr().err


def test_long_noise_uses_an_fft_length_with_only_small_prime_factors() -> None:
    from pi_monitor.training.augment import fast_fft_length

    for n in (1, 7, 17_152, 4_194_305, 20_000_003):
        m = fast_fft_length(n)
        assert m >= n
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        assert rest == 1, (n, m)
    assert fast_fft_length(20_000_003) < 20_000_003 * 1.01

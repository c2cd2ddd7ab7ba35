"""Training code on a tiny generated corpus: splits, augmentation, seeded training, export.

Needs torch (the `train` extra); skipped with a reason without it. No accuracy is asserted:
a few dozen steps on synthetic tones prove the plumbing, not the model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pi_monitor.training import augment
from pi_monitor.training.corpus import (
    AudioCache,
    group_split,
    held_out_groups,
    is_permissive,
    leave_one_source_out,
    read_manifest,
)
from pi_monitor.training.examples import FRONT_END, WINDOW_FRAMES, ExampleSampler

SR = 16000
HEADER = "path,label,category,source,group,license,orig_sr,duration_s\n"


def _tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A wailing harmonic tone with a 350-550 Hz pitch, like a cry's shape."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(350, 550) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return 0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))


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
    return AudioCache(
        tiny_corpus, read_manifest(tiny_corpus), 8000, tmp_path_factory.mktemp("cache")
    )


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


def test_leave_one_source_out_names_the_choices_for_an_unknown_source(tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="toneA"):
        leave_one_source_out(read_manifest(tiny_corpus), "nope", "animals")


def test_licences_marked_non_commercial_or_unknown_are_not_permissive() -> None:
    assert is_permissive("MIT (repo LICENSE)") and is_permissive("ODbL 1.0 / DbCL 1.0")
    assert not is_permissive("ESC-50 derived, CC BY-NC 3.0")
    assert not is_permissive("NONE in repo (unknown)")


def test_cache_returns_each_clip_at_the_model_rate(tiny_corpus: Path, cache: AudioCache) -> None:
    clip = read_manifest(tiny_corpus)[0]
    original, _ = soundfile.read(tiny_corpus / clip.path)
    assert len(cache.audio(clip)) == len(original) // 2


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


def test_filter_designs_on_the_cache_grid_match_a_fresh_design() -> None:
    import scipy.signal

    fresh = scipy.signal.butter(4, 2350, fs=8000, output="sos")
    assert np.allclose(augment.butter(4, 2351.7, 8000), fresh)


def test_spectral_masks_blank_bands_only_in_masked_examples(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    from pi_monitor.training.examples import Mixing

    clips = read_manifest(tiny_corpus)
    plain = ExampleSampler(clips, cache, Mixing(spec_mask=0.0)).batch(np.random.default_rng(2), 16)
    masked = ExampleSampler(clips, cache, Mixing(spec_mask=1.0)).batch(np.random.default_rng(2), 16)
    changed = [not np.array_equal(p, m) for p, m in zip(plain[0], masked[0], strict=True)]
    assert 0 < sum(changed) <= 16


def test_sampler_batches_are_features_of_the_service_front_end(
    tiny_corpus: Path, cache: AudioCache
) -> None:
    sampler = ExampleSampler(read_manifest(tiny_corpus), cache)
    feats, labels = sampler.batch(np.random.default_rng(0), 8)
    assert feats.shape == (8, WINDOW_FRAMES, FRONT_END.n_mels) and feats.dtype == np.float32
    assert labels.sum() == 4
    again, _ = sampler.batch(np.random.default_rng(0), 8)
    assert np.array_equal(feats, again)


def test_training_package_does_not_import_torch_for_data_and_evaluation() -> None:
    code = (
        "import sys, pi_monitor.training, pi_monitor.training.evaluate, "
        "pi_monitor.training.examples; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_is_reproducible_and_exports_a_model_the_service_loads(
    tiny_corpus: Path, cache: AudioCache, tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.classifier import CryClassifier
    from pi_monitor.training.export import export
    from pi_monitor.training.train import Recipe, train

    from model_cost import model_cost

    split = held_out_groups(read_manifest(tiny_corpus))
    recipe = Recipe(steps=6, batch=8, val_examples=16, val_every=3, workers=0)
    first = train(split, cache, recipe, progress=False)
    second = train(split, cache, Recipe(**{**recipe.__dict__, "workers": 1}), progress=False)
    export(first, tmp_path / "a.onnx")
    export(second, tmp_path / "b.onnx")
    a, b = CryClassifier(tmp_path / "a.onnx"), CryClassifier(tmp_path / "b.onnx")
    windows = np.random.default_rng(0).normal(-8, 3, (4, WINDOW_FRAMES, FRONT_END.n_mels))
    np.testing.assert_allclose(
        a.predict(windows.astype(np.float32))[1],
        b.predict(windows.astype(np.float32))[1],
        atol=1e-5,
    )
    assert a.info.features == FRONT_END and a.info.threshold == pytest.approx(
        first.threshold, abs=1e-4
    )
    assert model_cost(tmp_path / "a.onnx").macs_per_window == first.macs_per_window


def test_cli_trains_evaluates_and_tabulates_on_a_corpus_folder(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e .[train])")
    from pi_monitor.training.__main__ import main

    model = tmp_path / "m.onnx"
    common = ["--corpus", str(tiny_corpus), "--cache", str(tmp_path / "cache")]
    assert (
        main(
            [
                "train",
                *common,
                "--steps",
                "4",
                "--workers",
                "0",
                "--out",
                str(model),
                "--checkpoint",
                str(tmp_path / "m.pt"),
            ]
        )
        == 0
    )
    assert (
        main(["evaluate", *common, "--model", str(model), "--report", str(tmp_path / "r.json")])
        == 0
    )
    assert (tmp_path / "r.json").stat().st_size > 0
    assert main(["evaluate", *common, "--model", str(model), "--on", "val"]) == 0
    assert main(["tables", str(tmp_path / "r.json")]) == 0
    tables = capsys.readouterr().out
    assert "| held-out-groups | " in tables and "per source" in tables


def test_cli_names_a_missing_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pi_monitor.training.__main__ import main

    assert main(["evaluate", "--corpus", str(tmp_path / "none")]) == 2
    assert "manifest.csv" in capsys.readouterr().err

"""Evaluation on clips no model trained on, the same for pi-monitor's model and the teachers.

Every figure comes from window scores and the service's own `CryDetector`: pi-monitor's model
through the replay `Pipeline` (the code path of live and replay), the teachers ("YAMNet class 20
as it is", mn04's class likewise, and the cry teacher ensemble) through their 0.975 s windows
every 0.48 s. Each scorer's on-threshold follows one rule, fitted on validation negatives only.
Figures: clip AUC and recall at fixed clip false-positive rates (clip score = its highest window
score), per family; event onsets on synthesised 30 s mixtures (DCASE 2017 task 2 style, 1 s
collar) over unseen backgrounds of every kind and over music and singing alone; false alarms per
hour on long non-cry streams, per family; onset latency; cries over music at clip level; and
band-limit checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import scipy.stats

from pi_monitor.classifier import CryClassifier, sigmoid
from pi_monitor.config import DetectorSettings
from pi_monitor.detector import CryDetector, DetectorParams
from pi_monitor.events import CryOnset, Event, Score
from pi_monitor.pipeline import Pipeline
from pi_monitor.training import augment
from pi_monitor.training.corpus import SAMPLE_RATE, AudioCache, Clip, Split, load_resampled
from pi_monitor.training.examples import pad_to, window_samples

BLOCK = 16000
MAX_MIXTURES = 100
MAX_FAMILY_MIXTURES = 50
SNRS_DB = (-6.0, 0.0, 6.0)
MIXTURE_S = 30.0
COLLAR_S = 1.0
FPRS = (0.01, 0.001)
THRESHOLD_QUANTILE = 0.999
THRESHOLD_CEILING = 0.95
REPORT_FAMILIES = ("animals", "music", "music_box", "singing", "noise", "speech", "other")
BACKGROUNDS = ("all", "music", "singing")  # event mixtures: test negatives of these families
# What `trade_off` and `card_tables` read from each report row (`evaluate` writes them all).
CURVE_KEYS = ("events", "false_alarms")
TABLE_KEYS = (
    *CURVE_KEYS,
    "split",
    "scorer",
    "threshold",
    "clip",
    "events_by_background",
    "cries_over",
    "band_limit",
)


def _snr_key(snr: float) -> str:
    """The key of one SNR's figures in a report's events."""
    return f"{snr:+g} dB"


class Scorer:
    """Window scores and detector events for a stream of audio at 16 kHz."""

    name: str
    window_samples: int

    def params(self, detector: DetectorSettings) -> DetectorParams:
        """The detector this scorer's events come from, under the settings given."""
        raise NotImplementedError

    def threshold(self, detector: DetectorSettings) -> float:
        return self.params(detector).on_threshold

    def events(self, audio: np.ndarray, detector: DetectorSettings) -> list[Event]:
        raise NotImplementedError


class StudentScorer(Scorer):
    """pi-monitor's model through the replay pipeline, in fixed blocks as `replay` feeds it."""

    def __init__(self, model: Path, name: str = "pi-monitor") -> None:
        self.classifier = CryClassifier(model)
        self.name = name
        info = self.classifier.info
        self.window_samples = window_samples(info.features, info.window_frames)

    def params(self, detector: DetectorSettings) -> DetectorParams:
        return DetectorParams.for_model(detector, self.classifier.info)

    def events(self, audio: np.ndarray, detector: DetectorSettings) -> list[Event]:
        pipeline = Pipeline(self.classifier, detector)
        events: list[Event] = []
        for i in range(0, len(audio), BLOCK):
            events += pipeline.process(audio[i : i + BLOCK])
        return events + pipeline.finish()


@dataclass(frozen=True)
class TeacherRows:
    """Per-window scores of every teacher row over one stream."""

    start_s: np.ndarray
    centre_s: np.ndarray
    scores: dict[str, np.ndarray]


class TeacherScorer(Scorer):
    """One teacher row ('yamnet', 'mn04' or 'ensemble') through the same detector."""

    def __init__(self, row: str, rows: Callable[[np.ndarray], TeacherRows], threshold: float):
        from pi_monitor.training.teachers import WINDOW_SAMPLES

        self.name = {"yamnet": "YAMNet class 20 as it is", "mn04": "mn04 class 23 as it is"}.get(
            row, "teacher ensemble"
        )
        self.row, self._rows, self._threshold = row, rows, threshold
        self.window_samples = WINDOW_SAMPLES

    def params(self, detector: DetectorSettings) -> DetectorParams:
        window_s = self.window_samples / SAMPLE_RATE
        return DetectorParams.resolve(
            detector, model_on=self._threshold, model_off=None, window_s=window_s
        )

    def events(self, audio: np.ndarray, detector: DetectorSettings) -> list[Event]:
        rows = self._rows(audio)
        window_s = self.window_samples / SAMPLE_RATE
        cry = CryDetector(self.params(detector))
        events: list[Event] = []
        for start, centre, score in zip(
            rows.start_s, rows.centre_s, rows.scores[self.row], strict=True
        ):
            logit = float(np.log(max(score, 1e-9) / max(1 - score, 1e-9)))
            events.append(Score(t=float(centre), score=float(score), logit=logit))
            events += cry.update(float(centre), float(score), float(start) + window_s)
        return events + cry.finish(len(audio) / SAMPLE_RATE)


def teacher_rows(
    teachers_dir: Path, cry_teacher_path: Path | None
) -> Callable[[np.ndarray], TeacherRows]:
    """A function scoring a stream with both teachers: their own cry classes and the ensemble.

    The teachers run once per stream for all rows: results are kept by the audio's digest."""
    from pi_monitor.training.heads import MN04_CRY, YAMNET_CRY, CryTeacher
    from pi_monitor.training.teachers import Teachers

    teachers = Teachers(teachers_dir)
    ensemble = CryTeacher.load(cry_teacher_path) if cry_teacher_path else None
    seen: dict[str, TeacherRows] = {}

    def rows(audio: np.ndarray) -> TeacherRows:
        key = hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest()
        if key not in seen:  # a few floats per window: an evaluation's worth fits in memory
            seen[key] = _score(audio)
        return seen[key]

    def _score(audio: np.ndarray) -> TeacherRows:
        t = teachers.stream(audio)
        scores = {
            "yamnet": t.yamnet.probabilities[:, YAMNET_CRY].astype(np.float64),
            "mn04": t.mn04.probabilities[:, MN04_CRY].astype(np.float64),
        }
        if ensemble is not None:
            logit = ensemble.logit(
                t.yamnet.embeddings, t.yamnet.probabilities, t.mn04.embeddings, t.mn04.logits
            )
            scores["ensemble"] = sigmoid(logit)
        return TeacherRows(t.start_s, t.centre_s, scores)

    return rows


def window_scores(scorer: Scorer, audio: np.ndarray) -> list[float]:
    padded = pad_to(audio, scorer.window_samples)
    return [e.score for e in scorer.events(padded, DetectorSettings()) if isinstance(e, Score)]


def clip_score(scorer: Scorer, audio: np.ndarray) -> float:
    return max(window_scores(scorer, audio))


def validation_threshold(
    scorer: Scorer, val: Sequence[Clip], cache: AudioCache, floor: float = 0.05
) -> float:
    """The student's rule for an on-threshold, for what has no training run to fit it (a teacher,
    a join): a high quantile of window scores on validation negatives (a teacher's floor is low
    so that a near-silent one still detects)."""
    scores = np.concatenate([window_scores(scorer, cache.audio(c)) for c in val if not c.is_cry])
    return threshold_from_negatives(scores, THRESHOLD_QUANTILE, floor=floor)


def threshold_from_negatives(scores: np.ndarray, quantile: float, floor: float) -> float:
    """The one rule for an on-threshold (student and teachers): a high quantile of validation
    negatives' window scores, at most 0.95 so it stays a number a parent can reason about."""
    return float(np.clip(np.quantile(scores, quantile), floor, THRESHOLD_CEILING))


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a random cry outscores a random non-cry (ties count half)."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.concatenate((pos, neg))
    ranks = scipy.stats.rankdata(order)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def recall_at_fpr(pos: Sequence[float], neg: Sequence[float], fpr: float) -> float:
    """Cry recall with the threshold set so at most `fpr` of non-cry clips score above it."""
    neg = np.sort(np.asarray(neg))[::-1]
    allowed = int(np.floor(fpr * len(neg)))
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(np.asarray(pos) > threshold))


def _lowpass(audio: np.ndarray, cutoff: float, sample_rate: int) -> np.ndarray:
    sos = scipy.signal.butter(8, cutoff, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, audio).astype(np.float32)


def report_groups(clip: Clip) -> tuple[str, ...]:
    """The rows a non-cry clip counts in: its family, and music boxes on their own as well."""
    return (clip.family, "music_box") if clip.category == "music_box" else (clip.family,)


def _worst(clips: Sequence[Clip], scores: dict[Path, float], cries: bool) -> list[dict]:
    ranked = sorted((c for c in clips if c.is_cry == cries), key=lambda c: scores[c.file])
    if not cries:
        ranked.reverse()
    return [
        {"path": c.path, "source": c.source, "category": c.category, "score": scores[c.file]}
        for c in ranked[:8]
    ]


def clip_figures(
    scorer: Scorer, test: Sequence[Clip], cache: AudioCache, threshold: float
) -> tuple[dict, dict[Path, float]]:
    scores = {c.file: clip_score(scorer, cache.audio(c)) for c in test}
    pos = [scores[c.file] for c in test if c.is_cry]
    neg = [scores[c.file] for c in test if not c.is_cry]
    figures: dict = {
        "clips": {"cry": len(pos), "not_cry": len(neg)},
        "auc": auc(pos, neg),
        **{f"recall_at_fpr_{f:g}": recall_at_fpr(pos, neg, f) for f in FPRS},
        "recall_at_threshold": float(np.mean(np.asarray(pos) >= threshold)),
        "fpr_at_threshold": float(np.mean(np.asarray(neg) >= threshold)),
        "max_score": float(max(scores.values())),
    }
    figures["per_family"] = {
        family: {
            "clips": len(members),
            "auc": auc(pos, members),
            "fpr_at_threshold": float(np.mean(np.asarray(members) >= threshold)),
        }
        for family in REPORT_FAMILIES
        if (members := [scores[c.file] for c in test if family in report_groups(c)])
    }
    per_source: dict[str, dict] = {}
    for key in sorted({(c.label, c.source) for c in test}):
        members = [scores[c.file] for c in test if (c.label, c.source) == key]
        entry = {"clips": len(members), "mean_score": float(np.mean(members))}
        if key[0] == "cry":
            entry |= {
                "auc": auc(members, neg),
                "recall_at_threshold": float(np.mean(np.asarray(members) >= threshold)),
            }
        else:
            entry["fpr_at_threshold"] = float(np.mean(np.asarray(members) >= threshold))
        per_source[f"{key[0]}:{key[1]}"] = entry
    figures["per_source"] = per_source
    figures["worst_false_positives"] = _worst(test, scores, cries=False)
    figures["worst_missed_cries"] = _worst(test, scores, cries=True)
    return figures, scores


def cry_onset_in(audio: np.ndarray, frame: int = 320, run_s: float = 0.1) -> float:
    """Seconds into a cry clip where crying begins: the first frame of the first 0.1 s run of
    20 ms frames that are within 20 dB of the loudest and 10 dB above the clip's noise floor.

    The run and the floor keep a click or a noisy phone recording's hiss from dating the
    onset early, as a single frame over -20 dB did before."""
    n = len(audio) // frame
    if n == 0:
        return 0.0
    energy = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    floor = np.percentile(energy, 10)
    loud = energy >= max(energy.max() / 100, floor * 10)
    need = max(1, round(run_s * SAMPLE_RATE / frame))
    runs = np.convolve(loud, np.ones(need), mode="valid") >= need
    first = int(np.argmax(runs)) if runs.any() else int(np.argmax(loud))
    return first * frame / SAMPLE_RATE


def _background(
    rng: np.random.Generator, negatives: Sequence[Clip], cache: AudioCache, n: int
) -> np.ndarray:
    """Unseen non-cry clips end to end, over a generated stationary noise floor."""
    parts, total = [], 0
    while total < n:
        x = cache.audio(negatives[rng.integers(len(negatives))])
        x = x * (10 ** (rng.uniform(-35, -20) / 20) / augment.rms(x))
        parts.append(x)
        total += len(x)
    bed = np.concatenate(parts)[:n]
    noise = augment.coloured_noise(rng, n, SAMPLE_RATE) * 10 ** (rng.uniform(-60, -40) / 20)
    return (bed + noise).astype(np.float32)


def _sample(rng: np.random.Generator, clips: list[Clip], most: int) -> list[Clip]:
    if len(clips) <= most:
        return clips
    return [clips[i] for i in sorted(rng.choice(len(clips), most, replace=False))]


def _onset_f1(found: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Onset F1 over the last axis (one mixture each): 2 TP / (2 TP + FP + FN)."""
    tp = found.sum(-1)
    return 2 * tp / np.maximum(2 * tp + others.sum(-1) + (found.shape[-1] - tp), 1)


def event_figures(
    scorer: Scorer,
    test: Sequence[Clip],
    cache: AudioCache,
    seed: int,
    detector: DetectorSettings = DetectorSettings(),
    background: str = "all",
    mixtures_per_cry: int = 1,
) -> dict:
    """One cry per 30 s mixture over unseen backgrounds, at each SNR; onsets matched within 1 s.

    `background` 'all' draws from every test negative; a family name from that family only
    (cries under music or singing). A seeded sample of cries keeps a fold's evaluation short.
    `mixtures_per_cry` of each cry (other beds, other places) narrow the figures' spread where
    cries are few: with validation's 92, one onset F1 has a standard error near 0.045. Each SNR
    also lists, mixture by mixture, whether the cry's onset was found and how many other onsets
    came; the mixtures are seeded, the same for every model, so two reports pair up
    (`paired_onsets`)."""
    most = MAX_MIXTURES if background == "all" else MAX_FAMILY_MIXTURES
    cries = _sample(np.random.default_rng([seed, 3]), [c for c in test if c.is_cry], most)
    negatives = [
        c for c in test if not c.is_cry and (background == "all" or c.family == background)
    ]
    if not cries or not negatives:
        return {}
    sr = SAMPLE_RATE
    out: dict = {}
    latencies: list[float] = []
    for snr in SNRS_DB:
        rng = np.random.default_rng([seed, int(snr) + 100, BACKGROUNDS.index(background)])
        fp_inside = 0
        found: list[int] = []
        others: list[int] = []
        for cry in (c for c in cries for _ in range(mixtures_per_cry)):
            x = cache.audio(cry)[: int((MIXTURE_S - 4) * sr)]
            bed = _background(rng, negatives, cache, int(MIXTURE_S * sr))
            start = int(rng.uniform(2.0, MIXTURE_S - 2.0 - len(x) / sr) * sr)
            span = bed[start : start + len(x)]
            gain = augment.rms(span) * 10 ** (snr / 20) / augment.active_rms(x)
            mixture = bed.copy()
            mixture[start : start + len(x)] += gain * x
            truth = start / sr + cry_onset_in(x)
            onsets = [e for e in scorer.events(mixture, detector) if isinstance(e, CryOnset)]
            matched = [e for e in onsets if abs(e.t - truth) <= COLLAR_S]
            if matched:
                latencies.append(matched[0].emitted_t - truth)
            extra = [e for e in onsets if not matched or e is not matched[0]]
            found.append(int(bool(matched)))
            others.append(len(extra))
            end = (start + len(x)) / sr
            fp_inside += sum(truth - COLLAR_S <= e.t <= end for e in extra)
        tp, fp = sum(found), sum(others)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / len(found) if found else 0.0
        f1 = float(_onset_f1(np.array(found), np.array(others)))
        out[_snr_key(snr)] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mixtures": len(cries) * mixtures_per_cry,
            "false_positives": fp,
            "false_positives_during_the_cry": fp_inside,
            "found": found,
            "other_onsets": others,
        }
    out["latency_s"] = {
        "median": float(np.median(latencies)) if latencies else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "onsets": len(latencies),
    }
    return out


def crossings(events: Sequence[Event], params: DetectorParams) -> list[float]:
    """For each onset, when the window whose on-crossing it confirmed was decided: the moment
    the score crossed. Confirmation takes from none to several windows (`min_bout_s`,
    `sure_threshold`), so a fixed lag back from `emitted_t` would blame the clip before as often
    as the detector's rule changes. The detector that made the onsets is replayed on their
    scores, so the crossing is the one it counted from."""
    replay = CryDetector(params)
    confirmed: list[tuple[float, float]] = []  # where each confirming window and its crossing are
    for e in events:
        if isinstance(e, Score):
            decided = replay.update(e.t, e.score, e.t)
            if any(isinstance(d, CryOnset) for d in decided) and replay.crossing_t is not None:
                confirmed.append((e.t, replay.crossing_t))
    onsets = [e for e in events if isinstance(e, CryOnset)]
    return [
        onset.emitted_t - (at - crossed)
        for onset, (at, crossed) in zip(onsets, confirmed, strict=True)
    ]


def false_alarm_figures(
    scorer: Scorer,
    test: Sequence[Clip],
    cache: AudioCache,
    seed: int,
    detector: DetectorSettings = DetectorSettings(),
    plays: int = 1,
) -> dict:
    """Onsets per hour on every unseen non-cry clip played end to end, twice: as recorded, and
    over generated fan/white noise; overall and per family. Each false alarm is blamed on the
    clip playing when the score crossed the on-threshold, not at its back-dated `t`, which may
    lie in the clip before. `plays` > 1 repeats both in new orders: with short
    clips the rate hinges on which ones play next to each other, and more orders average that
    out."""
    params = scorer.params(detector)
    negatives = [c for c in test if not c.is_cry]
    rng = np.random.default_rng([seed, 7])
    seconds: dict[str, float] = defaultdict(float)
    alarms: dict[str, int] = defaultdict(int)
    by_family: dict[str, int] = defaultdict(int)
    total_s = 0.0
    for with_noise in (False, True) * plays:
        order = [negatives[i] for i in rng.permutation(len(negatives))]
        parts = [cache.audio(c) for c in order]
        stream = np.concatenate(parts)
        if with_noise:
            noise = augment.coloured_noise(rng, len(stream), SAMPLE_RATE)
            stream = augment.mix(stream, noise, float(rng.uniform(0, 12)))
        ends = np.cumsum([len(p) for p in parts]) / SAMPLE_RATE
        total_s += len(stream) / SAMPLE_RATE
        for c, p in zip(order, parts, strict=True):
            for group in report_groups(c):
                seconds[group] += len(p) / SAMPLE_RATE
        for crossed_t in crossings(scorer.events(stream, detector), params):
            clip = order[min(int(np.searchsorted(ends, crossed_t)), len(order) - 1)]
            alarms[f"{clip.source}|{clip.category}"] += 1
            for group in report_groups(clip):
                by_family[group] += 1
    hours = total_s / 3600
    total = sum(alarms.values())
    return {
        "hours": hours,
        "plays": plays,
        "false_alarms": total,
        "per_hour": total / hours if hours else float("nan"),
        "per_family": {
            f: {
                "hours": s / 3600,
                "false_alarms": by_family[f],
                "per_hour": by_family[f] / (s / 3600),
            }
            for f, s in sorted(seconds.items())
        },
        "by_source": dict(sorted(alarms.items(), key=lambda kv: -kv[1])),
    }


def cries_over_music_figures(
    scorer: Scorer, test: Sequence[Clip], cache: AudioCache, seed: int, threshold: float
) -> dict:
    """Clip level: each test cry over a test music (or singing) clip at 0 dB, against those
    music clips alone. A monitor must hear a cry under a lullaby and stay quiet for the song."""
    out: dict = {}
    for family in ("music", "singing"):
        rng = np.random.default_rng([seed, 11, REPORT_FAMILIES.index(family)])
        beds = [c for c in test if c.family == family]
        cries = _sample(rng, [c for c in test if c.is_cry], MAX_MIXTURES)
        if not beds or not cries:
            continue
        mixed, alone = [], [clip_score(scorer, cache.audio(c)) for c in beds]
        for cry in cries:
            x = cache.audio(cry)
            bed = cache.audio(beds[rng.integers(len(beds))])
            bed = np.resize(bed, len(x)) if len(bed) else np.zeros_like(x)
            gain = augment.rms(bed) / augment.active_rms(x)
            mixed.append(clip_score(scorer, (bed + gain * x).astype(np.float32)))
        out[family] = {
            "mixtures": len(mixed),
            "auc": auc(mixed, alone),
            "recall_at_threshold": float(np.mean(np.asarray(mixed) >= threshold)),
            "fpr_at_threshold": float(np.mean(np.asarray(alone) >= threshold)),
        }
    return out


def band_limit_figures(
    scorer: Scorer,
    test: Sequence[Clip],
    scores: dict[Path, float],
    threshold: float,
) -> dict:
    """Cries and non-cries low-passed at 4 and 3 kHz, and cries by original bandwidth: a
    band-limit shortcut would flip these, a sound model not."""
    out: dict = {}
    for label, is_cry in (("cry_recall", True), ("not_cry_fpr", False)):
        members = [c for c in test if c.is_cry == is_cry]
        for orig, pick in (
            ("orig_sr<=8k", lambda c: 0 < c.orig_sr <= 8000),
            ("orig_sr>8k", lambda c: c.orig_sr > 8000),
        ):
            chosen = [scores[c.file] for c in members if pick(c)]
            if chosen:
                out[f"{label} {orig}"] = float(np.mean(np.asarray(chosen) >= threshold))
        for cutoff in (4000.0, 3000.0):
            lowpassed = [
                clip_score(
                    scorer, _lowpass(load_resampled(c.file, SAMPLE_RATE), cutoff, SAMPLE_RATE)
                )
                for c in members
            ]
            out[f"{label} lowpass {cutoff / 1000:g} kHz"] = float(
                np.mean(np.asarray(lowpassed) >= threshold)
            )
        out[f"{label} as recorded"] = float(
            np.mean(np.asarray([scores[c.file] for c in members]) >= threshold)
        )
    return out


def evaluate(
    scorer: Scorer,
    split: Split,
    cache: AudioCache,
    seed: int = 0,
    detector: DetectorSettings = DetectorSettings(),
    mixtures_per_cry: int = 1,
) -> dict:
    """Every figure for one scorer and split; `detector` as in the service's [detector] table."""
    threshold = scorer.threshold(detector)
    clips, scores = clip_figures(scorer, split.test, cache, threshold)
    return {
        "scorer": scorer.name,
        "split": split.name,
        "seed": seed,
        "threshold": threshold,
        "detector": dataclasses.asdict(detector),
        "clip": clips,
        "events": event_figures(scorer, split.test, cache, seed, detector, "all", mixtures_per_cry),
        "events_by_background": {
            b: event_figures(scorer, split.test, cache, seed, detector, b, mixtures_per_cry)
            for b in BACKGROUNDS
            if b != "all"
        },
        "cries_over": cries_over_music_figures(scorer, split.test, cache, seed, threshold),
        "false_alarms": false_alarm_figures(scorer, split.test, cache, seed, detector),
        "band_limit": band_limit_figures(scorer, split.test, scores, threshold),
    }


# The outside check's clips last seconds, so one order's rate swung 89-106/h for one recipe
# (stop 32); eight orders of its 0.42 h make 6.7 h of streams (44 s for the student, 2 cores).
OUTSIDE_PLAYS = 8
SOURCES_SHOWN = 3  # the report line names the sources most false alarms came from


def outside_figures(
    scorer: Scorer,
    clips: Sequence[Clip],
    cache: AudioCache,
    seed: int = 0,
    detector: DetectorSettings = DetectorSettings(),
    plays: int = OUTSIDE_PLAYS,
) -> dict:
    """Sounds no training source holds (`transfer.outside_catalogue`): false alarms per hour
    played end to end as in the test (in `plays` orders), and per category the clips that,
    played alone, score at or above the threshold, with the worst of them by name."""
    threshold = scorer.threshold(detector)
    scores = {c.path: clip_score(scorer, cache.audio(c)) for c in clips}
    by_category: dict[str, dict[str, int]] = {}
    for c in clips:
        counts = by_category.setdefault(c.category, {"clips": 0, "called_cry": 0})
        counts["clips"] += 1
        counts["called_cry"] += int(scores[c.path] >= threshold)
    worst = sorted(clips, key=lambda c: -scores[c.path])[:10]
    return {
        "scorer": scorer.name,
        "split": "outside",
        "threshold": threshold,
        "false_alarms": false_alarm_figures(scorer, clips, cache, seed, detector, plays),
        "called_cry": dict(sorted(by_category.items())),
        "worst": [{"path": c.path, "category": c.category, "score": scores[c.path]} for c in worst],
    }


def format_outside(r: dict) -> str:
    """An outside report as Markdown."""
    return "\n".join(
        [
            f"## outside: {r['scorer']} (threshold {r['threshold']:.3f})",
            _false_alarm_line(r["false_alarms"]),
            "- clips called cry, played alone: "
            + ", ".join(f"{k} {v['called_cry']}/{v['clips']}" for k, v in r["called_cry"].items()),
            "- highest scores: "
            + "; ".join(f"{Path(w['path']).name} {w['score']:.3f}" for w in r["worst"][:6]),
        ]
    )


def _f1s(events: dict) -> str:
    return "/".join(f"{events[_snr_key(s)]['f1']:.3f}" for s in SNRS_DB) if events else "n/a"


def _false_alarm_line(fa: dict) -> str:
    """The rate, per family, and the sources most alarms came from: on the outside check one
    package's voices can make most of the rate, which a per-hour figure alone hides."""
    total = fa["false_alarms"]
    top = list(fa.get("by_source", {}).items())[:SOURCES_SHOWN]
    most = "; most from " + ", ".join(f"{s} {n} ({n / total:.0%})" for s, n in top) if total else ""
    return (
        f"- false alarms: {total} in {fa['hours']:.2f} h = {fa['per_hour']:.2f}/h; "
        "per family "
        + ", ".join(f"{f} {v['per_hour']:.1f}/h" for f, v in fa["per_family"].items())
        + most
    )


def format_report(r: dict) -> str:
    """The headline figures as Markdown."""
    c, e, fa = r["clip"], r["events"], r["false_alarms"]
    lines = [
        f"## {r['split']}: {r['scorer']} (threshold {r['threshold']:.3f})",
        f"- clips: {c['clips']['cry']} cry / {c['clips']['not_cry']} not_cry; "
        f"AUC {c['auc']:.4f}; recall @1% FPR {c['recall_at_fpr_0.01']:.3f}, "
        f"@0.1% FPR {c['recall_at_fpr_0.001']:.3f}; at threshold: recall "
        f"{c['recall_at_threshold']:.3f}, FPR {c['fpr_at_threshold']:.4f}",
        f"- event onset F1 -6/0/+6 dB (1 s collar): all backgrounds {_f1s(e)}; "
        + "; ".join(f"over {b} {_f1s(v)}" for b, v in r["events_by_background"].items()),
        f"- onset latency: median {e['latency_s']['median']:.2f} s, "
        f"p95 {e['latency_s']['p95']:.2f} s",
        _false_alarm_line(fa),
        "- cries over music/singing at 0 dB (clip): "
        + "; ".join(
            f"{f} AUC {v['auc']:.4f}, recall {v['recall_at_threshold']:.3f}, "
            f"FPR {v['fpr_at_threshold']:.3f}"
            for f, v in r["cries_over"].items()
        ),
        "- band limit: " + ", ".join(f"{k} {v:.3f}" for k, v in r["band_limit"].items()),
        "- worst false positives: "
        + "; ".join(
            f"{w['source']}/{w['category']} {w['score']:.3f}"
            for w in c["worst_false_positives"][:5]
        ),
        "- worst missed cries: "
        + "; ".join(
            f"{w['source']}/{w['category']} {w['score']:.3f}" for w in c["worst_missed_cries"][:5]
        ),
    ]
    return "\n".join(lines)


def card_tables(reports: Sequence[dict]) -> str:
    """The model card's Markdown tables from evaluation reports, so the card is regenerated,
    not retyped: headline figures, families, cries over music, band limits, then detail."""
    levels = "/".join(f"{s:+g}" for s in SNRS_DB)
    out = [
        "| split | scorer | cry/not_cry clips | clip AUC | recall @1% FPR | recall @0.1% FPR "
        f"| onset F1 {levels} dB | false alarms/h (h) | latency median / p95 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        c, e, fa = r["clip"], r["events"], r["false_alarms"]
        out.append(
            f"| {r['split']} | {r['scorer']} | {c['clips']['cry']}/{c['clips']['not_cry']} "
            f"| {c['auc']:.4f} | {c['recall_at_fpr_0.01']:.3f} | {c['recall_at_fpr_0.001']:.3f} "
            f"| {_f1s(e)} | {fa['per_hour']:.2f} ({fa['hours']:.2f}) "
            f"| {e['latency_s']['median']:.2f} / {e['latency_s']['p95']:.2f} |"
        )
    out += [
        "",
        "| split | scorer | false alarms/h by family | clip AUC (cry vs family) "
        f"| onset F1 {levels} dB over music / over singing | cries over music, singing at 0 dB "
        "(clip AUC, recall) |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        fams = ", ".join(
            f"{f} {v['per_hour']:.1f}" for f, v in r["false_alarms"]["per_family"].items()
        )
        aucs = ", ".join(f"{f} {v['auc']:.4f}" for f, v in r["clip"]["per_family"].items())
        by_bg = " / ".join(_f1s(v) for v in r["events_by_background"].values())
        over = ", ".join(
            f"{f} {v['auc']:.4f}, {v['recall_at_threshold']:.2f}"
            for f, v in r["cries_over"].items()
        )
        out.append(f"| {r['split']} | {r['scorer']} | {fams} | {aucs} | {by_bg} | {over} |")
    keys = list(reports[0]["band_limit"])
    out += ["", "| split | scorer | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r in reports:
        values = " | ".join(f"{r['band_limit'].get(k, float('nan')):.3f}" for k in keys)
        out.append(f"| {r['split']} | {r['scorer']} | {values} |")
    for r in reports:
        c = r["clip"]
        out += [
            "",
            f"### {r['split']}, {r['scorer']}: per source (threshold {r['threshold']:.3f})",
            "| source | clips | AUC vs all non-cry | recall or FPR at threshold | mean score |",
            "|---|---|---|---|---|",
        ]
        for name, v in c["per_source"].items():
            auc_text = f"{v['auc']:.3f}" if "auc" in v else "n/a"
            rate = v.get("recall_at_threshold", v.get("fpr_at_threshold"))
            out.append(
                f"| {name} | {v['clips']} | {auc_text} | {rate:.3f} | {v['mean_score']:.3f} |"
            )
        for title, key in (
            ("Worst false positives", "worst_false_positives"),
            ("Worst missed cries", "worst_missed_cries"),
        ):
            items = "; ".join(
                f"`{w['path']}` ({w['source']}, {w['category']}) {w['score']:.4f}"
                for w in c[key][:5]
            )
            out += ["", f"{title}: {items}"]
        by_source = ", ".join(f"{k} {n}" for k, n in r["false_alarms"]["by_source"].items())
        out += ["", f"False alarms by source: {by_source}"]
    return "\n".join(out)


def trade_off(reports: dict[str, dict]) -> str:
    """Onset F1 at 0 dB against false alarms over many runs' reports: one fitted line and each
    run's distance from it, to tell a recipe that moves the curve from one that moves along it
    (a distance smaller than the event test's own standard error says nothing)."""
    if len(reports) < 3:
        raise ValueError(
            "a line through fewer than three runs has no spread: give three reports or more"
        )
    names = list(reports)
    alarms = np.array([reports[n]["false_alarms"]["false_alarms"] for n in names], dtype=float)
    f1 = np.array([reports[n]["events"][_snr_key(0)]["f1"] for n in names])
    slope, intercept = np.polyfit(alarms, f1, 1)
    above = f1 - (intercept + slope * alarms)
    lines = [
        f"onset F1 at 0 dB = {intercept:.3f} + {slope:.4f} x false alarms over {len(names)} runs; "
        f"distance from the line: sd {above.std(ddof=2):.3f}",
        "| run | false alarms | onset F1 0 dB | above the line |",
        "|---|---|---|---|",
    ]
    for i in np.argsort(-above, kind="stable"):
        lines.append(f"| {names[i]} | {alarms[i]:.0f} | {f1[i]:.3f} | {above[i]:+.3f} |")
    return "\n".join(lines)


PAIRED_DRAWS = 10_000


def paired_onsets(
    before: tuple[str, dict], after: tuple[str, dict], draws: int = PAIRED_DRAWS, seed: int = 0
) -> str:
    """Onset F1 of two runs' reports (name, report row) on the same mixtures, `after` minus
    `before`, per background and SNR: a bootstrap over the mixtures (both runs on each draw) and
    the mixtures only one of them found, so that a tie is told from a loss (one run's F1 alone
    moves 0.02-0.05 by chance)."""
    (name_a, before_row), (name_b, after_row) = before, after
    known = [k for k in ("split", "seed") if k in before_row and k in after_row]
    unlike = [k for k in known if before_row[k] != after_row[k]]
    if unlike:
        raise ValueError(
            f"{name_a} and {name_b} differ in {' and '.join(unlike)}, so their mixtures differ; "
            "read both with the same --on and --seed"
        )
    rows = []
    groups = {"all": before_row["events"], **before_row.get("events_by_background", {})}
    other = {"all": after_row["events"], **after_row.get("events_by_background", {})}
    for background, events in groups.items():
        for snr in (_snr_key(s) for s in SNRS_DB):
            a, b = events.get(snr, {}), other.get(background, {}).get(snr, {})
            if not a and not b:  # no cries in this split or background
                continue
            for name, row in ((name_a, a), (name_b, b)):
                if "found" not in row:
                    raise ValueError(
                        f"{name}: no mixture-by-mixture onsets for {background} {snr} (a report "
                        "written before they were kept); evaluate that model again with --report"
                    )
            if len(a["found"]) != len(b["found"]):
                raise ValueError(
                    f"{background} {snr}: {len(a['found'])} mixtures against "
                    f"{len(b['found'])}; read both with the same --on and --mixtures-per-cry"
                )
            fa, fb = np.array(a["found"]), np.array(b["found"])
            oa, ob = np.array(a["other_onsets"]), np.array(b["other_onsets"])
            picks = np.random.default_rng(seed).integers(0, len(fa), size=(draws, len(fa)))
            gain = _onset_f1(fb[picks], ob[picks]) - _onset_f1(fa[picks], oa[picks])
            low, high = np.percentile(gain, [2.5, 97.5])
            only_b, only_a = int((fb > fa).sum()), int((fa > fb).sum())
            p = scipy.stats.binomtest(only_b, only_b + only_a).pvalue if only_a + only_b else 1.0
            f1a, f1b = float(_onset_f1(fa, oa)), float(_onset_f1(fb, ob))
            rows.append(
                f"| {background} | {snr} | {len(fa)} | {f1a:.3f} | {f1b:.3f} | {f1b - f1a:+.3f} "
                f"| {low:+.3f} to {high:+.3f} | {only_b} / {only_a} | {p:.2f} |"
            )
    return "\n".join(
        [
            f"onset F1 of {name_b} (threshold {after_row['threshold']:.2f}) against {name_a} "
            f"({before_row['threshold']:.2f}) on the same mixtures; interval: {draws} paired "
            "bootstrap draws; p: exact McNemar on the cries one run found and the other missed",
            f"| background | SNR | mixtures | {name_a} | {name_b} | difference | 95 % interval "
            f"| found by {name_b} only / {name_a} only | p |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )

"""Evaluation through the service's replay pipeline, on clips the model never trained on.

Every figure comes from `Pipeline` events (Score, CryOnset), the same code path as live and
replay, with the detector's default settings and the model's recommended threshold:
clip AUC and recall at fixed clip false-positive rates (clip score = its highest window score),
event onsets on synthesised long mixtures (DCASE 2017 task 2 style, 1 s collar), false alarms
per hour on long non-cry streams, onset latency, and band-limit checks.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.signal
import scipy.stats

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DetectorSettings
from pi_monitor.detector import DetectorParams
from pi_monitor.events import CryOnset, Event, Score
from pi_monitor.pipeline import Pipeline
from pi_monitor.training import augment
from pi_monitor.training.corpus import AudioCache, Clip, Split, load_resampled
from pi_monitor.training.examples import pad_to, window_samples

BLOCK = 8000
MAX_MIXTURES = 100
SNRS_DB = (-6.0, 0.0, 6.0)
MIXTURE_S = 30.0
COLLAR_S = 1.0
FPRS = (0.01, 0.001)


def replay(
    classifier: CryClassifier, audio: np.ndarray, detector: DetectorSettings = DetectorSettings()
) -> list[Event]:
    """All events of one stream, fed in fixed blocks as the replay command does."""
    pipeline = Pipeline(classifier, detector)
    events: list[Event] = []
    for i in range(0, len(audio), BLOCK):
        events += pipeline.process(audio[i : i + BLOCK])
    return events + pipeline.finish()


def clip_score(classifier: CryClassifier, audio: np.ndarray) -> float:
    scores = [
        e.score for e in replay(classifier, pad_to(audio, window_samples())) if isinstance(e, Score)
    ]
    return max(scores)


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


def clip_figures(
    classifier: CryClassifier, test: Sequence[Clip], cache: AudioCache, threshold: float
) -> tuple[dict, dict[str, float]]:
    scores = {c.path: clip_score(classifier, cache.audio(c)) for c in test}
    pos = [scores[c.path] for c in test if c.is_cry]
    neg = [scores[c.path] for c in test if not c.is_cry]
    figures: dict = {
        "clips": {"cry": len(pos), "not_cry": len(neg)},
        "auc": auc(pos, neg),
        **{f"recall_at_fpr_{f:g}": recall_at_fpr(pos, neg, f) for f in FPRS},
        "recall_at_threshold": float(np.mean(np.asarray(pos) >= threshold)),
        "fpr_at_threshold": float(np.mean(np.asarray(neg) >= threshold)),
        "max_score": float(max(scores.values())),
    }
    per_source: dict[str, dict] = {}
    for key in sorted({(c.label, c.source) for c in test}):
        members = [scores[c.path] for c in test if (c.label, c.source) == key]
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
    ranked = sorted(test, key=lambda c: scores[c.path])
    figures["worst_false_positives"] = [
        {"path": c.path, "source": c.source, "category": c.category, "score": scores[c.path]}
        for c in reversed(ranked)
        if not c.is_cry
    ][:8]
    figures["worst_missed_cries"] = [
        {"path": c.path, "source": c.source, "category": c.category, "score": scores[c.path]}
        for c in ranked
        if c.is_cry
    ][:8]
    return figures, scores


def cry_onset_in(audio: np.ndarray, frame: int = 160) -> float:
    """Seconds into a cry clip where it first reaches -20 dB of its loudest 20 ms frame."""
    n = len(audio) // frame
    energy = np.mean(np.square(audio[: n * frame].reshape(n, frame)), axis=1)
    first = int(np.argmax(energy >= energy.max() / 100))
    return first * frame / 8000


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
    noise = augment.coloured_noise(rng, n, 8000) * 10 ** (rng.uniform(-60, -40) / 20)
    return (bed + noise).astype(np.float32)


def event_figures(
    classifier: CryClassifier,
    test: Sequence[Clip],
    cache: AudioCache,
    seed: int,
    detector: DetectorSettings = DetectorSettings(),
) -> dict:
    """One cry per 30 s mixture over unseen backgrounds, at each SNR; onsets matched within 1 s.

    At most MAX_MIXTURES cries (a seeded sample) per level keep a fold's evaluation short."""
    cries = [c for c in test if c.is_cry]
    if len(cries) > MAX_MIXTURES:
        chosen = np.random.default_rng([seed, 3]).choice(len(cries), MAX_MIXTURES, replace=False)
        cries = [cries[i] for i in sorted(chosen)]
    negatives = [c for c in test if not c.is_cry]
    sr = 8000
    out: dict = {}
    latencies: list[float] = []
    for snr in SNRS_DB:
        rng = np.random.default_rng([seed, int(snr) + 100])
        tp = fp = fn = fp_inside = 0
        for cry in cries:
            x = cache.audio(cry)[: int((MIXTURE_S - 4) * sr)]
            bed = _background(rng, negatives, cache, int(MIXTURE_S * sr))
            start = int(rng.uniform(2.0, MIXTURE_S - 2.0 - len(x) / sr) * sr)
            span = bed[start : start + len(x)]
            gain = augment.rms(span) * 10 ** (snr / 20) / augment.active_rms(x)
            mixture = bed.copy()
            mixture[start : start + len(x)] += gain * x
            truth = start / sr + cry_onset_in(x)
            events = replay(classifier, mixture, detector)
            onsets = [e for e in events if isinstance(e, CryOnset)]
            matched = [e for e in onsets if abs(e.t - truth) <= COLLAR_S]
            if matched:
                tp += 1
                latencies.append(matched[0].emitted_t - truth)
            else:
                fn += 1
            extra = [e for e in onsets if not matched or e is not matched[0]]
            fp += len(extra)
            end = (start + len(x)) / sr
            fp_inside += sum(truth - COLLAR_S <= e.t <= end for e in extra)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"{snr:+g} dB"] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mixtures": len(cries),
            "false_positives": fp,
            "false_positives_during_the_cry": fp_inside,
        }
    out["latency_s"] = {
        "median": float(np.median(latencies)) if latencies else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "onsets": len(latencies),
    }
    return out


def false_alarm_figures(
    classifier: CryClassifier,
    test: Sequence[Clip],
    cache: AudioCache,
    seed: int,
    detector: DetectorSettings = DetectorSettings(),
) -> dict:
    """Onsets per hour on every unseen non-cry clip played end to end, twice: as recorded, and
    over generated fan/white noise. Each false alarm is blamed on the clip playing when the
    score crossed the on-threshold, not at its back-dated `t`, which may lie in the clip before."""
    crossing_lag = classifier.info.window_s / 2 + detector.min_bout_s
    negatives = [c for c in test if not c.is_cry]
    rng = np.random.default_rng([seed, 7])
    seconds = 0.0
    alarms: dict[str, int] = defaultdict(int)
    for with_noise in (False, True):
        order = [negatives[i] for i in rng.permutation(len(negatives))]
        parts = [cache.audio(c) for c in order]
        stream = np.concatenate(parts)
        if with_noise:
            noise = augment.coloured_noise(rng, len(stream), 8000)
            stream = augment.mix(stream, noise, float(rng.uniform(0, 12)))
        ends = np.cumsum([len(p) for p in parts]) / 8000
        for e in replay(classifier, stream, detector):
            if isinstance(e, CryOnset):
                at = np.searchsorted(ends, e.emitted_t - crossing_lag)
                clip = order[min(int(at), len(order) - 1)]
                alarms[f"{clip.source}|{clip.category}"] += 1
        seconds += len(stream) / 8000
    total = sum(alarms.values())
    return {
        "hours": seconds / 3600,
        "false_alarms": total,
        "per_hour": total / (seconds / 3600),
        "by_source": dict(sorted(alarms.items(), key=lambda kv: -kv[1])),
    }


def band_limit_figures(
    classifier: CryClassifier,
    test: Sequence[Clip],
    corpus: Path,
    scores: dict[str, float],
    threshold: float,
) -> dict:
    """Cries and non-cries low-passed (at 16 kHz, before resampling) at 4 and 3 kHz, and
    cries by original bandwidth: a band-limit shortcut would flip these, a sound model not."""
    out: dict = {}
    for label, is_cry in (("cry_recall", True), ("not_cry_fpr", False)):
        members = [c for c in test if c.is_cry == is_cry]
        for orig, pick in (
            ("orig_sr<=8k", lambda c: 0 < c.orig_sr <= 8000),
            ("orig_sr>8k", lambda c: c.orig_sr > 8000),
        ):
            chosen = [scores[c.path] for c in members if pick(c)]
            if chosen:
                out[f"{label} {orig}"] = float(np.mean(np.asarray(chosen) >= threshold))
        for cutoff in (4000.0, 3000.0):
            lowpassed = []
            for c in members:
                audio = _lowpass(load_resampled(corpus / c.path, 16000), cutoff, 16000)
                g = scipy.signal.resample_poly(audio, 1, 2).astype(np.float32)
                lowpassed.append(clip_score(classifier, g))
            out[f"{label} lowpass {cutoff / 1000:g} kHz"] = float(
                np.mean(np.asarray(lowpassed) >= threshold)
            )
        out[f"{label} as recorded"] = float(
            np.mean(np.asarray([scores[c.path] for c in members]) >= threshold)
        )
    return out


def evaluate(
    model: Path,
    split: Split,
    cache: AudioCache,
    corpus: Path,
    seed: int = 0,
    detector: DetectorSettings = DetectorSettings(),
) -> dict:
    """Every figure for one model and split; `detector` as in the service's [detector] table."""
    classifier = CryClassifier(model)
    info = classifier.info
    threshold = DetectorParams.for_model(detector, info).on_threshold
    clips, scores = clip_figures(classifier, split.test, cache, threshold)
    return {
        "model": str(model),
        "split": split.name,
        "threshold": threshold,
        "detector": dataclasses.asdict(detector),
        "clip": clips,
        "events": event_figures(classifier, split.test, cache, seed, detector),
        "false_alarms": false_alarm_figures(classifier, split.test, cache, seed, detector),
        "band_limit": band_limit_figures(classifier, split.test, corpus, scores, threshold),
    }


def format_report(r: dict) -> str:
    """The headline figures as Markdown."""
    c, e, fa = r["clip"], r["events"], r["false_alarms"]
    lines = [
        f"## {r['split']} ({r['model']}, threshold {r['threshold']:.3f})",
        f"- clips: {c['clips']['cry']} cry / {c['clips']['not_cry']} not_cry; "
        f"AUC {c['auc']:.4f}; recall @1% FPR {c['recall_at_fpr_0.01']:.3f}, "
        f"@0.1% FPR {c['recall_at_fpr_0.001']:.3f}; at threshold: recall "
        f"{c['recall_at_threshold']:.3f}, FPR {c['fpr_at_threshold']:.4f}; "
        f"max score {c['max_score']:.4f}",
        "- event onset F1 (1 s collar): "
        + ", ".join(
            f"{k} {v['f1']:.3f} (P {v['precision']:.3f} R {v['recall']:.3f}, "
            f"{v['false_positives']} FP, {v['false_positives_during_the_cry']} of them late or "
            "repeated onsets during the cry)"
            for k, v in e.items()
            if k.endswith("dB")
        ),
        f"- onset latency: median {e['latency_s']['median']:.2f} s, "
        f"p95 {e['latency_s']['p95']:.2f} s",
        f"- false alarms: {fa['false_alarms']} in {fa['hours']:.2f} h = {fa['per_hour']:.2f}/h; "
        f"by source {fa['by_source']}",
        "- band limit: " + ", ".join(f"{k} {v:.3f}" for k, v in r["band_limit"].items()),
        "- per source: "
        + "; ".join(
            f"{k} n={v['clips']} "
            + (
                f"AUC {v['auc']:.3f} recall {v['recall_at_threshold']:.3f}"
                if "auc" in v
                else f"FPR {v['fpr_at_threshold']:.3f}"
            )
            for k, v in c["per_source"].items()
        ),
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
    not retyped: headline figures, band-limit checks, then per-source detail for each report."""
    levels = [f"{snr:+g} dB" for snr in SNRS_DB]
    out = [
        "| split | cry/not_cry clips | clip AUC | recall @1% FPR | recall @0.1% FPR "
        "| recall / FPR at threshold | onset F1 " + "/".join(levels) + " | false alarms/h (h) "
        "| latency median / p95 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        c, e, fa = r["clip"], r["events"], r["false_alarms"]
        f1 = "/".join(f"{e[k]['f1']:.3f}" for k in levels)
        out.append(
            f"| {r['split']} | {c['clips']['cry']}/{c['clips']['not_cry']} | {c['auc']:.4f} "
            f"| {c['recall_at_fpr_0.01']:.3f} | {c['recall_at_fpr_0.001']:.3f} "
            f"| {c['recall_at_threshold']:.3f} / {c['fpr_at_threshold']:.3f} "
            f"| {f1} "
            f"| {fa['per_hour']:.1f} ({fa['hours']:.2f}) "
            f"| {e['latency_s']['median']:.2f} / {e['latency_s']['p95']:.2f} |"
        )
    keys = list(reports[0]["band_limit"])
    out += ["", "| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in reports:
        values = " | ".join(f"{r['band_limit'].get(k, float('nan')):.3f}" for k in keys)
        out.append(f"| {r['split']} | {values} |")
    for r in reports:
        c = r["clip"]
        out += [
            "",
            f"### {r['split']}: per source (threshold {r['threshold']:.3f})",
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

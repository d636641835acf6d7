"""Per-keyword thresholds for a target false-alarm rate, measured on negative audio.

The negatives (recordings with none of the keywords spoken as commands) are laid out as a
continuous stream over background noise, exactly as ``lmustream eval-stream`` does without
keyword clips; the model runs over it once, and each keyword's threshold is the lowest
swept value whose false alarms per hour on that stream stay within the target. With H
hours of negatives, rates below 1/H per hour cannot be told from zero: the result says so.

The output is a JSON object that :class:`~lmustream.stream.detector.Detector` (``threshold=``)
and ``--thresholds`` take, and that ``write_calibrated_model`` stores inside a model file
as its default (``extra.detector``)::

    {"thresholds": {"yes": 0.93, ...}, "window": 1.0, "smoothing": 0.1, "refractory": 1.0,
     "hold": 0.0, "posterior": "sigmoid", "target_fa_per_hour": 1.0, "negative_hours": 2.0, ...}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lmustream.errors import ConfigError
from lmustream.stream.detector import DetectorConfig, silence_logits
from lmustream.stream.stream_eval import (RATE, KeywordCurve, build_plan, frame_logits, pick_thresholds, stream_levels,
                                          summarize, sweep)


def calibrate(kernel, negatives: list[Path], noise: list[Path], config: DetectorConfig, target_fa_per_hour: float,
              hours: float, keywords: list[str], seed: int = 0, positives: dict | None = None,
              progress_factory=None) -> tuple[dict, dict[str, KeywordCurve], object]:
    """``(calibration dict, curves, plan)``: thresholds for ``target_fa_per_hour`` on the negatives
    (and, when ``positives`` are given, the FRR they lead to on those clips)."""
    # NaN passes a bare sign check, and then no threshold meets it: every one would become 1.0
    if not math.isfinite(target_fa_per_hour) or target_fa_per_hour <= 0:
        raise ConfigError(f"--target-fa-per-hour must be a number > 0, got {target_fa_per_hour}")
    if not negatives and not noise:
        raise ConfigError("calibrate needs negative audio (--negatives) or background noise (--noise)")
    plan = build_plan(positives or {}, negatives, noise, hours, seed=seed)
    bar = progress_factory(plan) if progress_factory else None
    try:
        logits = frame_logits(kernel, plan, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    # the Detector's window starts full of the model's silence logits: the sweep must start as it does, or
    # the stream's opening noise alone decides its first second and raises false alarms no detector raises
    prior = silence_logits(kernel.open(), RATE)
    curves = sweep(logits, list(kernel.labels), plan, config, int(kernel.lookahead), keywords=keywords,
                   levels=stream_levels(plan), prior_logits=prior)
    thresholds = pick_thresholds(curves, plan.hours, target_fa_per_hour)
    table = summarize(curves, plan.hours, fa_rates=(target_fa_per_hour,))
    key = f"{target_fa_per_hour:g}"
    result = {
        **{k: v for k, v in config.to_dict().items() if k not in ("thresholds", "threshold")},
        "thresholds": thresholds,
        "target_fa_per_hour": target_fa_per_hour,
        "negative_hours": round(plan.hours, 4),
        "measured_fa_per_hour": {k: table[k][key]["fa_per_hour"] for k in keywords},
        "resolution_fa_per_hour": round(1.0 / plan.hours, 4),
        "stream": {k: v for k, v in plan.composition.items()
                   if k not in ("skipped_clips_without_speech", "skipped_unreadable_files")},
    }
    if positives:
        result["frr_at_target"] = {k: table[k][key]["frr"] for k in keywords}
    return result, curves, plan


def write_calibration(result: dict, path: str | Path) -> None:
    from lmustream.models.artifact import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode("utf-8"))


def write_calibrated_model(model_path: str | Path, result: dict, out: str | Path) -> None:
    """A copy of the model file with the calibration as its detector defaults (``extra.detector``)."""
    from lmustream.models.artifact import load_model, save_model

    artifact = load_model(model_path)
    keep = ("thresholds", "window", "smoothing", "refractory", "hold", "posterior", "isolation", "trailing_pause",
            "one_per_word", "target_fa_per_hour", "negative_hours")
    artifact.extra = {**artifact.extra, "detector": {k: result[k] for k in keep if k in result}}
    save_model(out, artifact)

"""Early-exit evaluation: a dataset split through the model, every policy swept, the report.

``lmustream eval --early-exit`` (:func:`run_cli`) and ``benchmarks/early_exit.py`` use it;
the policies, the frame accounting and the Recognizer live in :mod:`lmustream.stream.early_exit`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lmustream.errors import ConfigError
from lmustream.stream.early_exit import (DEFAULT_MAX_DROP, PrefixOutputs, best_point, default_grid, make_policy,
                                         pareto_front, prefix_outputs, step_check)


# -- reading a dataset split the way `lmustream eval` does ----------------------------------------
def open_eval_split(artifact, data_path: str, split: str = "test", *, kind: str = "auto", task: str | None = None,
                    pattern: str | None = None, label_map: dict | None = None, cache_dir: str | None = None,
                    seed: int = 0, noise_dir: str | None = None):
    """A FeatureDataset of ``split`` ("train", "validation", "test", or "all") chosen exactly as
    ``lmustream eval`` chooses it (the model's own speaker split when it was trained on this data)."""
    from lmustream.data.feature_dataset import FeatureDataset
    from lmustream.data.pack import is_pack
    from lmustream.train.evaluate import eval_clips

    if is_pack(data_path):
        raise ConfigError(f"{data_path} is a feature pack; --early-exit reads a dataset's audio (plain "
                          f"`lmustream eval` scores a pack)")
    clips, _ = eval_clips(artifact, data_path, split, kind=kind, task=task, pattern=pattern, label_map=label_map,
                          seed=seed, noise_dir=noise_dir)
    return FeatureDataset(clips, artifact.labels, artifact.frontend, frames=artifact.model.config.frames,
                          cache_dir=cache_dir)


def dataset_prefix_outputs(artifact, dataset, batch_size: int = 128, progress: bool = False) -> PrefixOutputs:
    """:func:`prefix_outputs` over a FeatureDataset's readable clips (a progress bar when ``progress``); a clip
    whose audio fails to load is warned about and left out, as ``lmustream eval`` leaves it out."""
    from lmustream.train.evaluate import readable_batches

    batches = readable_batches(dataset, batch_size, [])
    bar = None
    if progress:
        from tqdm import tqdm

        def bar(it):
            return tqdm(it, total=math.ceil(len(dataset) / batch_size), desc="early exit", unit="batch", leave=False)
    return prefix_outputs(artifact.model, batches, frontend=artifact.frontend, progress=bar)


# -- the report ----------------------------------------------------------------------------------
def early_exit_report(outputs: PrefixOutputs, *, max_drop: float = DEFAULT_MAX_DROP,
                      tune: PrefixOutputs | None = None, grid: dict | None = None) -> dict:
    """Sweep every policy on ``outputs``; the chosen operating point saves the most frames at an
    accuracy drop <= ``max_drop``. With ``tune`` (e.g. the validation split), each policy's setting
    is chosen there and measured on ``outputs``. JSON-ready."""
    grid = default_grid(outputs.frames) if grid is None else grid
    sweep = outputs.sweep(grid)
    tuned = tune.sweep(grid) if tune is not None else sweep
    per_policy = {}
    for name, points in sweep.items():
        choice = best_point(tuned[name], max_drop)
        measured = None
        if choice is not None:
            measured = outputs.score(make_policy(choice.policy, **choice.params))
        per_policy[name] = {"best": measured.to_dict() if measured else None,
                            "front": [p.to_dict() for p in pareto_front(points)],
                            "sweep": [p.to_dict() for p in points]}
    candidates = [(name, p) for name, p in per_policy.items() if p["best"] is not None]
    if tune is None:
        # with no separate tuning split, the most frames saved among the feasible points
        ranked = sorted(candidates, key=lambda c: (c[1]["best"]["mean_frames"], -c[1]["best"]["accuracy"]))
    else:
        # chosen by the tuning split's numbers, not the evaluated ones
        tuned_best = {name: best_point(tuned[name], max_drop) for name, _ in candidates}
        ranked = sorted(candidates, key=lambda c: (tuned_best[c[0]].mean_frames, -tuned_best[c[0]].accuracy))
    chosen = ranked[0][1]["best"] if ranked else None
    result = {
        "n": int(outputs.targets.shape[0]),
        "frames": outputs.frames,
        "lookahead": outputs.lookahead,
        "frame_ms": outputs.frame_ms,
        "mean_audio_frames": float(outputs.audio_frames.double().mean()),
        "full_accuracy": outputs.full_accuracy,
        "max_drop": max_drop,
        "tuned_on": "evaluated split" if tune is None else "separate split",
        "policy": chosen["describe"] if chosen else None,
        "policy_name": chosen["policy"] if chosen else None,
        "policy_params": chosen["params"] if chosen else None,
        "exit_accuracy": chosen["accuracy"] if chosen else outputs.full_accuracy,
        "mean_frames": chosen["mean_frames"] if chosen else float(outputs.frames),
        "frames_saved": chosen["frames_saved"] if chosen else 0.0,
        "audio_frames_saved": chosen["audio_frames_saved"] if chosen else 0.0,
        "accuracy_drop": chosen["accuracy_drop"] if chosen else 0.0,
        "policies": per_policy,
        "accuracy_vs_frames": outputs.accuracy_vs_frames(),
    }
    return result


def format_report(result: dict) -> str:
    """A readable summary of :func:`early_exit_report`'s result."""
    N, D = result["frames"], result["lookahead"]
    lines = [f"full-sequence accuracy {result['full_accuracy']:.4f} on {result['n']} clips "
             f"({N} input frames, look-ahead {D} frames, mean real audio {result['mean_audio_frames']:.1f} frames)",
             "", "accuracy vs frames seen (the streaming output available after that many input frames):"]
    curve = {row["frames_seen"]: row for row in result["accuracy_vs_frames"]}
    marks = sorted({max(D + 1, round(N * f)) for f in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)} | {N})
    for seen in marks:
        row = curve[seen]
        lines.append(f"  {seen:>4} frames ({row['fraction'] * 100:5.1f}%)  accuracy {row['accuracy']:.4f}")
    lines += ["", f"best operating point per policy (accuracy drop <= {result['max_drop'] * 100:.2g}%, "
                  f"tuned on the {result['tuned_on']}):",
              f"  {'policy':<40}{'accuracy':>9}{'drop':>8}{'mean frames':>13}{'saved':>8}{'audio saved':>13}"]
    for name, entry in result["policies"].items():
        b = entry["best"]
        if b is None:
            lines.append(f"  {name:<40}{'(no setting within the drop)':>51}")
            continue
        lines.append(f"  {b['describe']:<40}{b['accuracy']:>9.4f}{b['accuracy_drop'] * 100:>7.2f}%"
                     f"{b['mean_frames']:>13.1f}{b['frames_saved'] * 100:>7.1f}%"
                     f"{b['audio_frames_saved'] * 100:>12.1f}%")
    if result["policy"]:
        lines += ["", f"chosen: {result['policy']}: {result['frames_saved'] * 100:.1f}% fewer frames "
                      f"({result['mean_frames']:.1f} of {N}; {result['audio_frames_saved'] * 100:.1f}% of the "
                      f"real audio), accuracy {result['exit_accuracy']:.4f} "
                      f"(drop {result['accuracy_drop'] * 100:.2f}%)"]
    else:
        lines += ["", "no policy setting stays within the accuracy drop"]
    return "\n".join(lines)


def write_csv(result: dict, path: str | Path) -> list[Path]:
    """Accuracy vs frames seen into ``path``; every policy setting into ``<stem>-policies.csv`` beside it."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frames_seen", "ms", "fraction", "output_frame", "accuracy"])
        for row in result["accuracy_vs_frames"]:
            w.writerow([row["frames_seen"], row["ms"], f"{row['fraction']:.6f}",
                        "" if row["output_frame"] is None else row["output_frame"],
                        "" if row["accuracy"] is None else f"{row['accuracy']:.6f}"])
    policies = path.with_name(path.stem + "-policies.csv")
    with open(policies, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", "frames", "threshold", "margin", "accuracy", "accuracy_drop", "mean_frames",
                    "frames_saved", "audio_frames_saved"])
        for name, entry in result["policies"].items():
            for p in entry["sweep"]:
                params = p["params"]
                w.writerow([name, params.get("frames", ""), params.get("threshold", ""), params.get("margin", ""),
                            f"{p['accuracy']:.6f}", f"{p['accuracy_drop']:.6f}", f"{p['mean_frames']:.3f}",
                            f"{p['frames_saved']:.6f}", f"{p['audio_frames_saved']:.6f}"])
    return [path, policies]


def plot_report(result: dict, path: str | Path, title: str = "") -> None:
    """Two panels: accuracy vs frames seen, and each policy's accuracy vs mean frames (Pareto front)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("--plot needs matplotlib: pip install matplotlib") from e
    N, full = result["frames"], result["full_accuracy"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    rows = [r for r in result["accuracy_vs_frames"] if r["accuracy"] is not None]
    a.plot([r["frames_seen"] for r in rows], [r["accuracy"] * 100 for r in rows], color="C0")
    a.axhline(full * 100, color="gray", ls=":", lw=1, label=f"full sequence {full * 100:.2f}%")
    a.axvline(result["mean_audio_frames"], color="C2", ls="--", lw=1,
              label=f"mean real audio ({result['mean_audio_frames']:.0f} frames)")
    a.set_xlabel(f"input frames seen ({result['frame_ms']:g} ms each; decisions wait {result['lookahead']} frames of "
                 "look-ahead)")
    a.set_ylabel("accuracy (%)")
    a.set_title("accuracy of the streaming output vs frames seen")
    a.set_xlim(0, N)
    a.legend(loc="lower right", fontsize=8)
    a.grid(alpha=0.3)
    for i, (name, entry) in enumerate(result["policies"].items()):
        front = entry["front"]
        b.plot([p["mean_frames"] for p in front], [p["accuracy"] * 100 for p in front], marker=".", ms=3,
               color=f"C{i}", label=name)
        if entry["best"]:
            b.plot([entry["best"]["mean_frames"]], [entry["best"]["accuracy"] * 100], marker="o", mfc="none",
                   color=f"C{i}", ms=8)
    b.axhline((full - result["max_drop"]) * 100, color="gray", ls=":", lw=1,
              label=f"full - {result['max_drop'] * 100:.2g}%")
    if result["policy"]:
        b.plot([result["mean_frames"]], [result["exit_accuracy"] * 100], marker="*", color="k", ms=14,
               ls="none", label=f"chosen: {result['policy']} ({result['frames_saved'] * 100:.1f}% saved)")
    b.set_xlabel("mean input frames consumed (look-ahead included)")
    b.set_ylabel("accuracy (%)")
    b.set_title("exit policies (Pareto front of each sweep)")
    lo = min([full * 100 - 5] + [r["accuracy"] * 100 for r in rows[-max(1, N // 3):]])
    b.set_ylim(max(lo, 0), min(100, full * 100 + 1.5))
    b.set_xlim(0, N)
    b.legend(loc="best", fontsize=8, framealpha=0.8)
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- `lmustream eval --early-exit` ----------------------------------------------------------------
def run_cli(args) -> int:
    """The ``--early-exit`` branch of ``lmustream eval`` (arguments as parsed by lmustream.cli)."""
    import json

    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model

    if not 0 <= args.max_drop < 1:
        raise ConfigError(f"--max-drop must be a fraction in [0, 1), got {args.max_drop}")
    from lmustream.data.sources import parse_label_map

    label_map = parse_label_map(args.label_map)
    artifact = load_model(resolve_model(args.model))
    opened = dict(kind=args.kind, task=args.task, pattern=args.pattern, label_map=label_map, cache_dir=args.cache_dir,
                  noise_dir=getattr(args, "noise_dir", None))
    progress = not args.json
    dataset = open_eval_split(artifact, args.data, args.split, **opened)
    outputs = dataset_prefix_outputs(artifact, dataset, progress=progress)
    tune = None
    if args.tune_split and args.tune_split != args.split:
        tune = dataset_prefix_outputs(artifact, open_eval_split(artifact, args.data, args.tune_split, **opened),
                                      progress=progress)
    result = early_exit_report(outputs, max_drop=args.max_drop, tune=tune)
    result.update(model=str(args.model), data=str(args.data), split=args.split,
                  tune_split=args.tune_split or args.split)
    if args.step_check > 0:
        n = min(args.step_check, len(dataset))
        clips = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(n)])
        result["step_check"] = step_check(artifact.model, clips)
    written = write_csv(result, args.csv) if args.csv else []
    if args.plot:
        plot_report(result, args.plot, title=f"{Path(str(args.model)).stem} on {args.split} ({result['n']} clips)")
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_report(result))
    if "step_check" in result:
        s = result["step_check"]
        print(f"\nstep form check on {s['clips']} clips: max |step - parallel| running logit "
              f"{s['max_abs_logit_difference']:.2e}, same argmax at {s['argmax_agreement'] * 100:.2f}% of outputs")
    for path in written:
        print(f"wrote {path}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0

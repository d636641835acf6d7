"""Early exit on every shipped model: frames saved at <= 0.5% accuracy drop, per exit policy.

    python benchmarks/early_exit.py [--models sc12-lmuformer,asc40-lmuformer] [--out DIR] [--max-drop 0.005]

For each model in models/ (or --models: names or files) and each evaluation set that exists for
it, prints the full-sequence accuracy, each policy's best setting (the one that consumes the
fewest frames on average at an accuracy drop <= --max-drop), and the chosen operating point.
Frames are input frames consumed, look-ahead included (a decision on the output for frame t has
waited for frame t + D); "saved" counts them against the model's input length N (as evaluation
uses, padding included, like the LMUFormer paper's 32.03%), "audio saved" against each clip's
real audio frames. The last columns are held out: each policy's setting is chosen on one half of
the clips (every other clip) and measured on the other half, both ways, and averaged; this is
what the choice would deliver on clips it was not tuned on.

Evaluation sets (paths relative to the repository; $LMUSTREAM_SHARED overrides ../shared):
  sc12-*   12-class Speech Commands: ../shared/data/speech_commands_v0.01_sample (every clip) and
           the synthetic corpus data/synth35 (its held-out test split) when present
  sc35-*   data/synth35, test split
  asc40-*  ../shared/data/arabic_speech_commands/train.csv, the speakers the model held out
  digits-* ../shared/data/fsdd/recordings, the speaker the model held out
With --out DIR, each set's accuracy-vs-frames CSV, policies CSV and plot are written there, as
`lmustream eval --early-exit --csv ... --plot ...` writes them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lmustream.errors import LmuStreamError  # noqa: E402
from lmustream.models.artifact import load_model  # noqa: E402
from lmustream.models.registry import resolve_model, shipped_models  # noqa: E402
from lmustream.stream import early_exit as ee  # noqa: E402
from lmustream.stream import early_exit_report as report  # noqa: E402

DIGITS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine".split())}


def shared() -> Path:
    return Path(os.environ.get("LMUSTREAM_SHARED", REPO.parent / "shared"))


def synth35() -> Path | None:
    for candidate in (REPO / "data" / "synth35", REPO.parent / "data" / "synth35"):
        if candidate.is_dir():
            return candidate
    return None


def evaluation_sets(name: str) -> list[dict]:
    """(data path, splits to try in order, open_dataset options) for a model name."""
    s, sets = shared() / "data", []
    if name.startswith("sc12"):
        sets.append(dict(data=s / "speech_commands_v0.01_sample", splits=["all"], task="12",
                         noise_dir=s / "speech_commands_noise"))
        if synth35():
            sets.append(dict(data=synth35(), splits=["test"], task="12"))
    elif name.startswith("sc35"):
        if synth35():
            sets.append(dict(data=synth35(), splits=["test"], task="35"))
    elif name.startswith("asc40"):
        sets.append(dict(data=s / "arabic_speech_commands" / "train.csv", splits=["test", "validation"],
                         kind="manifest"))
    elif name.startswith("digits"):
        sets.append(dict(data=s / "fsdd" / "recordings", splits=["test", "validation"], kind="pattern",
                         pattern="{label}_{speaker}_{index}.wav", label_map=DIGITS))
    return [d for d in sets if Path(d["data"]).exists()]


def open_first_split(artifact, spec: dict):
    options = {k: v for k, v in spec.items() if k in ("kind", "task", "pattern", "label_map")}
    if spec.get("noise_dir") and Path(spec["noise_dir"]).is_dir():
        options["noise_dir"] = str(spec["noise_dir"])
    errors = []
    for split in spec["splits"]:
        try:
            return split, report.open_eval_split(artifact, str(spec["data"]), split, **options)
        except LmuStreamError as e:
            errors.append(str(e))
    raise LmuStreamError("; ".join(errors))


def held_out(outputs: ee.PrefixOutputs, max_drop: float) -> dict:
    """Two-fold: each policy's setting chosen on every other clip, measured on the rest; the chosen
    operating point is the one whose tuning half promised the fewest frames."""
    n = outputs.targets.shape[0]
    halves = [torch.arange(n) % 2 == 0, torch.arange(n) % 2 == 1]
    saved, drop = [], []
    for tune, test in (halves, halves[::-1]):
        r = report.early_exit_report(outputs.subset(test), max_drop=max_drop, tune=outputs.subset(tune))
        saved.append(r["frames_saved"])
        drop.append(r["accuracy_drop"])
    return {"frames_saved": sum(saved) / 2, "accuracy_drop": sum(drop) / 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model names or files (default: every shipped model)")
    parser.add_argument("--max-drop", type=float, default=ee.DEFAULT_MAX_DROP)
    parser.add_argument("--out", help="folder for the CSVs and plots")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    names = args.models.split(",") if args.models else shipped_models()
    if not names:
        print("no shipped models in models/ (pass --models FILE,...)")
        return 1
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name in names:
        artifact = load_model(resolve_model(name))
        stem = Path(name).stem if name.endswith(".safetensors") else name
        sets = evaluation_sets(stem)
        if not sets:
            print(f"{stem}: no evaluation data found, skipped")
            continue
        for spec in sets:
            try:
                split, dataset = open_first_split(artifact, spec)
            except LmuStreamError as e:
                print(f"{stem} on {spec['data']}: cannot open ({e}), skipped")
                continue
            t0 = time.perf_counter()
            outputs = report.dataset_prefix_outputs(artifact, dataset, batch_size=args.batch_size, progress=True)
            result = report.early_exit_report(outputs, max_drop=args.max_drop)
            seconds = time.perf_counter() - t0
            label = f"{Path(spec['data']).name}:{split}"
            print(f"\n== {stem} on {label} ({result['n']} clips, {seconds:.0f} s) ==")
            print(report.format_report(result))
            if out:
                tag = f"{stem}_{Path(spec['data']).stem}_{split}"
                report.write_csv(result, out / f"{tag}.csv")
                report.plot_report(result, out / f"{tag}.png", title=f"{stem} on {label} ({result['n']} clips)")
            summary.append((stem, label, result, held_out(outputs, args.max_drop)))
    if not summary:
        return 1
    print(f"\nearly exit at <= {args.max_drop * 100:.2g}% accuracy drop (frames: look-ahead included; "
          f"held out: setting chosen on half the clips, measured on the other half)")
    head = (f"{'model':<22}{'data':<36}{'n':>6}{'full acc':>9}  {'chosen policy':<42}{'exit acc':>9}{'drop':>7}"
            f"{'frames':>8}{'saved':>7}{'audio':>7}{'held-out saved':>15}{'drop':>7}")
    print(head)
    print("-" * len(head))
    for stem, label, r, h in summary:
        print(f"{stem:<22}{label:<36}{r['n']:>6}{r['full_accuracy']:>9.4f}  {str(r['policy']):<42}"
              f"{r['exit_accuracy']:>9.4f}{r['accuracy_drop'] * 100:>6.2f}%{r['mean_frames']:>8.1f}"
              f"{r['frames_saved'] * 100:>6.1f}%{r['audio_frames_saved'] * 100:>6.1f}%"
              f"{h['frames_saved'] * 100:>14.1f}%{h['accuracy_drop'] * 100:>6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

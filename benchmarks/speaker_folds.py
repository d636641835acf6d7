"""Speaker-disjoint cross-validation on a small real Speech Commands-layout set.

A handful of real recordings is worth training on, but then it no longer measures the model. This
splits such a set into K folds of whole speakers (largest speakers first, each to the fold with the
fewest clips, so the folds are about the same size), writes for each fold the clips of every other
speaker as 12-class labelled folders (symlinks: the ten keywords and ``_unknown_``) to pack and add to
training, and the fold's own clips in the Speech Commands layout to score the fold's model on.

    python benchmarks/speaker_folds.py split DATA --out FOLDS [--folds 4]
    python benchmarks/speaker_folds.py pack FOLDS --config configs/sc12-lmuformer.yaml   # FOLDS/train_k.npz
    # train fold k with data.add_packs=[...,FOLDS/train_k.npz] into runs/fold_k, then
    python benchmarks/speaker_folds.py score FOLDS runs/fold_0/model.safetensors ... --noise-dir NOISE

``score`` takes one model per fold, in fold order, scores each on its fold's speakers (every clip,
plus ``_silence_`` clips cut from the recordings in NOISE, as ``lmustream eval --task 12`` does) and
prints the pooled accuracy, the keywords', ``_unknown_``'s and ``_silence_``'s, beside each fold's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmustream.data.clips import speaker_from_name
from lmustream.data.labels import SPEECH_COMMANDS_12

KEYWORDS = set(SPEECH_COMMANDS_12[:10])
AUDIO = {".wav", ".flac", ".ogg"}


def assign_folds(speaker_clips: dict[str, int], n_folds: int) -> dict[str, int]:
    """Speaker -> fold: largest speakers first, each to the fold holding the fewest clips so far."""
    sizes, fold_of = [0] * n_folds, {}
    for speaker in sorted(speaker_clips, key=lambda s: (-speaker_clips[s], s)):
        fold = min(range(n_folds), key=lambda k: (sizes[k], k))
        fold_of[speaker] = fold
        sizes[fold] += speaker_clips[speaker]
    return fold_of


def split(data: Path, out: Path, n_folds: int) -> None:
    clips = sorted(p for p in data.glob("*/*") if p.suffix.lower() in AUDIO and not p.parent.name.startswith("_"))
    if not clips:
        sys.exit(f"error: no clips in word folders under {data}")
    counts: dict[str, int] = {}
    for clip in clips:
        counts[speaker_from_name(clip)] = counts.get(speaker_from_name(clip), 0) + 1
    if len(counts) < n_folds:
        sys.exit(f"error: {len(counts)} speakers cannot make {n_folds} folds")
    if out.exists() and any(out.iterdir()):
        sys.exit(f"error: {out} is not empty")
    fold_of = assign_folds(counts, n_folds)
    for clip in clips:
        word, fold = clip.parent.name, fold_of[speaker_from_name(clip)]
        label = word if word in KEYWORDS else "_unknown_"
        # Clips of different words share names (speaker_nohash_N): the word keeps them apart under _unknown_.
        name = clip.name.replace("_nohash_", f"_nohash_{word}_", 1)
        links = [(out / "held" / str(fold) / word, clip.name)]
        links += [(out / "train" / str(k) / label, name) for k in range(n_folds) if k != fold]
        for folder, link in links:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / link).symlink_to(clip.resolve())
    sizes = [sum(counts[s] for s, f in fold_of.items() if f == k) for k in range(n_folds)]
    (out / "folds.json").write_text(json.dumps({"data": str(data.resolve()), "sizes": sizes, "speakers": fold_of},
                                               indent=1))
    print(f"{len(clips)} clips of {len(counts)} speakers in {n_folds} folds of {sizes} clips: {out}")


def n_folds_of(folds: Path) -> int:
    if not (folds / "folds.json").is_file():
        sys.exit(f"error: {folds} holds no folds.json: write the folds with `split` first")
    return len(json.loads((folds / "folds.json").read_text())["sizes"])


def pack(folds: Path, config: str) -> None:
    """Each fold's training clips as a feature pack of ``config``'s frontend (``lmustream data pack``)."""
    import subprocess

    for k in range(n_folds_of(folds)):
        out = folds / f"train_{k}.npz"
        command = [sys.executable, "-m", "lmustream", "data", "pack", "--config", config,
                   "--data", str(folds / "train" / str(k)), "--out", str(out), "data.kind=folders", "data.task=35",
                   "data.class_caps={}", "data.validation_fraction=0", "data.test_fraction=0"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: packing fold {k} failed:\n{done.stderr.strip()}")
        print(done.stdout.strip().splitlines()[-1])


def score(folds: Path, models: list[str], noise_dir: str) -> None:
    from lmustream.models.artifact import load_model
    from lmustream.train.evaluate import evaluate_artifact

    n_folds = n_folds_of(folds)
    if len(models) != n_folds:
        sys.exit(f"error: {folds} has {n_folds} folds; give one model per fold ({len(models)} given)")
    rows, total = [], {}
    for k, model in enumerate(models):
        result = evaluate_artifact(load_model(model), str(folds / "held" / str(k)), "all", task="12",
                                   noise_dir=noise_dir)
        counts = {}
        for label, c in result["per_class"].items():
            group = "keywords" if label in KEYWORDS else label
            right, n = counts.get(group, (0, 0))
            counts[group] = (right + round(c["accuracy"] * c["n"]), n + c["n"])
        counts["all"] = (sum(r for r, _ in counts.values()), sum(n for _, n in counts.values()))
        for group, (right, n) in counts.items():
            total[group] = (total.get(group, (0, 0))[0] + right, total.get(group, (0, 0))[1] + n)
        rows.append((f"fold {k}", counts))
    rows.append(("pooled", total))
    groups = [g for g in ("all", "keywords", "_unknown_", "_silence_") if g in total]
    print(f"{'':<8}" + "".join(f"{g:>20}" for g in groups))
    for name, counts in rows:
        cells = "".join(f"{f'{counts[g][0]}/{counts[g][1]} ({100 * counts[g][0] / max(counts[g][1], 1):.1f}%)':>20}"
                        if g in counts else f"{'-':>20}" for g in groups)
        print(f"{name:<8}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("split", help="write the folds")
    s.add_argument("data", type=Path, help="Speech Commands-layout folder (one folder per word)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--folds", type=int, default=4)
    k = verbs.add_parser("pack", help="each fold's training clips as a feature pack FOLDS/train_K.npz")
    k.add_argument("folds", type=Path)
    k.add_argument("--config", required=True, help="the recipe whose frontend and clip length the packs take")
    c = verbs.add_parser("score", help="score one model per fold on its fold's speakers")
    c.add_argument("folds", type=Path)
    c.add_argument("models", nargs="+")
    c.add_argument("--noise-dir", required=True, help="background-noise recordings to cut _silence_ clips from")
    args = parser.parse_args()
    if args.verb == "split":
        split(args.data, args.out, args.folds)
    elif args.verb == "pack":
        pack(args.folds, args.config)
    else:
        score(args.folds, args.models, args.noise_dir)


if __name__ == "__main__":
    main()

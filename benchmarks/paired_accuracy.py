"""Compare models on the same clips: accuracy of each, and whether their difference is more than chance.

    python benchmarks/paired_accuracy.py --data PACK [--split validation] MODEL_A MODEL_B [MODEL_C ...]

PACK is a feature pack (`lmustream data pack`) of the models' task, e.g. the pack a recipe ran with
its speakers held out; MODEL is a model file or the name of a shipped model. Two recipes whose
accuracies differ by a point on 1,200 clips may still not differ: what decides is how many clips
only one of the two gets right. For every pair the table gives those two counts and the exact
two-sided McNemar p-value (the binomial test of the discordant clips, which is what differs when
both models see the same clips); p < 0.05 is the usual bar.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys

import numpy as np
import torch

from lmustream.data.pack import is_pack, read_pack
from lmustream.errors import LmuStreamError
from lmustream.models.artifact import load_model
from lmustream.models.registry import resolve_model
from lmustream.train.evaluate import pack_batches

BATCH = 200


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: P(a split at least this uneven) of the discordant clips under a fair coin."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def correct_clips(model_path: str, pack, split: str, path: str = "the pack") -> np.ndarray:
    """Per clip of ``split``: True where the model's argmax is the clip's label (the clips as `lmustream eval` reads them)."""
    artifact = load_model(resolve_model(model_path))
    model = artifact.model.eval()
    right = []
    with torch.no_grad():
        for x, y in pack_batches(artifact, pack, path, split, BATCH):
            right.append((model(x).argmax(1) == y).numpy())
    return np.concatenate(right)


def compare(models: list[str], pack, split: str, path: str = "the pack") -> tuple[list[dict], list[dict]]:
    """Rows of the accuracy table and of the pairwise table."""
    right = {m: correct_clips(m, pack, split, path) for m in models}
    accuracy = [{"model": m, "accuracy": float(r.mean()), "right": int(r.sum()), "n": int(r.size)}
                for m, r in right.items()]
    pairs = []
    for a, b in itertools.combinations(models, 2):
        only_a, only_b = int((right[a] & ~right[b]).sum()), int((right[b] & ~right[a]).sum())
        pairs.append({"first": a, "second": b, "only_first": only_a, "only_second": only_b,
                      "p": mcnemar_p(only_a, only_b)})
    return accuracy, pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("models", nargs="+", help="two or more model files or shipped model names")
    parser.add_argument("--data", required=True, help="feature pack (lmustream data pack) holding the clips")
    parser.add_argument("--split", default="validation", help="split of the pack to score (default validation)")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("give at least two models to compare")
    if not is_pack(args.data):
        parser.error(f"{args.data} is not a feature pack; make one with lmustream data pack")
    pack = read_pack(args.data)
    if args.split not in pack.splits or not len(pack.splits[args.split][1]):
        parser.error(f"{args.data} has no clips in split {args.split!r} (splits: "
                     f"{', '.join(f'{k}={len(v[1])}' for k, v in pack.splits.items())})")
    try:
        accuracy, pairs = compare(args.models, pack, args.split, args.data)
    except LmuStreamError as e:  # a missing or mismatched model: named, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    width = max(len(m) for m in args.models)
    print(f"{'model':<{width}}  accuracy  right / n")
    for row in accuracy:
        print(f"{row['model']:<{width}}  {row['accuracy']:8.2%}  {row['right']} / {row['n']}")
    print()
    print(f"{'first':<{width}}  {'second':<{width}}  only first  only second  McNemar p")
    for row in pairs:
        print(f"{row['first']:<{width}}  {row['second']:<{width}}  {row['only_first']:10d}  "
              f"{row['only_second']:11d}  {row['p']:9.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

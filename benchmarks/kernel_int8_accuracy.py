"""Accuracy of the C++ kernel with int8 weights vs float32 weights on a model's validation data.

    python benchmarks/kernel_int8_accuracy.py --model sc12-lmuformer --data PATH [--split validation]
    python benchmarks/kernel_int8_accuracy.py --model M1 --model M2 ... --data PATH

For each clip of the split (the same clips and features as `lmustream eval`: the model's frontend,
clips padded or cropped to the model's training length, and the training recipe's speaker split
when the data is the one the model was trained on), the kernel runs the clip's frames as one
utterance (push_features, flush) and predicts the argmax of the running mean logits, which is
the parallel model's output. Prints accuracy of the PyTorch model, the float32 kernel and the
int8 kernel, the int8 - float32 difference (target: within 0.3 percentage points; judged both
ways, two-sided and as a loss only), how many predictions int8 changed, and the RMS difference
between the int8 and float32 clip logits (the running mean at the clip's end).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from tqdm import tqdm

from lmustream.models.artifact import load_model
from lmustream.models.registry import resolve_model
from lmustream.stream import Kernel


def load_split(artifact, data: str, split: str, cache_dir: str | None):
    from lmustream.data.datasets import open_dataset
    from lmustream.data.feature_dataset import FeatureDataset
    from lmustream.train.evaluate import _recipe_split

    task = "12" if "_unknown_" in artifact.labels else "35"
    split_args = _recipe_split(artifact, data)
    kind, pattern, label_map = "auto", None, None
    if split_args:
        kind, pattern = split_args.pop("kind"), split_args.pop("pattern")
        label_map = split_args.pop("label_map")
    index = open_dataset(data, kind=kind, task=task, pattern=pattern, label_map=label_map,
                         seed=split_args.pop("seed", 0), **split_args)
    clips = index.splits.get(split) or []
    if not clips:
        raise SystemExit(f"{data}: split {split!r} is empty")
    return FeatureDataset(clips, artifact.labels, artifact.frontend, frames=artifact.model.config.frames,
                          cache_dir=cache_dir)


def evaluate(model_name: str, data: str, split: str, limit: int | None, cache_dir: str | None) -> dict:
    path = resolve_model(model_name)
    artifact = load_model(path)
    dataset = load_split(artifact, data, split, cache_dir)
    kernels = {"float32": Kernel(path), "int8": Kernel(path, int8=True)}
    streams = {name: k.open() for name, k in kernels.items()}
    n = len(dataset) if limit is None else min(limit, len(dataset))
    correct = {"torch": 0, "float32": 0, "int8": 0}
    changed = 0
    squared_error, count = 0.0, 0
    for i in tqdm(range(n), desc=str(model_name), leave=False):
        x, y = dataset[i]
        x = np.asarray(x, dtype=np.float32)
        y = int(y)
        with torch.no_grad():
            correct["torch"] += int(artifact.model(torch.from_numpy(x)[None]).argmax(1)) == y
        preds = {}
        for name, stream in streams.items():
            stream.reset()
            stream.push_features(x)
            stream.flush()
            preds[name] = int(np.argmax(stream.running))
            correct[name] += preds[name] == y
        changed += preds["int8"] != preds["float32"]
        error = np.asarray(streams["int8"].running, np.float64) - np.asarray(streams["float32"].running, np.float64)
        squared_error += float(np.sum(error * error))
        count += error.size
    return {"model": str(model_name), "n": n, **{k: v / n for k, v in correct.items()}, "changed": changed,
            "rms": math.sqrt(squared_error / max(count, 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="model file or shipped name (repeatable)")
    parser.add_argument("--data", required=True, help="the dataset the model was trained on")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, help="first N clips only")
    parser.add_argument("--cache-dir", help="feature cache (default: lmustream's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'model':<28}{'clips':>7}{'PyTorch':>9}{'float32':>9}{'int8':>9}{'int8 - f32':>12}{'changed':>9}"
          f"{'logit RMS':>11}  target")
    for model in args.model:
        r = evaluate(model, args.data, args.split, args.limit, args.cache_dir)
        delta = 100 * (r["int8"] - r["float32"])
        print(f"{r['model']:<28}{r['n']:>7}{100 * r['torch']:>8.2f}%{100 * r['float32']:>8.2f}%"
              f"{100 * r['int8']:>8.2f}%{delta:>+11.2f}pt{r['changed']:>9}{r['rms']:>11.4f}  "
              f"{'ok' if abs(delta) <= 0.3 else 'MISSED'} (|int8 - f32| <= 0.3pt); "
              f"{'ok' if delta >= -0.3 else 'MISSED'} (int8 loses <= 0.3pt)")


if __name__ == "__main__":
    main()

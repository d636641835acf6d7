"""The C++ kernel vs the PyTorch step form over long streams (>= 100,000 frames).

    python benchmarks/kernel_equivalence.py [--streams 10] [--seconds 100] [--model M] [--spiking-model M]

Paper-size LMUFormer and spiking LMUFormer (random weights with non-trivial batch norms unless
models are given). Each of --streams streams gets --seconds of audio made of utterances of
1-6 s; every stream is pushed into the kernel as audio in random chunks of 1 sample to 1 s, with
flush() after some utterances and none after others. The reference is the step form (float32
and float64) on StreamingFbank features of the same utterances.
Prints the max |difference| of per-frame and running logits (non-spiking) and the spike-train
flip rate of every LIF layer (spiking), in total over all frames, against the step form and
against the parallel (training) model in float32.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm

from lmustream.audio.features import StreamingFbank
from lmustream.models.artifact import load_model
from lmustream.models.registry import resolve_model
from lmustream.stream import Kernel
from lmustream.stream.step import StepLMUFormer


def utterance_plan(rng, seconds: float) -> list[tuple[np.ndarray, bool]]:
    """Utterances of 1-6 s (gliding tones, noise, silence), each with whether flush() ends it."""
    plan, total = [], 0.0
    while total < seconds:
        d = float(rng.uniform(1.0, 6.0))
        t = np.arange(int(d * 16000)) / 16000
        f0 = rng.uniform(100, 900)
        x = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * (f0 + rng.uniform(50, 400) * np.sin(rng.uniform(0.2, 3) * t)) * t)
        x = x + rng.uniform(0.001, 0.05) * rng.standard_normal(t.size)
        if rng.random() < 0.2:
            x[: t.size // 3] = 0.0  # a stretch of digital silence
        plan.append((x.astype(np.float32), bool(rng.random() < 0.6)))
        total += d
    return plan


def segments(plan):
    """Group utterances into the pieces the step form runs between flushes."""
    out, current = [], []
    for wave, flush in plan:
        current.append(wave)
        if flush:
            out.append(np.concatenate(current))
            current = []
    if current:
        out.append(np.concatenate(current))
    return out


def run_kernel(path: str, plans, rng, record_spikes: bool):
    kernel = Kernel(path)
    outputs, spikes = [], []
    for plan in tqdm(plans, desc="kernel", leave=False):
        stream = kernel.open()
        stream.record_spikes(record_spikes)
        parts, runnings = [], []
        for wave, flush in plan:
            i = 0
            while i < wave.size:
                n = int(rng.integers(1, 16001)) if rng.random() < 0.5 else int(rng.integers(1, 400))
                parts.append(stream.push(wave[i:i + n]))
                i += n
            if flush:
                parts.append(stream.flush())
                runnings.append(stream.running.copy())
        if not plan[-1][1]:
            parts.append(stream.flush())
            runnings.append(stream.running.copy())
        outputs.append((np.concatenate(parts), runnings))
        spikes.append(stream.take_spikes() if record_spikes else None)
    return outputs, spikes


def run_reference(model, plans, dtype, record_spikes: bool):
    """Step form over every stream's segments (each segment then flush), stream by stream."""
    step = StepLMUFormer(model.to(dtype))
    results = []
    for plan in tqdm(plans, desc=f"step form {str(dtype)[6:]}", leave=False):
        frames, runnings, logs = [], [], {}
        for wave in segments(plan):
            feats = torch.from_numpy(StreamingFbank(normalized=True).push(wave)).to(dtype)[None]
            if record_spikes:
                with step.record_spikes() as log:
                    running, per_frame, _ = step.run(feats, flush=True)
                from lmustream.conformance import lif_outputs
                from lmustream.stream.verify import _parallel_lif_name, _step_lif_delay
                parallel = lif_outputs(model, feats)  # the parallel (training) model's spikes, same dtype
                for name, steps in log.items():
                    d = _step_lif_delay(step, name)
                    logs.setdefault(name, []).append(torch.stack(steps[d:d + feats.shape[1]], 0)[:, 0].numpy())
                    logs.setdefault("parallel:" + name, []).append(parallel[_parallel_lif_name(name)][0].T.numpy())
            else:
                running, per_frame, _ = step.run(feats, flush=True)
            frames.append(per_frame[0].double().numpy())
            runnings.append(running[0, -1].double().numpy())
        results.append((np.concatenate(frames), runnings,
                        {k: np.concatenate(v).astype(np.uint8) for k, v in logs.items()} if record_spikes else None))
    model.float()
    return results


def compare(name: str, path: str, args) -> None:
    model = load_model(path).model
    spiking = model.config.spiking
    rng = np.random.default_rng(args.seed)
    plans = [utterance_plan(rng, args.seconds) for _ in range(args.streams)]
    start = time.time()
    kernel_out, kernel_spikes = run_kernel(path, plans, rng, spiking)
    frames = sum(len(o[0]) for o in kernel_out)
    print(f"\n{name}: {args.streams} streams, {frames:,} frames ({frames / 100 / 60:.1f} min of audio), "
          f"{sum(len(p) for p in plans)} utterances; kernel {time.time() - start:.0f} s")
    for dtype in (torch.float32, torch.float64) if not spiking else (torch.float32,):
        start = time.time()
        ref = run_reference(model, plans, dtype, spiking)
        per_frame = max(float(np.abs(k[0] - r[0]).max()) for k, r in zip(kernel_out, ref))
        running = max(float(np.abs(np.array(k[1]) - np.array(r[1])).max()) for k, r in zip(kernel_out, ref))
        scale = max(float(np.abs(r[0]).max()) for r in ref)
        line = (f"  vs step form {str(dtype)[6:]:<8} per-frame max |diff| {per_frame:.2e}   running (at each flush) "
                f"{running:.2e}   (max |logit| {scale:.2f}; step form {time.time() - start:.0f} s)")
        if spiking:
            flips = compared = 0
            per_layer = {}
            for against in ("step form", "parallel model"):
                flips = compared = 0
                per_layer = {}
                for ks, r in zip(kernel_spikes, ref):
                    for layer, want in r[2].items():
                        is_parallel = layer.startswith("parallel:")
                        if is_parallel != (against == "parallel model"):
                            continue
                        name = layer.split(":", 1)[-1]
                        diff = int((ks[name] != want).sum())
                        flips += diff
                        compared += want.size
                        per_layer[name] = per_layer.get(name, 0) + diff
                line += (f"\n  spikes differing from the {str(dtype)[6:]} {against}: {flips} of {compared:,} "
                         f"(rate {flips / compared:.2e}; target <= 1e-5)")
                if flips:
                    line += "  by layer: " + ", ".join(f"{k} {v}" for k, v in per_layer.items() if v)
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=100.0, help="audio per stream (100 frames per second)")
    parser.add_argument("--model", help="non-spiking model (default: random paper-size LMUFormer)")
    parser.add_argument("--spiking-model", help="spiking model (default: random paper-size spiking LMUFormer)")
    parser.add_argument("--only", choices=("plain", "spiking"), help="run one of the two")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kernel_speed import paper_model  # the same random paper-size models as the speed table

    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "spiking":
            compare("LMUFormer", str(resolve_model(args.model)) if args.model else paper_model("lmuformer", tmp), args)
        if args.only != "plain":
            compare("spiking LMUFormer", str(resolve_model(args.spiking_model)) if args.spiking_model
                    else paper_model("slmuformer", tmp), args)


if __name__ == "__main__":
    main()

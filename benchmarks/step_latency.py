"""Step form: MACs per frame per layer, and per-frame latency of PyTorch vs onnxruntime.

    python benchmarks/step_latency.py [--frames 2000] [--batch 64]

Prints, for the paper-size LMUFormer and spiking LMUFormer: the per-layer MAC table of the step
form (batch norms folded), then per-frame latency at batch 1 on one thread (PyTorch step form,
onnxruntime step graph) and throughput at a larger batch. Both engines run the same stream in the
same process, one after the other, so their ratio is meaningful even on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import types

import numpy as np
import torch

from lmustream.models import LMUFormer, get_config, macs_per_frame
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.onnx_export import export_onnx
from lmustream.stream.step import StepLMUFormer


def mac_table(name: str) -> None:
    table = macs_per_frame(get_config(name))
    total = sum(table.values())
    print(f"\nMACs per frame, {name} (step form)")
    print(f"  {'layer':<26}{'MACs':>12}{'share':>8}")
    for layer, macs in table.items():
        print(f"  {layer:<26}{macs:>12,}{macs / total:>8.1%}")
    print(f"  {'total':<26}{total:>12,}")


def time_torch(step: StepLMUFormer, x: torch.Tensor) -> float:
    state = step.initial_state(x.shape[0])
    with torch.no_grad():
        for i in range(20):  # warm-up
            _, state = step.step(x[:, i], state)
        start = time.perf_counter()
        for i in range(x.shape[1]):
            _, state = step.step(x[:, i], state)
    return (time.perf_counter() - start) / x.shape[1]


def time_onnx(path: str, x: np.ndarray) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    import json
    meta = json.loads(session.get_modelmeta().custom_metadata_map["lmustream"])
    B = x.shape[0]
    state = {f"state.{s['name']}": np.zeros([B, *s["shape"]], dtype=s["dtype"]) for s in meta["state"]}
    out_names = [o.name for o in session.get_outputs()]
    pad = np.zeros((B, 1), dtype=bool)

    def run(i, state):
        values = session.run(out_names, {"features": x[:, i:i + 1], "padding": pad, **state})
        return {f"state.{n[5:]}": v for n, v in zip(out_names, values) if n.startswith("next.")}

    for i in range(20):
        state = run(i, state)
    start = time.perf_counter()
    for i in range(x.shape[1]):
        state = run(i, state)
    return (time.perf_counter() - start) / x.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="frames timed per measurement")
    parser.add_argument("--batch", type=int, default=64, help="streams for the throughput rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; {os.cpu_count()} CPUs visible")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lmuformer", "slmuformer"):
            mac_table(name)
            model = randomize_batchnorm(LMUFormer(get_config(name)), 0).eval()
            step = StepLMUFormer(model)
            path = os.path.join(tmp, f"{name}.onnx")
            export_onnx(step, path, [str(i) for i in range(35)], types.SimpleNamespace(to_dict=dict))
            for batch in (1, args.batch):
                x = torch.randn(batch, args.frames + 20, 128)
                t_torch = time_torch(step, x)
                t_onnx = time_onnx(path, x.numpy())
                rows.append((name, batch, t_torch, t_onnx))
    print(f"\n{'model':<12}{'batch':>6}{'torch us/frame':>16}{'ORT us/frame':>14}{'ORT speed-up':>14}"
          f"{'torch frames/s':>16}{'ORT frames/s':>14}")
    for name, batch, t_torch, t_onnx in rows:
        print(f"{name:<12}{batch:>6}{t_torch * 1e6:>16.1f}{t_onnx * 1e6:>14.1f}{t_torch / t_onnx:>14.2f}"
              f"{batch / t_torch:>16,.0f}{batch / t_onnx:>14,.0f}")
    print("\n(us/frame = wall time of one step call for the whole batch; frames/s counts every stream's frames)")


if __name__ == "__main__":
    main()

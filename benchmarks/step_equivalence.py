"""Step form vs parallel model, and ONNX graph vs step form, over long streams: a table of errors.

    python benchmarks/step_equivalence.py [--frames 10000] [--conformance DIR]

Models: the LMUFormer authors' golden checkpoints when --conformance (or ../shared/conformance)
is present, else paper-size models with random weights and batch-norm statistics. For each model:
  - one continuous stream of N frames (no reset), step form (then flush) vs parallel forward;
  - N frames as utterances of 125 frames, flushed and reset between them, vs parallel per utterance;
  - spiking models: spikes compared in every LIF layer (flip rate), float32 and float64;
  - the ONNX step graph in onnxruntime vs the PyTorch step form over N frames, batch 1 and 8.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from lmustream.audio.features import FbankConfig
from lmustream.models import LMUFormer, get_config, load_reference_checkpoint
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.onnx_export import export_onnx
from lmustream.stream.step import StepLMUFormer
from lmustream.stream.verify import compare_stream, compare_utterances


def models(conformance: Path | None):
    for variant, name in (("lmuformer", "lmuformer"), ("spiking_lmuformer", "slmuformer")):
        if conformance is not None:
            yield f"{variant} (authors' golden weights)", load_reference_checkpoint(
                conformance / "lmuformer" / f"{variant}_state_dict.pt", variant)
        else:
            torch.manual_seed(0)
            yield f"{name} (random weights)", randomize_batchnorm(LMUFormer(get_config(name)), 0).eval()


def onnx_vs_step(step: StepLMUFormer, frames: int, batch: int) -> tuple[float, int, int]:
    """(max |per-frame logit| difference, spikes differing, spikes compared) of ONNX vs the step form."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.onnx_stream import OnnxStream
    from lmustream.stream.onnx_export import spike_vector

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/m.onnx"
        export_onnx(step, path, [str(i) for i in range(step.config.n_classes)], FbankConfig(), chunk=10,
                    spike_output=True)
        stream = OnnxStream(path, batch=batch)
        x = torch.randn(batch, frames, step.config.n_mels, generator=torch.Generator().manual_seed(7))
        state = step.initial_state(batch)
        err, flips, compared = 0.0, 0, 0
        for start in range(0, frames, 10):
            with step.record_spikes() as log:
                ours, state = step.step(x[:, start:start + 10], state)
            _, per_frame, _ = stream.push_features(x[:, start:start + 10].numpy())
            err = max(err, float(np.abs(per_frame - ours.per_frame.numpy()).max()))
            if step.config.spiking:
                mine = torch.stack([spike_vector(log, k) for k in range(10)], 1).numpy()
                flips += int((stream.last_outputs["spikes"] != mine).sum())
                compared += mine.size
    return err, flips, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--conformance", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                        / "conformance")
    args = parser.parse_args()
    conformance = args.conformance if (args.conformance / "lmuformer").is_dir() else None
    N = args.frames
    g = torch.Generator().manual_seed(1)
    rows = []
    print(f"{'model':<44}{'dtype':<9}{'comparison':<26}{'running max':>13}{'per-frame max':>15}  spikes differing",
          flush=True)

    def report(row):
        name, dtype, what, run_err, frame_err, spikes = row
        run_txt = "-" if np.isnan(run_err) else f"{run_err:.2e}"
        print(f"{name:<44}{dtype:<9}{what:<26}{run_txt:>13}{frame_err:>15.2e}  {spikes}", flush=True)
        rows.append(row)

    for name, model in models(conformance):
        for dtype in (torch.float32, torch.float64):
            m = model.to(dtype)
            step = StepLMUFormer(m)
            x = torch.randn(1, N, 128, generator=g, dtype=dtype)
            r = compare_stream(m, step, x)
            report((name, str(dtype)[6:], f"stream {N}", r.max_abs_running, r.max_abs_per_frame,
                    f"{r.spike_flips}/{r.spikes_compared}" if r.spikes_compared else "-"))
            u = compare_utterances(m, step, torch.randn(N // 125, 125, 128, generator=g, dtype=dtype))
            report((name, str(dtype)[6:], f"{N // 125} utt x 125, reset", u.max_abs_running,
                    u.max_abs_per_frame, f"{u.spike_flips}/{u.spikes_compared}" if u.spikes_compared else "-"))
        model.float()
        step = StepLMUFormer(model)
        for batch in (1, 8):
            err, flips, compared = onnx_vs_step(step, N, batch)
            report((name, "float32", f"ONNX vs step, batch {batch}", float("nan"), err,
                    f"{flips}/{compared}" if compared else "-"))


if __name__ == "__main__":
    main()

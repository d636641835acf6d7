"""Speed of the C++ streaming kernel against its floor, onnxruntime and the PyTorch step form.

    python benchmarks/kernel_speed.py [--model NAME_OR_PATH | --random-weights] [--audio FILE | --test-signal]
                                      [--frames 3000] [--quick]

One run, this machine, batch 1, one thread, the paper-size LMUFormer (dim 256, 1 block): by
default the shipped sc12-lmuformer (trained, that size) streaming the speech of
examples/keywords.flac (repeated), as the kernel runs all day. With int8 weights a product whose
input codes are mostly zero (what a trained model's ReLUs and GELUs give on speech) reads only
the nonzero inputs' weights, so the int8 time depends on the model and the audio:
--random-weights (random weights with non-trivial batch norms: about half of each input nonzero)
and --test-signal (a synthetic chirp in noise) measure the other cases. The spiking rows use a
random paper-size spiking LMUFormer unless --spiking-model names one. Prints:

  1. the floor per frame = max(MACs per frame / the single-core multiply-add rate measured by a
     tight loop of independent FMA chains (VNNI dot products for int8), bytes of weights read
     per frame / the single-core read bandwidth measured on a buffer of that size, read front to
     back as one stream: the best rate a core gets), and which term binds;
  2. the kernel's time per frame, model only (features in, stepped strictly frame by frame:
     frame_lanes=1, every weight read once per frame, as the floor assumes; and with the
     frames of a push stepped together, the default) and frontend + model (audio in, pushed in
     10 ms, 20 ms, 100 ms and 1 s blocks from Python, and in 10 and 20 ms blocks from C++: the
     native test program's `time` mode), float32 and int8 weights; onnxruntime (float32, the
     exported step graph, 1 thread) and the PyTorch step form on the same frames; the ratios
     the targets are stated in and the real-time factor per push size;
  3. spiking model: add-only vs dense path at equal size, and the spike rates per LIF layer;
  4. streams per core sustained in real time (push_many, 1 s of audio per stream per call);
  5. peak memory (max RSS) of a process that loads the kernel and runs one stream, without torch.

Timings take the best of several repeats (this machine is shared: medians wander).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmustream import _kernel
from lmustream.audio.features import StreamingFbank
from lmustream.models import LMUFormer, get_config
from lmustream.models.artifact import ModelArtifact, load_model, save_model
from lmustream.models.registry import resolve_model
from lmustream.selftest import randomize_batchnorm
from lmustream.stream import Kernel
from lmustream.stream.onnx_export import export_onnx
from lmustream.stream.step import StepLMUFormer

FRAME_SECONDS = 0.010
EXAMPLE_RECORDING = Path(__file__).resolve().parents[1] / "examples" / "keywords.flac"


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def test_audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (300 + 200 * np.sin(0.5 * t)) * t) + 0.05 * rng.standard_normal(t.size)
            ).astype(np.float32)


def recording(path: str, seconds: float) -> np.ndarray:
    """A recording at 16 kHz, repeated to ``seconds`` (a trained model's activations on real speech
    decide how much of each int8 product the sparse path skips)."""
    from lmustream.audio.io import load_audio
    wave = load_audio(path)
    return np.tile(wave, int(np.ceil(seconds * 16000 / len(wave))))[:int(seconds * 16000)].astype(np.float32)


def paper_model(name: str, directory: str) -> str:
    model = randomize_batchnorm(LMUFormer(get_config(name)), 0).eval()
    if get_config(name).spiking:  # random init leaves most LIF layers silent: make them fire
        g = torch.Generator().manual_seed(1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.data.copy_(1.0 + 1.5 * torch.rand(m.num_features, generator=g))
                m.bias.data.copy_(0.2 + 0.4 * torch.randn(m.num_features, generator=g))
    path = os.path.join(directory, f"{name}.safetensors")
    save_model(path, ModelArtifact(model, [f"c{i}" for i in range(model.config.n_classes)]))
    return path


def time_model(kernel: Kernel, feats: np.ndarray, repeats: int) -> float:
    """Per-frame time of the model alone: all features in one push (frame_lanes decides whether
    its frames step one at a time or together)."""
    stream = kernel.open()
    stream.push_features(feats[:50])

    def run():
        stream.reset()
        return len(stream.push_features(feats)) + kernel.lookahead

    return best_of(run, repeats)


def time_audio(kernel: Kernel, wave: np.ndarray, repeats: int) -> dict[str, float]:
    """Per-frame time of frontend + model, audio pushed in 10 ms, 20 ms, 100 ms and 1 s blocks."""
    stream = kernel.open()

    def chunks(size):
        def run():
            stream.reset()
            n = 0
            for i in range(0, wave.size, size):
                n += len(stream.push(wave[i:i + size]))
            return n + kernel.lookahead
        return run

    return {name: best_of(chunks(size), repeats)
            for name, size in (("audio_10ms", 160), ("audio_20ms", 320), ("audio_100ms", 1600), ("audio_1s", 16000))}


def time_onnx(path: str, feats: np.ndarray, repeats: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["lmustream"])
    outputs = [o.name for o in session.get_outputs()]
    pad = np.zeros((1, 1), dtype=bool)
    x = feats[None]

    def run():
        state = {f"state.{s['name']}": np.zeros([1, *s["shape"]], dtype=s["dtype"]) for s in meta["state"]}
        for i in range(x.shape[1]):
            values = session.run(outputs, {"features": x[:, i:i + 1], "padding": pad, **state})
            state = {f"state.{n[5:]}": v for n, v in zip(outputs, values) if n.startswith("next.")}
        return x.shape[1]

    return best_of(run, repeats)


def time_torch(step: StepLMUFormer, feats: np.ndarray, repeats: int) -> float:
    x = torch.from_numpy(feats)[None]

    def run():
        state = step.initial_state(1)
        with torch.no_grad():
            for i in range(x.shape[1]):
                _, state = step.step(x[:, i], state)
        return x.shape[1]

    return best_of(run, repeats)


def native_pushes(path: str, push_ms=(10, 20), rounds: int = 5) -> tuple[dict[str, float], float] | str:
    """Frontend + model per 10 ms of audio for a C++ caller (no Python in the loop): the native
    test program's `time` mode, built -O3 like the extension; returns seconds per 10 ms by push
    size and the frontend's own seconds per 10 ms, or why it could not run."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.path.join(repo, "build", "native", "timing")  # its own folder: -O3, as the extension
    binary = os.path.join(build, "kernel_test")
    made = subprocess.run(["make", "-s", "-C", os.path.join(repo, "csrc", "tests"), f"BUILD={build}", "OPT=-O3",
                           binary], capture_output=True, text=True)
    if made.returncode != 0:
        return "native build failed: " + (made.stderr or made.stdout).strip()[-300:]
    out, frontend = {}, 0.0
    for ms in push_ms:
        done = subprocess.run([binary, "time", path, "int8", str(ms), str(rounds)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"kernel_test time failed: {done.stderr.strip()[-300:]}"
        # "...: 35.2 us per 10 ms of audio (frontend 3.9 us), real-time factor 0.0035"
        out[f"{ms} ms"] = float(done.stdout.split(": ")[1].split(" us")[0]) * 1e-6
        frontend = float(done.stdout.split("(frontend ")[1].split(" us")[0]) * 1e-6
    return out, frontend


def floor(kernel: Kernel, int8: bool) -> dict:
    simd = kernel.simd
    macs, nbytes = kernel.macs_per_frame, kernel.weight_bytes
    rate = _kernel.microbench(simd, "dot_i8" if int8 else "fma")
    bandwidth = _kernel.microbench(simd, "read", float(nbytes))
    compute, memory = macs / rate, nbytes / bandwidth
    return {"macs": macs, "bytes": nbytes, "rate": rate, "bandwidth": bandwidth, "compute": compute,
            "memory": memory, "floor": max(compute, memory), "binds": "memory" if memory >= compute else "compute"}


def streams_per_core(kernel: Kernel, wave: np.ndarray, counts=(1, 8, 32, 64)) -> list[tuple[int, float]]:
    rows = []
    second = wave[:16000]
    for count in counts:
        streams = [kernel.open() for _ in range(count)]
        kernel.push_many(streams, [second] * count)  # warm-up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            kernel.push_many(streams, [second] * count)
            best = min(best, time.perf_counter() - start)
        rows.append((count, count * 1.0 / best))  # seconds of audio per second of compute
    return rows


# VmHWM (peak RSS of this process image) rather than ru_maxrss, which a child inherits from its
# parent on Linux and so would report this (torch-laden) benchmark's own peak.
PEAK_MEMORY_SCRIPT = r"""
import sys, numpy as np
from lmustream.stream import Kernel
k = Kernel(sys.argv[1], int8=sys.argv[2] == "1")
s = k.open()
x = (0.1 * np.sin(np.arange(160000) * 0.05)).astype(np.float32)
for i in range(0, x.size, 1600):
    s.push(x[i:i + 1600])
s.flush()
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(hwm, "torch" in sys.modules)
"""

BASELINE_SCRIPT = r"""
import sys, numpy as np
import lmustream.stream
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(hwm, "torch" in sys.modules)
"""


def peak_memory(path: str, int8: bool) -> tuple[float, float, bool]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda code, *a: subprocess.run([sys.executable, "-c", code, *a], capture_output=True, text=True,  # noqa
                                          env=env, check=True).stdout.split()
    peak, torch_loaded = run(PEAK_MEMORY_SCRIPT, path, "1" if int8 else "0")
    base, _ = run(BASELINE_SCRIPT)
    return int(peak) / 1024, int(base) / 1024, torch_loaded == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sc12-lmuformer",
                        help="a model file or shipped name (default: sc12-lmuformer, paper size, trained)")
    parser.add_argument("--random-weights", action="store_true",
                        help="a paper-size LMUFormer with random weights instead of --model")
    parser.add_argument("--spiking-model", help="a spiking model (default: random paper-size spiking LMUFormer)")
    parser.add_argument("--frames", type=int, default=3000, help="frames per kernel timing")
    parser.add_argument("--reference-frames", type=int, default=500, help="frames per PyTorch / ORT timing")
    parser.add_argument("--audio", default=str(EXAMPLE_RECORDING),
                        help="the recording to stream, repeated (default: examples/keywords.flac)")
    parser.add_argument("--test-signal", action="store_true",
                        help="a synthetic chirp in noise instead of --audio")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 2 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        path = paper_model("lmuformer", tmp) if args.random_weights else str(resolve_model(args.model))
        spath = str(resolve_model(args.spiking_model)) if args.spiking_model else paper_model("slmuformer", tmp)
        seconds = args.frames * FRAME_SECONDS + 0.015
        wave = test_audio(seconds) if args.test_signal else recording(args.audio, seconds)
        feats = StreamingFbank(normalized=True).push(wave)
        f32, i8 = Kernel(path), Kernel(path, int8=True)
        print(f"machine: {os.cpu_count()} CPUs, SIMD path {f32.simd} (this CPU runs: {_kernel.simd_levels()}); "
              f"batch 1, one thread; model {path} (dim {f32.config['dim']}, {f32.config['depth']} block); "
              f"audio: {'synthetic test signal' if args.test_signal else args.audio}")

        # 1. floors
        floors = {"float32": floor(f32, False), "int8": floor(i8, True)}
        print("\n1. Floor per frame")
        print(f"  {'weights':<9}{'MACs/frame':>12}{'rate':>16}{'compute':>10}{'bytes/frame':>13}{'read BW':>11}"
              f"{'memory':>10}{'floor':>10}  binds")
        for name, f in floors.items():
            unit = "int8 MAC/s" if name == "int8" else "FMA/s"
            print(f"  {name:<9}{f['macs']:>12,}{f['rate'] / 1e9:>9.1f} G{unit:<6}{f['compute'] * 1e6:>8.1f}us"
                  f"{f['bytes'] / 1e6:>11.2f}MB{f['bandwidth'] / 1e9:>8.1f}GB/s{f['memory'] * 1e6:>8.1f}us"
                  f"{f['floor'] * 1e6:>8.1f}us  {f['binds']}")

        # 2. kernel vs references
        t = {name: {"model": time_model(Kernel(path, int8=k.int8, frame_lanes=1), feats, repeats),
                    "model_block": time_model(k, feats, repeats), **time_audio(k, wave, repeats)}
             for name, k in (("float32", f32), ("int8", i8))}
        ref_feats = feats[:args.reference_frames]
        model = load_model(path).model
        step = StepLMUFormer(model)
        onnx_path = os.path.join(tmp, "step.onnx")
        export_onnx(step, onnx_path, [str(i) for i in range(model.config.n_classes)],
                    load_model(path).frontend)
        t_onnx = time_onnx(onnx_path, ref_feats, max(2, repeats // 2))
        t_torch = time_torch(step, ref_feats, max(2, repeats // 2))
        print("\n2. Time per frame (us), batch 1, one thread")
        print(f"  {'engine':<26}{'model, frame by frame':>22}{'x floor':>9}{'vs ORT':>8}{'vs torch':>10}"
              f"{'model, frames together':>24}")
        for name in ("float32", "int8"):
            k = t[name]
            print(f"  {'kernel ' + name + ' weights':<26}{k['model'] * 1e6:>22.1f}{k['model'] / floors[name]['floor']:>9.2f}"
                  f"{t_onnx / k['model']:>7.1f}x{t_torch / k['model']:>9.1f}x{k['model_block'] * 1e6:>24.1f}")
        if i8.sparse_inputs:  # the same weights, every int8 product dense: what skipping zero codes saves
            dense = time_model(Kernel(path, int8=True, frame_lanes=1, sparse_inputs=False), feats, repeats)
            print(f"  {'kernel int8, no sparse':<26}{dense * 1e6:>22.1f}{dense / floors['int8']['floor']:>9.2f}"
                  f"{t_onnx / dense:>7.1f}x{t_torch / dense:>9.1f}x")
        print(f"  {'onnxruntime float32 (step graph)':<34}{t_onnx * 1e6:>14.1f}")
        print(f"  {'PyTorch step form float32':<34}{t_torch * 1e6:>14.1f}")
        print("  (frame by frame: frame_lanes=1, every weight read once per frame, as the floor assumes;\n"
              "   x floor, vs ORT, vs torch: against that time; frames together: the default, up to 8\n"
              "   frames of a push stepped as one batch, the same output bits; int8 products whose input\n"
              "   codes are mostly zero read only the nonzero inputs' weights (AVX-512; 'no sparse': all dense,\n"
              "   the same bits))")
        print("\n   Frontend + model per frame (us) and real-time factor, audio pushed in blocks of")
        print(f"  {'engine':<26}{'10 ms':>16}{'20 ms':>16}{'100 ms':>16}{'1 s':>16}")
        for name in ("float32", "int8"):
            k = t[name]
            cells = "".join(f"{k[key] * 1e6:>7.1f} ({k[key] / FRAME_SECONDS:.4f})"
                            for key in ("audio_10ms", "audio_20ms", "audio_100ms", "audio_1s"))
            print(f"  {'kernel ' + name + ' weights':<26}{cells}")
        native = native_pushes(path)
        if isinstance(native, str):
            print(f"  C++ caller (no Python in the loop): skipped ({native})")
        else:
            per_push, frontend = native
            print("  C++ caller (no Python in the loop), int8: " + ", ".join(
                f"{ms} pushes {sec * 1e6:.1f} us ({sec / FRAME_SECONDS:.4f})" for ms, sec in per_push.items())
                + f"; of which the frontend {frontend * 1e6:.1f} us")
        print(f"  targets: float32 <= 1.5x floor: {t['float32']['model'] / floors['float32']['floor']:.2f}x; "
              f"int8 <= 1.5x its floor: {t['int8']['model'] / floors['int8']['floor']:.2f}x; "
              f"float32 >= 1.5x ORT: {t_onnx / t['float32']['model']:.1f}x; "
              f"int8 >= 10x ORT: {t_onnx / t['int8']['model']:.1f}x; int8 >= 20x torch: "
              f"{t_torch / t['int8']['model']:.1f}x; int8 RTF <= 0.003: "
              + (f"{native[0]['10 ms'] / FRAME_SECONDS:.4f} (10 ms pushes from C++); from Python "
                 if not isinstance(native, str) else "") +
              f"{t['int8']['audio_10ms'] / FRAME_SECONDS:.4f} (10 ms pushes), "
              f"{t['int8']['audio_20ms'] / FRAME_SECONDS:.4f} (20 ms), "
              f"{t['int8']['audio_100ms'] / FRAME_SECONDS:.4f} (100 ms), {t['int8']['audio_1s'] / FRAME_SECONDS:.4f} (1 s)")

        # 3. spiking
        print("\n3. Spiking LMUFormer (paper size): add-only vs dense, us/frame (model only)")
        sfeats = feats[:min(len(feats), 1500)]
        rows = []
        for int8 in (False, True):
            timings = {}
            for path_kind in ("add-only", "dense"):
                k = Kernel(spath, int8=int8, spike_path=path_kind, frame_lanes=1)
                timings[path_kind] = time_model(k, sfeats, repeats)
            rows.append(("int8" if int8 else "float32", timings))
        for name, tm in rows:
            print(f"  {name:<9} add-only {tm['add-only'] * 1e6:8.1f}   dense {tm['dense'] * 1e6:8.1f}   "
                  f"add-only speed-up {tm['dense'] / tm['add-only']:.2f}x")
        s = Kernel(spath).open()
        s.push(wave[:len(sfeats) * 160])
        rates = s.spike_rates()
        print("  spike rates: " + ", ".join(f"{n} {r:.3f}" for n, r in rates.items()))

        # 4. streams per core
        print("\n4. Streams per core in real time (push_many, 1 s of audio per stream per call)")
        for name, k in (("float32", f32), ("int8", i8)):
            rows = streams_per_core(k, wave)
            print(f"  {name:<9}" + "   ".join(f"{n} streams: {r:,.0f} s audio/s" for n, r in rows)
                  + f"   -> {max(r for _, r in rows):,.0f} streams per core")

        # 5. memory
        print("\n5. Peak memory of a process running one stream (max RSS; no torch imported)")
        for name, int8 in (("float32", False), ("int8", True)):
            peak, base, torch_loaded = peak_memory(path, int8)
            print(f"  {name:<9} {peak:7.1f} MB  (Python + numpy + lmustream import alone: {base:.1f} MB; "
                  f"kernel weights {Kernel(path, int8=int8).weight_bytes / 1e6:.2f} MB; torch imported: {torch_loaded})")


if __name__ == "__main__":
    main()

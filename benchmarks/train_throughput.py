"""Training throughput (clips/s): the FFT-parallel LMUFormer vs the same model stepped frame by frame.

    python benchmarks/train_throughput.py [--device cuda] [--batch 128] [--rounds 7] [--compile] [--cuda-graphs]
                                          [--paths fft,memory,rnn] [--profile] [--no-amp] [--cpu-bf16]

For the paper-size LMUFormer and spiking LMUFormer (35 classes, 128 frames x 128 mel), times
forward + backward + Adam step on random batches (on CUDA as the trainer runs: bf16 autocast,
fused Adam, cuDNN's autotuned convolutions)
along three paths that compute the same function:

  fft       the training path: the Legendre memory by FFT over all frames at once, the spiking
            model's LIF neurons by one fused scan per layer (Triton on CUDA);
  memory    only eq. 1 (m_t = A m_{t-1} + B u_t) stepped frame by frame, everything else as in
            fft: the least sequential work any frame-by-frame training can do;
  rnn       the model trained as a recurrent network: the LMU cell (u_t = ReLU(W_u x_t), m_t,
            h_t = ReLU(W_h [m_t; x_t])) and every LIF neuron layer advanced one frame at a time
            with autograd through time, as the original LMU and spikingjelly's step mode train.
            Convolutions and batch norms have no recurrence and stay batched over frames.

and prints clips/s and the ratios. The paths are timed in rounds, each round one window of every
path back to back, and each ratio is the median of the rounds' ratios: the host's speed, which bounds
these small models on a GPU, drifts by tens of percent within a minute on a shared machine, and paths
timed one after the other (an earlier version of this script) saw different hosts.

``--profile`` adds the operations that take the fft step's host time and the CUDA kernels that take
its GPU time (torch.profiler), and whether the GPU waits on the host. ``--cuda-graphs`` replays each
path's step as one captured CUDA graph, so the host's per-kernel launch cost, which these small
models are bound by, drops out of every path. ``--compile`` runs every path through ``torch.compile``
(Inductor), which fuses element-wise work into fewer kernels; the warm-up steps, which compile, are
timed apart and printed. Measured on an H100, it helps the stepped paths (rnn 1.9x) but not the fft
path (0.89x: Inductor leaves the complex FFT arithmetic to eager kernels), so the trainer does not
compile.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from lmustream.models import LMUFormer, get_config
from lmustream.models import lmuformer as lmuformer_module
from lmustream.models.spiking import LIF
from lmustream.train.config import OptimConfig
from lmustream.train.precision import uses_bfloat16
from lmustream.train.trainer import make_optimizer, use_fast_cuda_kernels

SC_V2_TRAIN_CLIPS = 84_843


def lmu_cell_forward(self, x: torch.Tensor, memory_path: str = "fft") -> torch.Tensor:
    """LMUMixer.forward as a recurrent cell: one frame at a time (the LMU's RNN form)."""
    x_t = x.transpose(1, 2)  # (B, N, C)
    state = self.memory.initial_state(x.shape[0], x.device)
    hs = []
    for t in range(x_t.shape[1]):
        u_t = F.relu(self.W_u(x_t[:, t]))[:, 0]  # (B,)
        m_t, state = self.memory.step(u_t, state)  # (B, M)
        hs.append(F.relu(self.W_h(torch.cat([m_t, x_t[:, t]], dim=-1))))  # (B, C)
    h = torch.stack(hs, dim=-1)  # (B, C, N)
    return self.proj_bn(self.proj(h))


def lif_stepped_forward(self, x: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    """LIF.forward as a loop of LIF.step: autograd through every frame."""
    if v is None:
        v = self.initial_state(x[..., 0])
    spikes = []
    for t in range(x.shape[-1]):
        s, v = self.step(x[..., t], v)
        spikes.append(s)
    return torch.stack(spikes, dim=-1)


@contextmanager
def rnn_form():
    """Swap in the frame-by-frame forwards for the duration (the modules' weights are untouched)."""
    saved = lmuformer_module.LMUMixer.forward, LIF.forward
    lmuformer_module.LMUMixer.forward, LIF.forward = lmu_cell_forward, lif_stepped_forward
    try:
        yield
    finally:
        lmuformer_module.LMUMixer.forward, LIF.forward = saved


def in_rnn_form(step):
    """``step`` run with the frame-by-frame forwards swapped in (a captured CUDA graph needs no swap)."""
    def run():
        with rnn_form():
            step()
    return run


def max_difference(model, x: torch.Tensor) -> float:
    """Largest |logit| difference between the fft and the rnn form (eval mode, float32): same function?"""
    model.eval()
    with torch.no_grad():
        reference = model(x.float(), memory_path="fft")
        with rnn_form():
            stepped = model(x.float(), memory_path="recurrent")
    model.train()
    return float((reference - stepped).abs().max())


def make_step(model, x, y, memory_path: str, amp: bool, fused_adam: bool = True, cuda_graph: bool = False,
              compiled: bool = False):
    """One training step (forward, backward, Adam) on the fixed batch (x, y), as a callable.

    ``cuda_graph``: capture the whole step once in a CUDA graph and replay it, so the host no longer
    launches each kernel (what it costs is left out of the timing, for either path).
    """
    if cuda_graph:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused_adam, foreach=None if fused_adam else True,
                               capturable=True)
    elif not fused_adam:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)  # PyTorch's default (foreach) Adam
    else:
        opt = make_optimizer(model.parameters(), OptimConfig(lr=1e-4), x.device)
    # Autocast's weight cache must be off while capturing (its casts would be left out of the graph).
    ctx = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=not cuda_graph)) if amp else nullcontext
    if compiled:
        torch._dynamo.reset()  # each path compiles its own forward (the rnn form swaps the modules' methods)
        forward = torch.compile(model)
    else:
        forward = model

    def step():
        with ctx():
            logits = forward(x, memory_path=memory_path)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=not cuda_graph)
        loss.backward()
        opt.step()

    if not cuda_graph:
        return step
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):  # warm-up outside the graph: cuFFT plans, autotuning, Adam's state
        for _ in range(3):
            step()
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(step, device: torch.device, label: str | None = None) -> None:
    """Untimed steps first: cuFFT plans, Triton compilation, cuDNN's autotuning, the allocator;
    ``label``: print how long they took (with ``--compile``, the compilation)."""
    start = time.perf_counter()
    for _ in range(3):
        step()
    synchronize(device)
    if label:
        print(f"    {label}: warm-up (3 steps) {time.perf_counter() - start:.1f} s", flush=True)


def time_window(step, batch: int, steps: int, device: torch.device) -> float:
    """clips/s over ``steps`` consecutive steps."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def clips_per_second(step, batch: int, steps: int, device: torch.device, repeats: int = 1,
                     label: str | None = None) -> float:
    """Median over ``repeats`` windows of ``steps`` steps, after untimed warm-up steps."""
    warm_up(step, device, label)
    return statistics.median(time_window(step, batch, steps, device) for _ in range(repeats))


def interleaved_rates(steps: dict, batch: int, device: torch.device, rounds: int) -> dict[str, list[float]]:
    """clips/s of every path in each of ``rounds`` rounds; ``steps``: path -> (step, steps per window).

    Each round times one window of every path back to back (the order rotating from round to round),
    so a path's rate and the others' in the same round were measured under the same load of the host,
    whose speed bounds these small models and drifts by tens of percent over a minute on a shared
    machine. Ratios are then taken round by round.
    """
    names = list(steps)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, n = steps[name]
            rates[name].append(time_window(step, batch, n, device))
    return rates


def profile_table(step, device: torch.device, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
        synchronize(device)
    averages = prof.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60)]
    if device.type == "cuda":  # the host's time first (what bounds these small models), then the GPU's
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=60))
    return "\n".join(tables)


def host_bound(step, device: torch.device, steps: int = 50) -> str:
    """How long the host takes to issue ``steps`` steps, against how long until the GPU has run them:
    equal times mean the GPU waits on the host."""
    for _ in range(5):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    issued = time.perf_counter()
    synchronize(device)
    done = time.perf_counter()
    return (f"host issues a step in {(issued - start) / steps * 1e3:.2f} ms; "
            f"until the GPU has run them: {(done - start) / steps * 1e3:.2f} ms a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="steps in each timed window of the fft path")
    parser.add_argument("--slow-steps", type=int, default=5, help="steps in each timed window of the stepped paths")
    parser.add_argument("--rounds", type=int, default=7,
                        help="rounds of timing, each one window of every path back to back; medians are printed")
    parser.add_argument("--models", default="lmuformer,slmuformer")
    parser.add_argument("--plain", action="store_true",
                        help="CUDA: PyTorch's defaults (unfused Adam, cuDNN's heuristic algorithms) instead of the "
                             "trainer's; same as --no-autotune --no-fused-adam")
    parser.add_argument("--no-autotune", action="store_true", help="CUDA: cuDNN's heuristic convolution algorithms")
    parser.add_argument("--no-fused-adam", action="store_true", help="CUDA: PyTorch's default (foreach) Adam")
    parser.add_argument("--no-amp", action="store_true", help="CUDA: float32 (TF32 where allowed) instead of bf16 autocast")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="CPU: bf16 autocast, as the trainer's cpu_bf16=true (where the CPU computes bf16 natively)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA: capture each path's whole step in a CUDA graph and replay it (removes the host's "
                             "kernel-launch cost from every path alike)")
    parser.add_argument("--compile", action="store_true",
                        help="run every path through torch.compile (an experiment: the trainer runs eagerly)")
    parser.add_argument("--paths", default="fft,memory,rnn",
                        help="which paths to time (a path left out prints as '-'; its ratios too)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the fft step: the operations that take the host's time, the CUDA kernels "
                             "that take the GPU's, and whether the GPU waits on the host")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = uses_bfloat16(device, not args.no_amp, args.cpu_bf16)
    if args.cpu_bf16 and device.type == "cpu" and not amp:
        parser.error("--cpu-bf16: this CPU does not compute bfloat16 natively (emulated, it would be slower)")
    autotune, fused = not (args.plain or args.no_autotune), not (args.plain or args.no_fused_adam)
    graphs, compiled = args.cuda_graphs, args.compile
    if graphs and device.type != "cuda":
        parser.error("--cuda-graphs needs --device cuda")
    if graphs and compiled:
        parser.error("--cuda-graphs and --compile are separate experiments: choose one")
    paths = args.paths.split(",")
    if not paths or set(paths) - {"fft", "memory", "rnn"}:
        parser.error(f"--paths takes a comma-separated subset of fft,memory,rnn, got {args.paths!r}")
    if autotune:
        use_fast_cuda_kernels(device)  # as the trainer does (every path)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    setup = (f"{'bf16 autocast' if amp else 'float32'}, cuDNN {'autotuned' if autotune else 'heuristic'} convolutions, "
             f"{'fused' if fused else 'foreach'} Adam" + (" (the trainer's settings)" if autotune and fused and amp else "")
             + ("; each step a replayed CUDA graph" if graphs else "") if device.type == "cuda"
             else "bf16 autocast" if amp else "float32")
    setup += "; torch.compile" if compiled else ""
    print(f"device: {name}; batch {args.batch} x 128 frames x 128 mel; torch {torch.__version__}; {setup}", flush=True)

    results = []
    for config in args.models.split(","):
        torch.manual_seed(0)
        model = LMUFormer(get_config(config)).to(device).train()
        x = torch.randn(args.batch, 128, 128, device=device)
        y = F.one_hot(torch.randint(0, 35, (args.batch,), device=device), 35).float()
        difference = max_difference(model, x[:8])
        steps = {}  # path -> (step, steps per timed window)
        if "fft" in paths:
            steps["fft"] = make_step(model, x, y, "fft", amp, fused, graphs, compiled), args.steps
        if "memory" in paths:
            steps["memory"] = make_step(model, x, y, "recurrent", amp, fused, graphs, compiled), args.slow_steps
        if "rnn" in paths:
            with rnn_form():
                rnn_step = make_step(model, x, y, "recurrent", amp, fused, graphs, compiled)
            steps["rnn"] = in_rnn_form(rnn_step), args.slow_steps
        for path, (step, _) in steps.items():
            warm_up(step, device, f"{config} {path}")
        rates = interleaved_rates(steps, args.batch, device, args.rounds)
        results.append((config, rates))
        print(f"  {config}: " + "  ".join(f"{path} {statistics.median(r):,.0f}" for path, r in rates.items())
              + f" clips/s (median of {args.rounds} rounds); max |logit difference| fft vs rnn {difference:.1e}",
              flush=True)
        if args.profile and "fft" in paths:
            print(profile_table(steps["fft"][0], device), flush=True)
            if device.type == "cuda":
                print(host_bound(steps["fft"][0], device), flush=True)

    def median(rates: dict, path: str) -> float:
        return statistics.median(rates[path]) if path in rates else math.nan

    def ratio(rates: dict, over: str) -> str:
        """fft / ``over``: the median of the rounds' ratios, and their range."""
        if "fft" not in rates or over not in rates:
            return "-"
        per_round = sorted(f / o for f, o in zip(rates["fft"], rates[over]))
        return f"{statistics.median(per_round):.1f}x ({per_round[0]:.1f}-{per_round[-1]:.1f})"

    print(f"\n{'model':<12}{'fft clips/s':>13}{'memory clips/s':>16}{'rnn clips/s':>13}"
          f"{'fft/memory':>20}{'fft/rnn':>20}{'SC v2 epoch (fft)':>19}")
    for config, rates in results:
        fft = median(rates, "fft")
        cells = [f"{median(rates, path):>{width},.0f}" if path in rates else f"{'-':>{width}}"
                 for path, width in (("fft", 13), ("memory", 16), ("rnn", 13))]
        epoch = f"{SC_V2_TRAIN_CLIPS / fft:.1f} s" if "fft" in rates else "-"
        print(f"{config:<12}{''.join(cells)}{ratio(rates, 'memory'):>20}{ratio(rates, 'rnn'):>20}{epoch:>19}")
    print(f"\n(clips/s: median over {args.rounds} rounds, each timing every path once back to back; ratios: median "
          f"of the rounds' ratios (range); SC v2 epoch = the {SC_V2_TRAIN_CLIPS:,} clips of the Speech Commands v2 "
          f"training split at the fft rate)")

    if compiled or not {"fft", "memory"} <= set(paths):
        return
    # The Legendre memory alone (the only part of the model the fft and memory paths compute differently).
    from lmustream.models import LegendreMemory
    print(f"\n{'Legendre memory alone':<24}{'FFT clips/s':>14}{'stepped clips/s':>18}{'ratio':>9}")
    for order in (256, 512):
        memory = LegendreMemory(order, 128.0).to(device)
        u = torch.rand(args.batch, 128, device=device, requires_grad=True)
        fft_rate, stepped_rate = (clips_per_second(lambda: run(u).square().mean().backward(), args.batch, window,
                                                   device, args.rounds)
                                  for run, window in ((memory, args.steps), (memory.recurrent, args.slow_steps)))
        print(f"{'M = ' + str(order):<24}{fft_rate:>14,.0f}{stepped_rate:>18,.0f}{fft_rate / stepped_rate:>8.1f}x")


if __name__ == "__main__":
    main()

"""Training throughput (clips/s): the FFT-parallel Legendre memory vs stepping its recurrence.

    python benchmarks/train_throughput.py [--device cuda] [--batch 128] [--steps 20]

For the paper-size LMUFormer and spiking LMUFormer (35 classes, 128 frames x 128 mel), times
forward + backward + Adam step on random batches with the memory computed by FFT (the training
path) and frame by frame (``memory_path="recurrent"``: the same model and batch), and prints
clips/s and the ratio. bf16 autocast on CUDA, as the trainer uses.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from lmustream.models import LMUFormer, get_config


def clips_per_second(model, x, y, memory_path: str, steps: int, amp: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

    def step():
        with ctx:
            logits = model(x, memory_path=memory_path)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (cuFFT plans, allocator)
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--recurrent-steps", type=int, default=3, help="steps timed for the slow path")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batch {args.batch} x 128 frames x 128 mel; torch {torch.__version__}")
    print(f"\n{'model':<12}{'FFT clips/s':>14}{'recurrent clips/s':>20}{'ratio':>9}{'epoch of 84,843 clips (FFT)':>30}")
    for config in ("lmuformer", "slmuformer"):
        torch.manual_seed(0)
        model = LMUFormer(get_config(config)).to(device).train()
        x = torch.randn(args.batch, 128, 128, device=device)
        y = F.one_hot(torch.randint(0, 35, (args.batch,), device=device), 35).float()
        fft = clips_per_second(model, x, y, "fft", args.steps, amp)
        rec = clips_per_second(model, x, y, "recurrent", args.recurrent_steps, amp)
        print(f"{config:<12}{fft:>14,.0f}{rec:>20,.0f}{fft / rec:>9.1f}{84843 / fft:>28.1f} s")
    print("\n(84,843 = clips in the Speech Commands v2 training split)")
    # The Legendre memory alone (the only part of the model the two paths compute differently).
    from lmustream.models import LegendreMemory
    print(f"\n{'Legendre memory alone':<24}{'FFT clips/s':>14}{'recurrent clips/s':>20}{'ratio':>9}")
    for order in (256, 512):
        memory = LegendreMemory(order, 128.0).to(device)
        u = torch.rand(args.batch, 128, device=device, requires_grad=True)
        rates = []
        for path, steps in (("fft", args.steps), ("recurrent", args.recurrent_steps)):
            run = memory if path == "fft" else memory.recurrent
            for _ in range(2):
                run(u).square().mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                run(u).square().mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(steps * args.batch / (time.perf_counter() - start))
        print(f"{'M = ' + str(order):<24}{rates[0]:>14,.0f}{rates[1]:>20,.0f}{rates[0] / rates[1]:>9.1f}")


if __name__ == "__main__":
    main()

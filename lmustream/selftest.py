"""``lmustream selftest``: the numerical guarantees of this install, checked and printed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lmustream.conformance import Check, fbank_checks, model_checks, path_parity_checks
from lmustream.models import LMUFormer, get_config

STREAM_VS_BATCH_TOL = 1e-5  # log-mel units; both in float64, so only the chunking can differ
KERNEL_TOL = 1e-5  # relative to max |m|, float32


def randomize_batchnorm(model: LMUFormer, seed: int) -> LMUFormer:
    """Non-trivial BN statistics, so that parity checks exercise every layer."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
    return model


def parity_checks(seed: int = 0) -> list[Check]:
    torch.manual_seed(seed)
    x = torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(seed))
    checks = []
    for name in ("lmuformer", "slmuformer"):
        model = randomize_batchnorm(LMUFormer(get_config(name)), seed).eval()
        checks += path_parity_checks(model, x, f"{name} (random weights)")
    return checks


def frontend_checks(seed: int = 0) -> list[Check]:
    from lmustream.audio.features import FbankConfig, StreamingFbank, fbank

    rng = np.random.default_rng(seed)
    t = np.arange(16000 * 3) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (200 + 1200 * t) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    config = FbankConfig()
    batch = fbank(torch.from_numpy(wave.astype(np.float64)), config).numpy()
    stream, parts, start = StreamingFbank(config), [], 0
    while start < wave.size:
        size = int(rng.integers(1, 4001))
        parts.append(stream.push(wave[start:start + size]))
        start += size
    streamed = np.concatenate(parts)
    err = float(np.abs(streamed - batch).max()) if streamed.shape == batch.shape else float("inf")
    return [Check("frontend streaming (random chunks) vs batch (float64), 3 s chirp", err, STREAM_VS_BATCH_TOL)]


def kernel_checks(seed: int = 0) -> list[Check]:
    from lmustream.models import LegendreMemory
    from lmustream.stream.kernel import kernel_available, kernel_info, lmu_memory_scan

    if not kernel_available():
        return [Check(f"C++ kernel loads ({kernel_info().get('error')})", 1.0, 0.0, "missing")]
    memory = LegendreMemory(256, 128.0)
    u = torch.relu(torch.randn(1, 1000, generator=torch.Generator().manual_seed(seed)))
    ours = memory.recurrent(u)[0].T.numpy()  # (T, M)
    out, _ = lmu_memory_scan(memory.A.float().numpy(), memory.B.float().numpy(), u[0].numpy())
    rel = float(np.abs(out - ours).max() / np.abs(ours).max())
    return [Check(f"C++ kernel memory update vs Python, 1000 frames ({kernel_info().get('simd')})", rel,
                  KERNEL_TOL, "rel max")]


def run_selftest(conformance: Path | None) -> int:
    sections = [("Legendre memory: FFT path == recurrent path (paper-size models)", parity_checks),
                ("Log-mel frontend: streaming == batch", frontend_checks),
                ("C++ kernel == Python", kernel_checks)]
    if conformance is not None:
        sections += [(f"LMUFormer authors' golden vectors ({conformance / 'lmuformer'})",
                      lambda: model_checks(conformance)),
                     (f"torchaudio Kaldi fbank golden vectors ({conformance / 'fbank'})",
                      lambda: fbank_checks(conformance))]
    failed = total = 0
    start = time.perf_counter()
    for title, run in sections:
        print(f"\n== {title}")
        for check in run():
            print("  " + check.row())
            total += 1
            failed += not check.passed
    print(f"\n{total - failed}/{total} checks passed in {time.perf_counter() - start:.1f} s.")
    if conformance is None:
        print("Golden vectors not found: pass --conformance DIR to also check against the authors' code "
              "and torchaudio.")
    return 1 if failed else 0

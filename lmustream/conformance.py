"""Checks against golden vectors from the LMUFormer authors' code and torchaudio's Kaldi fbank.

Each check measures one error and compares it with its tolerance; the test suite asserts
them and ``lmustream selftest`` prints them. The golden files live outside the package
(a ``conformance/`` folder with ``lmuformer/`` and ``fbank/``, see its README).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmustream.models import LMUFormer, load_reference_checkpoint

MODEL_VARIANTS = ("lmuformer", "spiking_lmuformer")
F32_LOGIT_TOL = 1e-4
F64_LOGIT_TOL = 1e-6
PATH_PARITY_TOL = {torch.float32: 1e-5, torch.float64: 1e-9}  # x max|output|
FBANK_TOL, FBANK_LOW_ENERGY_TOL, FBANK_RANGE_DB = 2e-3, 0.1, 80.0


@dataclass
class Check:
    name: str
    error: float  # measured: max abs difference, or a count of differing spikes
    tolerance: float
    unit: str = "max abs"

    @property
    def passed(self) -> bool:
        return bool(self.error <= self.tolerance)

    def row(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        return f"{status} {self.name:<58} {self.unit:>9} {self.error:10.3g}  (tol {self.tolerance:.0e})"


def _capture(model: LMUFormer) -> tuple[dict, list]:
    """Forward hooks recording the reference's intermediate activations, in its layouts."""
    acts, handles = {}, []

    def keep(name, fn=lambda t: t):
        def hook(_module, _inputs, output):
            acts[name] = fn(output.detach())
        return hook

    block = model.blocks[0]
    handles.append(model.embed.register_forward_hook(keep("patch_embed_out")))
    handles.append(block.lmu.register_forward_hook(keep("lmu_block_out")))
    handles.append(block.register_forward_hook(keep("block_out")))
    if model.config.spiking:
        handles.append(block.lmu.lif_h.register_forward_hook(keep("lmu_cell_h", lambda t: t.transpose(1, 2))))
        handles.append(model.head_lif.register_forward_hook(keep("head_spikes")))
    else:
        handles.append(block.lmu.W_h.register_forward_hook(keep("lmu_cell_h", torch.relu)))
    return acts, handles


def lif_outputs(model: LMUFormer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spike trains of every LIF layer of a spiking model on input x."""
    from lmustream.models import LIF

    spikes, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, LIF):
            handles.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: spikes.__setitem__(name, out.detach())))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return spikes


def model_checks(conformance_dir: str | Path) -> list[Check]:
    """Logits (both modes, float32 and float64), intermediates, spike trains, FFT-vs-recurrent parity."""
    root = Path(conformance_dir) / "lmuformer"
    checks = []
    for variant in MODEL_VARIANTS:
        model = load_reference_checkpoint(root / f"{variant}_state_dict.pt", variant)
        x = torch.from_numpy(np.load(root / f"{variant}_input.npy"))
        acts, handles = _capture(model)
        with torch.no_grad():
            logits = model(x)
        for h in handles:
            h.remove()
        with torch.no_grad():
            all_seq = model(x, mode="all_seq")
        gold = lambda suffix: np.load(root / f"{variant}_{suffix}.npy")  # noqa: E731
        checks.append(Check(f"{variant} float32 logits (mean)", _maxabs(logits, gold("logits")), F32_LOGIT_TOL))
        checks.append(Check(f"{variant} float32 logits (all_seq)", _maxabs(all_seq, gold("logits_all_seq")),
                            F32_LOGIT_TOL))
        inter = np.load(root / f"{variant}_intermediates_f32.npz")
        for name in inter.files:
            ours, ref = acts[name].numpy(), inter[name]
            if variant.startswith("spiking") and name in ("lmu_cell_h", "head_spikes"):
                checks.append(Check(f"{variant} spikes {name}", float((ours != ref).sum()), 0, "differ"))
            else:
                checks.append(Check(f"{variant} float32 {name}", _maxabs(ours, ref), F32_LOGIT_TOL))

        if model.config.spiking:
            spikes32 = lif_outputs(model, x)
        model64, x64 = model.double(), x.double()
        if model.config.spiking:
            spikes64 = lif_outputs(model64, x64)
            flips = sum(int((spikes32[k] != spikes64[k].float()).sum()) for k in spikes32)
            checks.append(Check(f"{variant} spikes, all {len(spikes32)} LIF layers, float32 vs float64",
                                float(flips), 0, "differ"))
        with torch.no_grad():
            checks.append(Check(f"{variant} float64 logits (mean)", _maxabs(model64(x64), gold("logits_f64")),
                                F64_LOGIT_TOL))
            checks.append(Check(f"{variant} float64 logits (all_seq)",
                                _maxabs(model64(x64, mode="all_seq"), gold("logits_all_seq_f64")), F64_LOGIT_TOL))
        checks.extend(path_parity_checks(model, x, variant))
    return checks


def path_parity_checks(model: LMUFormer, x: torch.Tensor, name: str) -> list[Check]:
    """FFT memory path vs recurrent memory path on the whole model (all_seq logits), relative to max|out|."""
    checks = []
    for dtype in (torch.float32, torch.float64):
        m, xd = model.to(dtype), x.to(dtype)
        with torch.no_grad():
            fft = m(xd, mode="all_seq", memory_path="fft")
            rec = m(xd, mode="all_seq", memory_path="recurrent")
        rel = ((fft - rec).abs().max() / rec.abs().max()).item()
        checks.append(Check(f"{name} {str(dtype)[6:]} FFT vs recurrent, N={x.shape[1]}", rel,
                            PATH_PARITY_TOL[dtype], "rel max"))
    model.float()
    return checks


def fbank_checks(conformance_dir: str | Path, seed: int = 0) -> list[Check]:
    """Every fbank case, batch (torch) and streaming (numpy, random chunks of 1..4000 samples)."""
    from lmustream.audio.features import FbankConfig, StreamingFbank, fbank, normalize

    config = FbankConfig()
    rng = np.random.default_rng(seed)
    checks = []
    for path in sorted((Path(conformance_dir) / "fbank").glob("*.npz")):
        case = np.load(path)
        wave, gold = case["waveform"], case["fbank"]
        batch = fbank(torch.from_numpy(wave), config).numpy()
        stream = StreamingFbank(config)
        pieces, start = [], 0
        while start < len(wave):
            size = int(rng.integers(1, 4001))
            pieces.append(stream.push(wave[start:start + size]))
            start += size
        streamed = np.concatenate(pieces) if pieces else np.zeros((0, config.n_mels), np.float32)
        for label, ours in (("batch", batch), ("streaming", streamed)):
            in_range, low = fbank_errors(ours, gold)
            checks.append(Check(f"fbank {path.stem} {label}", in_range, FBANK_TOL))
            checks.append(Check(f"fbank {path.stem} {label} (<-80 dB bins)", low, FBANK_LOW_ENERGY_TOL))
        norm_err = _maxabs(normalize(batch, config), case["normalized"])
        checks.append(Check(f"fbank {path.stem} normalized", norm_err, FBANK_TOL))
    return checks


def fbank_errors(ours: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(max error over bins within 80 dB of their frame's max, max error over the others)."""
    if ours.shape != gold.shape:
        return float("inf"), float("inf")
    if gold.size == 0:
        return 0.0, 0.0
    floor = gold.max(axis=1, keepdims=True) - FBANK_RANGE_DB * np.log(10) / 10  # natural log of power
    err = np.abs(ours.astype(np.float64) - gold)
    in_range = gold >= floor
    return float(err[in_range].max(initial=0.0)), float(err[~in_range].max(initial=0.0))


def _maxabs(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.shape != np.shape(b):
        return float("inf")
    return float(np.abs(a.astype(np.float64) - np.asarray(b, dtype=np.float64)).max())

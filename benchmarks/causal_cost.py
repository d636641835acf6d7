"""Accuracy cost of the causal variant (no look-ahead) on the spoken-digit task, leave one speaker out.

    python benchmarks/causal_cost.py --data ../shared/data/fsdd/recordings [--epochs 30] [--device cuda]

Trains the same configuration with centred embedding kernels (look-ahead D = 5 frames) and with
left-padded ones (causal, D = 0) on Free Spoken Digit recordings ({digit}_{speaker}_{index}.wav),
holding out each speaker in turn, and prints per-fold and mean held-out accuracy for both.
Same seeds, data, schedule and augmentation (random time shift, SpecAugment-style masks) for both.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmustream.audio.features import FbankConfig, fbank, normalize
from lmustream.audio.io import load_audio
from lmustream.models import LMUFormer, get_config

FRAMES = 100  # 1 s of audio; FSDD clips are shorter and are zero-padded (in the normalized domain)


def load_fsdd(folder: Path) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    config = FbankConfig()
    feats, labels, speakers = [], [], []
    for path in sorted(folder.glob("*.wav")):
        digit, speaker, _ = path.stem.split("_")
        x = normalize(fbank(torch.from_numpy(load_audio(path)), config), config)[:FRAMES]
        feats.append(F.pad(x, (0, 0, 0, FRAMES - x.shape[0])))
        labels.append(int(digit))
        speakers.append(speaker)
    return torch.stack(feats), torch.tensor(labels), np.array(speakers)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    B, N, M = x.shape
    shift = int(torch.randint(-10, 11, (1,), generator=g))
    x = torch.roll(x, shift, dims=1)
    for _ in range(2):  # one time mask and one frequency mask per batch
        t0, f0 = int(torch.randint(0, N - 10, (1,), generator=g)), int(torch.randint(0, M - 24, (1,), generator=g))
        x = x.clone()
        x[:, t0:t0 + 10] = 0
        x[:, :, f0:f0 + 24] = 0
    return x


def train_and_test(x, y, train_idx, test_idx, causal: bool, args, seed: int) -> float:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    device = torch.device(args.device)
    model = LMUFormer(get_config(args.config, n_classes=10, causal=causal, frames=FRAMES, theta=float(FRAMES)))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    steps = args.epochs * int(np.ceil(len(train_idx) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    xt, yt = x[train_idx], y[train_idx]
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_idx), generator=g)
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            xb = augment(xt[idx], g).to(device)
            loss = F.cross_entropy(model(xb), yt[idx].to(device), label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[test_idx[i:i + 256]].to(device)).argmax(1).cpu()
                          for i in range(0, len(test_idx), 256)])
    return float((pred == y[test_idx]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of FSDD .wav files")
    parser.add_argument("--config", default="lmuformer-small")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    start = time.time()
    x, y, speakers = load_fsdd(args.data)
    print(f"{len(y)} clips, speakers {sorted(set(speakers))}, features {tuple(x.shape)} "
          f"({time.time() - start:.0f} s); config {args.config}, {args.epochs} epochs, device {args.device}")
    results = defaultdict(list)
    for held_out in sorted(set(speakers)):
        test_idx = np.flatnonzero(speakers == held_out)
        train_idx = np.flatnonzero(speakers != held_out)
        for causal in (False, True):
            accs = [train_and_test(x, y, train_idx, test_idx, causal, args, seed) for seed in range(args.seeds)]
            results[causal].append(np.mean(accs))
            print(f"held-out {held_out:<10} {'causal (D=0)' if causal else 'centred (D=5)':<14} "
                  f"accuracy {np.mean(accs):.4f}  ({time.time() - start:.0f} s)", flush=True)
    a, b = np.mean(results[False]), np.mean(results[True])
    print(f"\nmean held-out-speaker accuracy: centred {a:.4f}, causal {b:.4f}, cost {a - b:+.4f}")


if __name__ == "__main__":
    main()

"""Where a fine-tuning step's time goes: seconds per step of each method on the paper-size LMUFormer.

    python benchmarks/adapters_step_time.py [--config lmuformer] [--batch 32] [--steps 3] [--repeats 3]
        [--precision fp32|bf16]

Forward + backward + Adam step on a batch of 128-frame clips (backbone frozen, batch norms in
eval mode, as `lmustream finetune` trains), for LoRA, AFLoRA before and after its A and B
matrices froze, VeRA, the head alone and full fine-tuning, and as a floor the frozen model's
own forward pass and backward pass to its input (what any method that trains something in the
lowest layers pays). Methods are interleaved and the best of the repeats is kept, so that load
from other processes affects them alike. AFLoRA is measured where ``lmustream finetune`` puts it
(the patch embedding, ``embed.*``) and on every layer. ``--precision bf16`` runs the forward pass
under bfloat16 autocast, as ``lmustream finetune --precision bf16`` trains.

A trainable A costs a pass over the (unfolded) input for its gradient, and its path two extra
products each way; a frozen A lets the layer run as one product, (W0 + U A) x
(lmustream/adapters/frozen_down.py), so AFLoRA once frozen, and VeRA, cost little more than the floor.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lmustream.adapters import adapter_layers, add_adapter, count_parameters, make_config  # noqa: E402
from lmustream.models import LMUFormer, get_config  # noqa: E402


FLOOR = "floor: frozen model, backward to its input"


def variants(base):
    def make(method, frozen=False, **fields):
        model = add_adapter(copy.deepcopy(base), make_config(method, **fields))
        if frozen:  # AFLoRA at the end of its schedule: every A and B frozen, the vectors training
            for layer in adapter_layers(model).values():
                for p in layer.matrices().values():
                    p.requires_grad_(False)
        return model

    floor = copy.deepcopy(base).requires_grad_(False)
    floor.head.requires_grad_(True)
    embed = ("embed.*",)
    return {"lora r=8": make("lora", rank=8), "lora r=4": make("lora", rank=4),
            "aflora r=4 (embed.*)": make("aflora", rank=4, target_modules=embed),
            "aflora r=4 (embed.*), A B frozen": make("aflora", frozen=True, rank=4, target_modules=embed),
            "aflora r=4 (every layer)": make("aflora", rank=4),
            "aflora r=4 (every layer), A B frozen": make("aflora", frozen=True, rank=4),
            "vera r=64": make("vera", rank=64),
            "head only": make("head"), "full": make("full"), FLOOR: floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="lmuformer")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    torch.manual_seed(0)
    base = LMUFormer(get_config(args.config, n_classes=40)).eval()
    x, y = torch.randn(args.batch, 128, 128), torch.randint(0, 40, (args.batch,))
    models = variants(base)
    best = {name: float("inf") for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            inputs = x.clone().requires_grad_(name == FLOOR)
            start = time.perf_counter()
            for _ in range(args.steps):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                    logits = model(inputs)
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    print(f"{args.config}, {args.precision}, batch {args.batch} x 128 frames, {torch.get_num_threads()} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}; best of {args.repeats} x {args.steps} steps")
    print(f"\n| method | trainable params | s / step | vs lora r=8 |\n|---|---|---|---|")
    for name, model in models.items():
        print(f"| {name} | {count_parameters(model)[0]:,} | {best[name]:.3f} | {best['lora r=8'] / best[name]:.2f}x |")


if __name__ == "__main__":
    main()

"""``lmustream finetune``: teach a model new keywords from a few clips per word, on the CPU."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmustream.cli import non_negative_int, output_file, positive_int

DESCRIPTION = """\
Teach a model new keywords from a few clips per word (e.g. 5-20, as recorded by
`lmustream enroll`), on the CPU, without forgetting the old ones.

The head grows one class per new word (the old classes kept). An adapter (AFLoRA by
default: low-rank paths whose projection matrices freeze as they stop learning) and the
head are trained with augmentation (noise, time shift, gain, SpecAugment). The old task
is replayed: old-word clips given with --replay (real recordings or a synthetic corpus from
`lmustream data synth --words ...`) join every batch, and the original model's outputs on the
old words are distilled into the new one. The adapter is then merged into the weights:
--out is an ordinary model file (step form, ONNX export, C++ kernel), and the adapter alone
is written beside it (OUT minus .safetensors plus .adapter.safetensors).

Folders: DIR/<word>/*.wav (any audio format; speaker ids from file names), or a CSV
manifest (file,label[,speaker]). --eval-new / --eval-old are held-out clips of the new /
old words: their accuracies are printed (old: before and after).

examples:
  lmustream finetune --model sc12-lmuformer --new-words my_words --out my_model.safetensors
  lmustream finetune --model kws.safetensors --new-words enroll --method lora --rank 8 \\
      --replay old_words --eval-new test_new --eval-old test_old --json
"""

METHODS = ("aflora", "lora", "vera", "head", "full")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model file, or the name of a shipped model")
    parser.add_argument("--new-words", required=True, metavar="DIR",
                        help="enrollment clips: one folder per word (or a CSV manifest)")
    parser.add_argument("--method", default="aflora", choices=METHODS,
                        help="aflora (default), lora, vera (frozen shared random projections), head (the head "
                             "only), full (every weight)")
    parser.add_argument("--rank", type=positive_int, help="adapter rank (default: aflora 4, lora 8, vera 64)")
    parser.add_argument("--out", metavar="PATH", type=output_file,
                        help="merged model file to write (default: <model>-finetuned.safetensors here)")
    parser.add_argument("--adapter-out", metavar="PATH", type=output_file, help="adapter file (default: beside --out)")
    parser.add_argument("--replay", metavar="DIR",
                        help="old-word clips replayed during training (folders or CSV); for a model with "
                             "_unknown_, words it does not know are replayed as _unknown_ (the words being taught "
                             "are left out); a model's _silence_ class, when DIR holds none, is replayed from "
                             "clips cut from the noise")
    parser.add_argument("--replay-per-class", type=non_negative_int, default=10, metavar="N",
                        help="replay clips kept per old word (default 10)")
    parser.add_argument("--eval-new", metavar="DIR", help="held-out clips of the new words: prints their accuracy")
    parser.add_argument("--eval-old", metavar="DIR",
                        help="held-out clips of old words: prints their accuracy before and after")
    parser.add_argument("--noise", action="append", default=[], metavar="DIR",
                        help="background-noise recordings for augmentation (repeatable; default: generated "
                             "coloured noise)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="passes over the enrollment clips (20)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="enrollment clips per step, plus as many replay clips (16)")
    parser.add_argument("--lr", type=_positive_float,
                        help="learning rate, cosine decay (default: AFLoRA and LoRA 4e-3, VeRA and head 1e-3, full "
                             "fine-tuning 3e-4; AFLoRA's and VeRA's vectors 30x)")
    parser.add_argument("--balance", type=float, default=1.0, metavar="TAU",
                        help="logit adjustment for the new words' clips being seen more often than each old "
                             "word's: 1 (default) keeps the old words' accuracy, 0 favours the new words")
    parser.add_argument("--new-word-bias", type=float, default=0.0, metavar="B",
                        help="subtract B from the new words' logits in the written model: the new words then "
                             "take fewer clips of old words, at some cost in their own recall (default 0; on the "
                             "English adapter experiment 1 cut AFLoRA's old-word loss from 4.4 to 0.8 points "
                             "and cost the new words 1.9: docs/adapters.md)")
    parser.add_argument("--channel-match", type=float, metavar="P",
                        help="probability of hearing an enrollment clip through the replay clips' recording "
                             "channel (their level, spectral tilt and bandwidth), so that the new words are "
                             "learnt apart from the enrollment microphone (default 0.5, head-only 0; 0 disables)")
    parser.add_argument("--targets", metavar="PATTERNS",
                        help="comma-separated layers to adapt, names or glob patterns (default: AFLoRA the patch "
                             "embedding, 'embed.*', where new words are learnt; LoRA and VeRA every Linear and "
                             "Conv1d), e.g. '*' for every layer or 'blocks.*,embed.rpe'")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="training arithmetic: bf16 = bfloat16 autocast (weights, optimizer and evaluation stay "
                             "float32); auto (default) = bf16 where the CPU computes it natively (AVX512-BF16 or AMX, "
                             "Arm BF16: about 1.5x faster), else fp32")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/lmustream/features)")
    parser.add_argument("--no-cache", action="store_true", help="compute features without the on-disk cache")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (new_accuracy, old_accuracy_before, old_accuracy_after, "
                             "avg_trainable_params, seconds, peak_memory_mb, freezes, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def default_out(model: str) -> Path:
    stem = Path(model).name
    stem = stem[:-len(".safetensors")] if stem.endswith(".safetensors") else stem
    return Path(f"{stem}-finetuned.safetensors")


def run(args: argparse.Namespace) -> int:
    from lmustream.adapters.finetune import ADVICE_PREFIXES, FinetuneConfig, finetune

    fields = {"method": args.method, "rank": args.rank, "epochs": args.epochs, "batch_size": args.batch_size,
              "lr": args.lr, "replay_per_class": args.replay_per_class, "seed": args.seed, "threads": args.threads,
              "balance": args.balance, "channel_match": args.channel_match, "new_word_bias": args.new_word_bias,
              "precision": args.precision}
    if args.targets:
        fields["target_modules"] = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    config = FinetuneConfig(**fields)
    out = Path(args.out) if args.out else default_out(args.model)
    if args.json:  # stdout holds the one JSON object; warnings still reach the user, on stderr
        def log(line):
            if line.startswith(ADVICE_PREFIXES):
                print(line, file=sys.stderr, flush=True)
    else:
        def log(line):
            print(line, flush=True)
    result = finetune(args.model, args.new_words, config=config, out=out, adapter_out=args.adapter_out,
                      replay=args.replay, eval_new=args.eval_new, eval_old=args.eval_old, noise_dirs=args.noise,
                      cache_dir=False if args.no_cache else args.cache_dir,
                      progress=not args.no_progress and sys.stderr.isatty(), log=log)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(format_result(result))
    return 0


def format_result(r) -> str:
    lines = [f"method {r.method}: {r.enrollment_clips} enrollment clips, {r.replay_clips} replay clips, "
             f"{r.steps} steps; classes {len(r.labels)} ({len(r.new_labels)} new: {', '.join(r.new_labels) or 'none'})",
             f"trainable parameters: {r.trainable_params_start:,} at the start, {r.avg_trainable_params:,.0f} on "
             f"average ({r.avg_trainable_adapter_params:,.0f} without the head) of {r.total_params:,}"]
    if r.method == "aflora":
        steps = [f["step"] for f in r.freezes]
        lines.append(f"AFLoRA froze {len(r.freezes)} projection matrices"
                     + (f" (steps {min(steps)}-{max(steps)})" if steps else ""))
    lines.append(f"time {r.seconds:.1f} s (training {r.train_seconds:.1f} s in {r.precision}), peak memory "
                 f"{r.peak_memory_mb:.0f} MB")
    if r.new_accuracy is not None:
        lines.append(f"new-word accuracy {r.new_accuracy:.4f}")
    if r.old_accuracy_before is not None:
        lines.append(f"old-word accuracy {r.old_accuracy_before:.4f} before, {r.old_accuracy_after:.4f} after")
    if r.model_path:
        lines.append(f"wrote {r.model_path} (merged model) and {r.adapter_path} (adapter)")
    return "\n".join(lines)

"""AFLoRA against LoRA, VeRA, head-only and full fine-tuning: teaching a model words it never saw.

    python benchmarks/adapters_experiment.py [--parts asc,english] [--methods aflora,lora,lora:4,vera,head,full]
        [--asc-backbone PATH] [--asc-json PATH] [--english-model NAME] [--english-replay DIR]
        [--epochs N] [--threads N] [--seeds 0,1,2] [--fa-threshold P] [--balance TAU] [--new-word-bias B]
        [--precision auto|fp32|bf16]
        [--work DIR] [--json OUT]

(a) asc: a backbone trained on 30 Arabic Speech Commands keywords (default: the file named by
    --asc-backbone, ../data/backbones/asc30-lmuformer.safetensors) learns the other 10 from 10
    clips per word by 2 enrollment speakers; new-word accuracy on the held-out speakers' clips of
    the 10 words, old-word accuracy on their clips of the 30 (before / after). Replay: 10 clips
    per old word from the backbone's training speakers.
(b) english: the shipped English model (sc12-lmuformer) learns the ten FSDD digits from 10 clips
    per digit by two FSDD speakers, tested on the other two; old-word accuracy on the real clips
    of speech_commands_v0.01_sample (its digits left out: they are the new words), and on as many
    _silence_ clips as an average old class, cut from speech_commands_noise at random gains as the
    training recipe cuts them; replay: synthetic clips of the old words (--english-replay, a
    `lmustream data synth` corpus; finetune adds _silence_ cut from its augmentation noise).

Every run is one `lmustream finetune ... --json --no-cache` process, so its wall time and peak
memory are those of the command a user runs (features computed, not read from a cache).
False alarms per hour: the detector (threshold --fa-threshold, the posteriors each model's header
implies) on the odd-numbered half of ../shared/data/spoken_sentences (real English sentences; the
shipped English model trained on the other half), for the old keywords before and after, and for
the new words after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # checkout first

import adapters_data as data  # noqa: E402

REPO = data.REPO
METHODS = ("aflora", "lora", "vera", "head", "full")
SENTENCES = data.SHARED / "data" / "spoken_sentences"
SC_SAMPLE = data.SHARED / "data" / "speech_commands_v0.01_sample"
NOISE = data.SHARED / "data" / "speech_commands_noise"
DEFAULT_ASC_BACKBONE = REPO.parent / "data" / "backbones" / "asc30-lmuformer.safetensors"
DEFAULT_ENGLISH_REPLAY = REPO.parent / "data" / "synth35"


def held_out_sentences() -> list[Path]:
    """Every second recording (path order) from the second: the sc12 recipe trained on the others."""
    return (sorted(SENTENCES.glob("*.flac")) + sorted(SENTENCES.glob("*.wav")))[1::2]


def run_finetune(model: Path, folders: dict, run: str, out: Path, args, seed: int) -> dict:
    """One ``lmustream finetune`` process; ``run`` is a method, or "method:rank"."""
    method, _, rank = run.partition(":")
    command = [sys.executable, "-m", "lmustream", "finetune", "--model", str(model), "--new-words",
               str(folders["new_words"]), "--method", method, "--out", str(out), "--eval-new", str(folders["eval_new"]),
               "--json", "--no-cache", "--no-progress", "--epochs", str(args.epochs), "--seed", str(seed)]
    if rank:
        command += ["--rank", rank]
    for key, option in (("eval_old", "--eval-old"), ("replay", "--replay")):
        if folders.get(key):
            command += [option, str(folders[key])]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.balance is not None:
        command += ["--balance", str(args.balance)]
    if args.new_word_bias is not None:
        command += ["--new-word-bias", str(args.new_word_bias)]
    if args.precision:
        command += ["--precision", args.precision]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"finetune {run} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started  # interpreter start and imports included
    return result


def enrolled_accuracy(model: Path, folder: Path) -> float:
    """New-word accuracy on the enrollment speakers' other clips (a device taught by its user)."""
    from lmustream.adapters.data import list_clips, load_clip_set
    from lmustream.adapters.evaluate import accuracy
    from lmustream.models.artifact import load_model

    artifact = load_model(model)
    clips = load_clip_set(list_clips(folder, "enrolled"), artifact.frontend, artifact.model.config.frames)
    return accuracy(artifact.model, clips, artifact.labels)


def false_alarm_rates(models: dict[str, Path], base: Path, keywords: list[str], threshold: float) -> dict:
    """Old keywords' false alarms of the base ("before") and of each model; each model's new words' too."""
    from lmustream.adapters.evaluate import false_alarms
    from lmustream.models.artifact import load_model

    files = held_out_sentences()
    rates = {"before": false_alarms(load_model(base), files, keywords, threshold)}
    for method, path in models.items():
        artifact = load_model(path)
        rates[method] = false_alarms(artifact, files, keywords, threshold)
        new_words = [w for w in artifact.labels if not w.startswith("_") and w not in keywords]
        rates[method + " (new words)"] = false_alarms(artifact, files, new_words, threshold)
    return {k: {"per_hour": v.per_hour, "alarms": v.alarms, "hours": v.hours} for k, v in rates.items()}


def asc_part(args) -> dict:
    from lmustream.models.artifact import load_model

    backbone = Path(args.asc_backbone)
    if not backbone.is_file():
        return {"skipped": f"no backbone at {backbone}"}
    split = data.asc_split(args.asc_json)
    labels = load_model(backbone).labels
    if sorted(labels) != sorted(split.old_words):
        raise SystemExit(f"{backbone}: labels {labels} are not the split's 30 old words {split.old_words}")
    folders = data.asc_folders(split, Path(args.work) / "asc", clips_per_word=10, replay_per_word=10, seed=args.seed)
    setup = (f"backbone {backbone.name}; new words {', '.join(split.new_words)}; enrollment speakers "
             f"{', '.join(split.enroll_speakers)} (10 clips per word); test speakers {', '.join(split.test_speakers)}")
    return run_part("asc", backbone, folders, split.old_words, setup, args)


def english_folders(model_labels: list[str], work: Path, replay_corpus: Path, seed: int) -> dict:
    folders = data.fsdd_folders(work, ("george", "jackson"), clips_per_word=10, seed=seed)
    keywords = [w for w in model_labels if not w.startswith("_")]
    other = "_unknown_" if "_unknown_" in model_labels else None

    def words_of(root: Path) -> dict[str, list[str]]:
        found = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
            if folder.name in data.DIGITS:
                continue  # the new words
            label = folder.name if folder.name in keywords else other
            if label:
                found.setdefault(label, []).extend(sorted(str(f) for f in folder.glob("*.wav")))
        return found

    old = words_of(SC_SAMPLE)
    old = {label: files for label, files in old.items() if files}
    folders["eval_old"] = data.link_folders(old, work / "eval_old")
    if "_silence_" in model_labels and NOISE.is_dir():  # as many as an average old class, as in training
        data.write_silence(sorted(NOISE.glob("*.wav")), work / "eval_old" / "_silence_",
                           round(sum(map(len, old.values())) / len(old)), seed)
    if replay_corpus.is_dir():
        replay = {label: data.rank(files, seed)[:50 if label.startswith("_") else 10]
                  for label, files in words_of(replay_corpus).items()}
        folders["replay"] = data.link_folders(replay, work / "replay")
    return folders


def english_part(args) -> dict:
    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model

    try:
        model = resolve_model(args.english_model)
    except Exception as e:  # not shipped yet
        return {"skipped": str(e)}
    labels = load_model(model).labels
    folders = english_folders(labels, Path(args.work) / "english", Path(args.english_replay), args.seed)
    keywords = [w for w in labels if not w.startswith("_")]
    setup = (f"model {args.english_model}; new words: the FSDD digits, enrollment george + jackson (10 clips per "
             f"digit), test theo + yweweler; old words: speech_commands_v0.01_sample, and _silence_ cut from "
             f"speech_commands_noise; replay: "
             f"{'synthetic clips from ' + str(args.english_replay) if folders.get('replay') else 'none'}")
    return run_part("english", model, folders, keywords, setup, args)


def run_part(name: str, model: Path, folders: dict, keywords: list[str], setup: str, args) -> dict:
    print(f"\n## ({name}) {setup}", flush=True)
    runs = {method: [] for method in args.methods}
    # Seed by seed, every method in turn: a machine whose speed drifts (other jobs, clocks) slows the
    # methods alike, and each seed's time ratios compare runs made minutes apart.
    for seed in args.seeds:
        for method in args.methods:
            out = Path(args.work) / name / f"{method.replace(':', '-r')}-s{seed}.safetensors"
            r = run_finetune(model, folders, method, out, args, seed)
            r["out"] = str(out)
            if folders.get("eval_enrolled"):
                r["new_accuracy_enrolled"] = enrolled_accuracy(out, folders["eval_enrolled"])
            runs[method].append(r)
            print(f"  {method} seed {seed}: new {r['new_accuracy']:.4f}, old {r['old_accuracy_before']:.4f} -> "
                  f"{r['old_accuracy_after']:.4f}, training {r['train_seconds']:.1f} s ({r['precision']}), "
                  f"{r['seconds']:.1f} s, {r['peak_memory_mb']:.0f} MB", flush=True)
    first = {method: Path(rs[0]["out"]) for method, rs in runs.items()}
    summary = {method: aggregate(rs) for method, rs in runs.items()}
    fa = false_alarm_rates(first, model, keywords, args.fa_threshold) if held_out_sentences() else {}
    print(table(summary, fa, args.fa_threshold, len(args.seeds)))
    print(targets(summary, runs))
    return {"setup": setup, "runs": runs, "summary": summary, "false_alarms": fa}


ACCURACIES = ("new_accuracy", "new_accuracy_enrolled", "old_accuracy_before", "old_accuracy_after")


def aggregate(runs: list[dict]) -> dict:
    """Means over seeds of every number, and the standard deviation of the accuracies."""
    import statistics

    out = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs]
            out[key] = statistics.fmean(values)
            if key in ACCURACIES:
                out[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def table(runs: dict, fa: dict, threshold: float, seeds: int) -> str:
    def acc(r, key):
        return f"{r[key]:.4f}" + (f" ± {r[key + '_std']:.4f}" if seeds > 1 else "") if key in r else "n/a"

    lines = [f"| method | new-word acc (held-out speakers) | new-word acc (enrolled speakers) | old-word acc "
             f"before -> after | avg trainable params: adapter (with head) | train s | run s | peak MB | FA/h @ "
             f"{threshold}: old words before -> after; new words |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, r in runs.items():
        fa_text = (f"{fa['before']['per_hour']:.1f} -> {fa[method]['per_hour']:.1f}; "
                   f"{fa[method + ' (new words)']['per_hour']:.1f}" if fa else "n/a")
        lines.append(f"| {method} | {acc(r, 'new_accuracy')} | {acc(r, 'new_accuracy_enrolled')} | "
                     f"{r['old_accuracy_before']:.4f} -> {acc(r, 'old_accuracy_after')} | "
                     f"{r['avg_trainable_adapter_params']:,.0f} ({r['avg_trainable_params']:,.0f}) | "
                     f"{r['train_seconds']:.1f} | {r['seconds']:.1f} | {r['peak_memory_mb']:.0f} | {fa_text} |")
    note = f"(mean ± standard deviation over {seeds} seeds; " if seeds > 1 else "("
    lines.append(note + "FA/h of the first seed's model)")
    return "\n".join(lines)


def time_ratios(slow: list[dict], fast: list[dict]) -> str:
    """Each seed's training-time ratio slow / fast (runs made back to back): median and range."""
    import statistics

    ratios = [s["train_seconds"] / f["train_seconds"] for s, f in zip(slow, fast)]
    return f"per seed median {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)"


def targets(runs: dict, per_seed: dict) -> str:
    if "aflora" not in runs:
        return ""
    a = runs["aflora"]
    lines = []
    for name in [m for m in runs if m.startswith("lora")]:
        b = runs[name]
        lines += [f"targets (aflora vs {name}):",
                  f"  new-word accuracy within 0.5%: {a['new_accuracy']:.4f} vs {b['new_accuracy']:.4f} "
                  f"({'met' if a['new_accuracy'] >= b['new_accuracy'] - 0.005 else 'NOT met'})",
                  f"  average trainable params <= 1/5: adapter {a['avg_trainable_adapter_params']:,.0f} vs "
                  f"{b['avg_trainable_adapter_params']:,.0f} = 1/"
                  f"{b['avg_trainable_adapter_params'] / max(a['avg_trainable_adapter_params'], 1):.1f}; with the head "
                  f"1/{b['avg_trainable_params'] / a['avg_trainable_params']:.1f}",
                  f"  wall time >= 1.3x less: training {b['train_seconds'] / a['train_seconds']:.2f}x of the means "
                  f"({time_ratios(per_seed[name], per_seed['aflora'])}), whole run {b['seconds'] / a['seconds']:.2f}x"]
    lines.append(f"old-word accuracy drop <= 1% (aflora): "
                 f"{100 * (a['old_accuracy_before'] - a['old_accuracy_after']):.2f}%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="asc,english")
    parser.add_argument("--methods", default="aflora,lora,lora:4,vera,head,full",
                        help="runs: a method, or method:rank (default: %(default)s)")
    parser.add_argument("--asc-backbone", default=str(DEFAULT_ASC_BACKBONE))
    parser.add_argument("--asc-json", default=str(data.BACKBONE_JSON))
    parser.add_argument("--english-model", default="sc12-lmuformer")
    parser.add_argument("--english-replay", default=str(DEFAULT_ENGLISH_REPLAY))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, help="CPU threads of each run (default: torch's choice)")
    parser.add_argument("--fa-threshold", type=float, default=0.9)
    parser.add_argument("--balance", type=float, help="finetune --balance (default: finetune's)")
    parser.add_argument("--new-word-bias", type=float, help="finetune --new-word-bias (default: finetune's)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="finetune --precision (default: finetune's)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds: each run is repeated per seed")
    parser.add_argument("--work", default="/tmp/lmustream-adapters-experiment")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    args.seeds = [int(x) for x in args.seeds.split(",") if x]
    args.seed = 0  # the data selection (enrollment, replay and evaluation clips) stays the same for every seed
    unknown = sorted({m.partition(":")[0] for m in args.methods} - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; epochs {args.epochs}, threads {args.threads or 'default'}")
    results = {}
    for part in [p for p in args.parts.split(",") if p]:
        result = {"asc": asc_part, "english": english_part}[part](args)
        if "skipped" in result:
            print(f"\n## ({part}) skipped: {result['skipped']}")
        results[part] = result
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""The ``lmustream`` command line: ``lmustream <verb> [options]``; ``lmustream <verb> --help`` explains each."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import lmustream
from lmustream.errors import ConfigError, LmuStreamError

EARLY_EXIT_MAX_DROP = 0.005  # eval --early-exit's defaults, named so plain eval can tell them from a choice
EARLY_EXIT_STEP_CHECK = 8
DESCRIPTION = """\
lmustream: streaming keyword spotting with LMUFormer and spiking LMUFormer.
Models train in parallel (the Legendre memory by FFT) and run frame by frame.

verbs:
  info       versions, whether the C++ kernel loaded (its SIMD level), shipped models
  show       what a model holds: words, architecture, cost, frontend, calibration, origin
  selftest   prove the numerics: FFT path == recurrent path, batch frontend ==
             streaming frontend, C++ kernel == Python, and (given the golden
             vectors) equality with the LMUFormer authors' code and torchaudio
  train      train an LMUFormer / spiking LMUFormer (one CPU, one GPU, or torchrun + DDP)
  eval       accuracy, per-class accuracy and confusion matrix of a model on a dataset
  data synth speak a word list with offline TTS voices into a Speech Commands-style corpus
  data pack  precompute a dataset's log-mel features into one file (data.pack, data.add_packs)
  data windows  cut long recordings (running speech, false alarms) into labelled training clips
  convert    turn an LMUFormer-authors checkpoint into an lmustream model file
  export     write the step form of a model as an ONNX graph with explicit state
  stream     detect keywords in audio files (any length, format, sample rate)
  listen     detect keywords live from the microphone (level meter, Ctrl-C for a summary)
  enroll     record examples of a new keyword from the microphone
  calibrate  per-keyword thresholds for a target false-alarm rate on negative audio
  eval-stream  FRR at 0.5/1/5 false alarms per hour, DET curve and latency on a long stream
  finetune   teach a model new keywords from a few clips (AFLoRA, LoRA, VeRA, head, full)

`lmustream VERB --help` explains each verb.
"""


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import numpy
    import torch

    from lmustream.stream.kernel import kernel_info

    rows = [("lmustream", lmustream.__version__), ("python", platform.python_version()),
            ("platform", f"{platform.system()} {platform.machine()}"), ("torch", torch.__version__),
            ("torch threads", str(torch.get_num_threads())), ("numpy", numpy.__version__)]
    for module, label in (("soundfile", "soundfile"), ("soxr", "soxr"), ("onnx", "onnx"),
                          ("onnxruntime", "onnxruntime"), ("sounddevice", "sounddevice")):
        rows.append((label, _module_version(module)))
    from lmustream.models import lif_triton
    rows.append(("CUDA", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"))
    rows.append(("LIF scan on CUDA", "Triton kernels" if lif_triton.triton is not None else "PyTorch loop (no triton)"))
    info = kernel_info()
    rows.append(("C++ kernel", "loaded" if info.get("loaded") else f"NOT loaded ({info.get('error')})"))
    if info.get("loaded"):
        rows.append(("kernel SIMD level", f"{info.get('simd')} (the path in use, chosen at run time; this CPU "
                                          f"runs: {info.get('simd_levels')})"))
        rows.append(("kernel compiler", str(info.get("compiler"))))
        rows.append(("kernel int8 sparse products", "yes (non-spiking int8 layers skip the weights of zero inputs)"
                     if info.get("sparse_int8") else "no (int8 products are dense on this path)"))
    from lmustream.stream.backend import default_backend_note
    rows.append(("detection backend", default_backend_note()))
    from lmustream import shipped
    for kind, names in (("models", shipped.shipped_models()), ("configs", shipped.shipped_configs())):
        folders = " and ".join(str(f) for f in shipped.shipped_folders(kind))
        rows.append((f"shipped {kind}", f"{', '.join(names)} ({folders})" if names else "none in this installation"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except Exception as e:  # sounddevice raises OSError without PortAudio
        return f"not available ({type(e).__name__}: {e})".splitlines()[0]
    version = getattr(module, "__version__", "unknown")
    if name == "soundfile":
        version += f" (libsndfile {module.__libsndfile_version__})"
    return version


def _default_conformance_dir() -> Path | None:
    candidates = []
    if os.environ.get("LMUSTREAM_SHARED"):
        candidates.append(Path(os.environ["LMUSTREAM_SHARED"]) / "conformance")
    candidates += [Path.cwd().parent / "shared" / "conformance",
                   Path(__file__).resolve().parents[2] / "shared" / "conformance"]
    return next((c for c in candidates if (c / "lmuformer").is_dir()), None)


def _cmd_selftest(args: argparse.Namespace) -> int:
    from lmustream.selftest import run_selftest

    conformance = Path(args.conformance) if args.conformance else _default_conformance_dir()
    if args.conformance and not (conformance / "lmuformer").is_dir():
        print(f"error: {conformance} has no lmuformer/ golden vectors", file=sys.stderr)
        return 2
    return run_selftest(conformance)


def _cmd_convert(args: argparse.Namespace) -> int:
    from lmustream.audio.features import FbankConfig
    from lmustream.data.labels import SPEECH_COMMANDS_V2_WORDS
    from lmustream.models import load_reference_checkpoint
    from lmustream.models.artifact import ModelArtifact, save_model

    if Path(args.out).suffix != ".safetensors":
        raise ConfigError(f"--out: a model file is a .safetensors file, got {args.out!r}"
                          + (" (lmustream export writes ONNX from the model file)" if args.out.endswith(".onnx") else ""))
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is not None and not all(labels):
        raise ConfigError(f"--labels {args.labels!r}: an empty label (a stray comma?)")
    model = load_reference_checkpoint(args.checkpoint, args.variant, theta=args.theta)
    n = model.config.n_classes
    if labels is None:
        labels = list(SPEECH_COMMANDS_V2_WORDS) if n == len(SPEECH_COMMANDS_V2_WORDS) else [f"class_{i}" for i in range(n)]
    artifact = ModelArtifact(model, labels, FbankConfig(),
                             {"source": f"converted from {Path(args.checkpoint).name} ({args.variant})"})
    save_model(args.out, artifact)
    print(f"wrote {args.out}: {args.variant}, {model.num_parameters():,} parameters, {n} classes")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model
    from lmustream.stream.backend import model_training_loss
    from lmustream.stream.detector import posterior_for_loss
    from lmustream.stream.onnx_export import export_onnx
    from lmustream.stream.step import StepLMUFormer

    artifact = load_model(resolve_model(args.model))
    meta = export_onnx(StepLMUFormer(artifact.model), args.onnx, artifact.labels, artifact.frontend,
                       audio_in=args.audio_in, chunk=args.chunk,
                       posterior=posterior_for_loss(model_training_loss(artifact)))
    kind = "audio in (160 samples per step)" if args.audio_in else "log-mel frames in"
    print(f"wrote {args.onnx}: {kind}, {args.chunk} step(s) per call, look-ahead {meta['lookahead_frames']} "
          f"frames, {len(meta['state'])} state tensors, {meta['posterior']} posteriors, opset 17")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    from lmustream.models.describe import describe_model, format_description

    descriptions = [describe_model(model) for model in args.models]  # every name checked before any output
    if args.json:
        for d in descriptions:
            print(json.dumps(d))
    else:
        print("\n\n".join(format_description(d) for d in descriptions))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lmustream.train.config import load_config
    from lmustream.train.trainer import TrainingInterrupted, train

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.out:
        overrides.append(f"out={args.out}")
    config = load_config(args.config, overrides)
    try:
        path = train(config, resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    from lmustream.models.artifact import read_header

    validated = read_header(path).get("extra", {}).get("validation_accuracy") is not None
    chosen = "best model" if validated else "model (last epoch)"
    print(f"{chosen}: {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model
    from lmustream.train.evaluate import evaluate_artifact, format_report, plot_confusion

    if args.early_exit:
        from lmustream.stream.early_exit_report import run_cli
        return run_cli(args)
    alone = [option for option, value, default in (("--csv", args.csv, None), ("--tune-split", args.tune_split, None),
                                                   ("--max-drop", args.max_drop, EARLY_EXIT_MAX_DROP),
                                                   ("--step-check", args.step_check, EARLY_EXIT_STEP_CHECK))
             if value != default]
    if alone:
        raise ConfigError(f"{', '.join(alone)} appl{'ies' if len(alone) == 1 else 'y'} only with --early-exit")
    from lmustream.data.sources import parse_label_map

    label_map = parse_label_map(args.label_map)  # before the model and the data: a typo fails at once
    artifact = load_model(resolve_model(args.model))
    result = evaluate_artifact(artifact, args.data, args.split, kind=args.kind, task=args.task,
                               pattern=args.pattern, label_map=label_map, cache_dir=args.cache_dir,
                               noise_dir=args.noise_dir)
    # The figures first: a plot that cannot be written must not lose them.
    print(json.dumps(result) if args.json else format_report(result), flush=True)
    if args.plot:
        plot_confusion(result, args.plot)
        if not args.json:
            print(f"confusion matrix plot: {args.plot}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if not getattr(args, "data_func", None):
        args.data_parser.print_help(sys.stderr)  # which tools there are, rather than one of them
        return 2
    return int(args.data_func(args) or 0)


def _cmd_data_windows(args: argparse.Namespace) -> int:
    from lmustream.data.windows import cut_windows

    result = cut_windows(args.inputs, args.out, label=args.label, seconds=args.seconds, hop_seconds=args.hop,
                         min_db=args.min_db, every=args.every, offset=args.offset, name=args.name)
    print(f"{result['clips']} clips from {result['recordings']} recordings in {result['folder']} "
          f"({result['skipped_without_speech']} without speech skipped"
          + (f"; {result['unreadable']} unreadable recordings skipped" if result["unreadable"] else "") + ")")
    return 0


def _cmd_data_pack(args: argparse.Namespace) -> int:
    from lmustream.data.pack import merge_train, pack_from_training_data, read_pack, write_pack
    from lmustream.train.config import load_config
    from lmustream.train.data import pack_source, prepare_data

    if Path(args.out).suffix != ".npz":  # before the features are computed, not after
        raise ConfigError(f"--out: a feature pack is a .npz file, got {args.out!r}")
    extras = [(extra, read_pack(extra)) for extra in args.add]
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    config = load_config(args.config, overrides)
    pack, clipped = pack_from_training_data(prepare_data(config, verbose=True), config.data.frames)
    pack.source = pack_source(config)
    for extra, added in extras:
        pack, dropped = merge_train(pack, added)
        if dropped:
            print(f"{extra}: dropped clips of labels not in the pack: "
                  + ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    path = write_pack(pack, args.out, compression=args.compression)
    counts = ", ".join(f"{k} {v}" for k, v in pack.counts().items())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(pack.labels)} labels; {counts}; "
          f"{clipped} feature values clipped to the pack's range")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmustream", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lmustream {lmustream.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="verb")

    info = verbs.add_parser("info", help="versions and C++ kernel status",
                            description="Print versions, whether the C++ kernel loaded, its SIMD level, and the shipped "
                                        "models and recipes.")
    info.set_defaults(func=_cmd_info)

    show = verbs.add_parser(
        "show", help="what a model file holds: words, architecture, cost, frontend, calibration, origin",
        description="Describe model files or shipped models without running them: the words they know, "
                    "architecture and look-ahead, parameters and MACs per frame, the frontend they expect, "
                    "how the detector reads their logits (sigmoid or softmax) and any calibrated thresholds, "
                    "and where they came from (training recipe, kept epoch and validation accuracy, "
                    "fine-tuning). --json prints one JSON object per model.")
    show.add_argument("models", nargs="+", metavar="MODEL", help="model files or shipped model names")
    show.add_argument("--json", action="store_true", help="one JSON object per model instead of text")
    show.set_defaults(func=_cmd_show)

    selftest = verbs.add_parser(
        "selftest", help="prove the numerics (and conformance with golden vectors, if given)",
        description="Checks that need nothing but the package: the Legendre memory's FFT path equals its "
                    "recurrence on the paper-size LMUFormer and spiking LMUFormer, the streaming log-mel "
                    "frontend equals the batch one, and the C++ kernel equals Python. With golden vectors "
                    "(--conformance, or ../shared/conformance when present) it also checks our models "
                    "against the LMUFormer authors' outputs and our frontend against torchaudio's. "
                    "Exit status 1 if any check fails.")
    selftest.add_argument("--conformance", metavar="DIR",
                          help="folder holding lmuformer/ and fbank/ golden vectors")
    selftest.set_defaults(func=_cmd_selftest)

    train = verbs.add_parser(
        "train", help="train a model",
        description="Train an LMUFormer or spiking LMUFormer from a YAML recipe (configs/*.yaml) with "
                    "key=value overrides anywhere on the line (e.g. epochs=20 optim.lr=1e-3 "
                    "model_overrides.causal=true). "
                    "Writes OUT/metrics.csv, OUT/checkpoint.pt (atomically, every checkpoint_every steps, "
                    "at each epoch end, and on Ctrl-C / SIGTERM) and OUT/model.safetensors (the best "
                    "model on the validation split, or with none, e.g. data.validation_speakers=0, the "
                    "model after the last epoch). Every value "
                    "is checked against its key's type and range, and device against this machine, before "
                    "any work starts. init_from=MODEL starts from another model's weights (init_from=null "
                    "init_new_labels=false clears a config's; init_new_labels=true lets it start a model of "
                    "other words, whose head rows start afresh); "
                    "distill.teacher=MODEL also learns a teacher's posteriors (distill.weight, "
                    "distill.temperature; distill.teacher=[M1,M2,...] learns an ensemble's averaged "
                    "posteriors); optim.ema_decay=0.999 validates and saves a moving average "
                    "of the weights. Several GPUs or processes: "
                    "torchrun --nproc_per_node=N -m lmustream train ...")
    train.add_argument("--config", help="YAML recipe, or the name of a shipped one (sc12-lmuformer, asc40-lmuformer, "
                                        "...: configs/NAME.yaml, also in an installed package; default: built-in "
                                        "defaults)")
    train.add_argument("--data", help="dataset path (overrides data.path)")
    train.add_argument("--out", help="run folder (overrides out)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    train.set_defaults(func=_cmd_train)

    ev = verbs.add_parser(
        "eval", help="evaluate a model on a dataset",
        description="Accuracy, per-class accuracy and confusion matrix of a model on a split of a "
                    "dataset (Speech Commands layout, labelled folders, CSV manifest or filename "
                    "pattern) or of a feature pack. With --early-exit: accuracy of the streaming output vs "
                    "input frames seen, "
                    "and each exit policy (running-mean posterior threshold, top-1 minus top-2 margin, "
                    "argmax stable for k outputs, stable + threshold) swept, with the operating point "
                    "that saves the most frames at an accuracy drop <= --max-drop; a decision on the "
                    "output for frame t counts the look-ahead frames up to t + D it waited for.")
    ev.add_argument("--model", required=True, help="model file or shipped model name")
    ev.add_argument("--data", required=True, help="dataset path, or a feature pack (.npz from `lmustream data pack`)")
    ev.add_argument("--split", default="test", choices=["train", "validation", "test", "all"],
                    help="split to evaluate (all: every clip, for data the model never trained on)")
    ev.add_argument("--kind", default="auto", choices=["auto", "speech_commands", "folders", "manifest", "pattern"],
                    help="dataset layout (default: detected; a folder with _unknown_/ or _silence_/ "
                         "subfolders is labelled folders named after the model's labels)")
    ev.add_argument("--task", choices=["35", "12"],
                    help="Speech Commands task (default: from the model's labels, 12 when they include _unknown_; "
                         "task 12 keeps every word the model knows, so a model taught new words by "
                         "lmustream finetune scores them as its own classes; with --kind folders, manifest or "
                         "pattern the data's own labels are used)")
    ev.add_argument("--noise-dir", help="task 12: background-noise folder to cut _silence_ clips from "
                                        "(default: the dataset's _background_noise_)")
    ev.add_argument("--pattern", help="filename pattern, e.g. '{label}_{speaker}_{index}.wav'")
    ev.add_argument("--label-map", help="e.g. 0=zero,1=one")
    ev.add_argument("--cache-dir", help="feature cache folder")
    ev.add_argument("--json", action="store_true", help="print one JSON object (accuracy, n, per_class, ...)")
    ev.add_argument("--plot", metavar="PNG", type=plot_file, help="also draw the confusion matrix into this PNG "
                                                  "(with --early-exit: accuracy vs frames and the policies' curves)")
    ev.add_argument("--early-exit", action="store_true",
                    help="accuracy vs frames seen and the exit policies' sweeps (see above)")
    ev.add_argument("--csv", metavar="F", type=output_file,
                    help="--early-exit: write accuracy vs frames seen to F and every policy setting to F's stem + "
                         "'-policies.csv'")
    ev.add_argument("--max-drop", type=float, default=EARLY_EXIT_MAX_DROP, metavar="X",
                    help="--early-exit: largest accuracy drop (absolute fraction) of the operating point "
                         "(default 0.005)")
    ev.add_argument("--tune-split", choices=["train", "validation", "test", "all"],
                    help="--early-exit: choose each policy's setting on this split and report it on --split "
                         "(default: chosen on --split itself)")
    ev.add_argument("--step-check", type=non_negative_int, default=EARLY_EXIT_STEP_CHECK, metavar="N",
                    help="--early-exit: also run the step form frame by frame on N clips and report its "
                         "difference from the parallel outputs the figures use (default 8, 0: skip)")
    ev.set_defaults(func=_cmd_eval)

    data = verbs.add_parser("data", help="dataset tools (synth, pack, windows)", description="Dataset tools.")
    data.set_defaults(func=_cmd_data, data_parser=data)
    data_verbs = data.add_subparsers(dest="data_verb", metavar="tool")
    try:
        from lmustream.data.synth import cli as synth_cli
    except ImportError:
        synth_cli = None
    if synth_cli is not None:
        synth = data_verbs.add_parser(
            "synth", help="synthetic keyword corpus from offline TTS voices",
            description="Speak a word list with offline TTS engines (espeak-ng, flite, festival, Piper and SVOX Pico, "
                        "each used when installed: --list-engines) "
                        "across their voices, with pitch, tempo, vocal-tract length, loudness and room "
                        "variation, into a Speech Commands-style corpus with speaker-disjoint split lists "
                        "and generated background noise. English by default; any other language "
                        "espeak-ng speaks with --language (its voices only).")
        synth_cli.add_arguments(synth)
        synth.set_defaults(data_func=synth_cli.run)
    pack = data_verbs.add_parser(
        "pack", help="precompute a dataset's features into one file for training elsewhere",
        description="Run the frontend over every clip of a dataset once (opened exactly as `lmustream "
                    "train` would open it from --config, --data and key=value overrides) and write the "
                    "splits' log-mel features, labels and background-noise log-mel to one compressed "
                    ".npz feature pack. `lmustream train --config SAME.yaml data.pack=PACK.npz` (or "
                    "--data PACK.npz) trains from it with no audio and no frontend work. --add merges further packs' training clips (only labels "
                    "the first pack has).")
    pack.add_argument("--config", help="YAML recipe whose data section opens the dataset")
    pack.add_argument("--data", help="dataset path (overrides data.path)")
    pack.add_argument("--out", required=True, type=output_file, help="the .npz pack to write")
    pack.add_argument("--add", action="append", default=[], metavar="PACK",
                      help="another pack whose train split is appended (repeatable)")
    from lmustream.data.pack import COMPRESSIONS

    pack.add_argument("--compression", choices=list(COMPRESSIONS), default="deflate",
                      help="deflate (default, fast) or lzma (about a sixth smaller, slower to write; "
                           "for packs copied to another machine)")
    pack.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    pack.set_defaults(data_func=_cmd_data_pack)

    windows = data_verbs.add_parser(
        "windows", help="labelled training clips cut from long recordings (running speech, false alarms)",
        description="Cut long recordings (running speech, a room's false alarms) into overlapping clips of "
                    "the training length, written as OUT/LABEL/*.wav: a labelled folder for `lmustream data "
                    "pack`, whose pack joins a training run through data.add_packs, so the model learns to "
                    "ignore such speech. Clips without speech (no 10 ms frame within --min-db of the "
                    "recording's loudest) are skipped. Files are taken in path order; --every N --offset K "
                    "keeps every N-th from the K-th, e.g. half a collection for training and the other "
                    "half for measuring false alarms (lmustream eval-stream --negatives).")
    windows.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="recordings, or folders searched for them")
    windows.add_argument("--out", required=True, help="output folder (clips go to OUT/LABEL/)")
    windows.add_argument("--label", default="_unknown_", help="the clips' label (default _unknown_)")
    windows.add_argument("--seconds", type=float, default=1.0, help="clip length (default 1.0)")
    windows.add_argument("--hop", type=float, default=0.5, help="seconds between clip starts (default 0.5)")
    windows.add_argument("--min-db", type=float, default=25.0,
                         help="keep clips with a frame within this many dB of the recording's loudest (default 25)")
    windows.add_argument("--every", type=int, default=1, help="keep every N-th recording (default 1: all)")
    windows.add_argument("--offset", type=int, default=0, help="the first recording kept (default 0)")
    windows.add_argument("--name", default="rec", help="clip name prefix (default rec); each collection cut into "
                                                       "the same --out needs its own, as clips are never overwritten")
    windows.set_defaults(data_func=_cmd_data_windows)

    convert = verbs.add_parser(
        "convert", help="LMUFormer-authors checkpoint -> lmustream model file",
        description="Read a state dict saved by the LMUFormer authors' code (torch.save of "
                    "model.state_dict(), read without executing pickled code) and write it as one "
                    "lmustream model file. Sizes are read off the tensors; theta must be given if it "
                    "is not 128 (it is checked against the stored A matrix).")
    convert.add_argument("checkpoint", help="the .pt / .pth state dict")
    convert.add_argument("--variant", required=True, choices=["lmuformer", "spiking_lmuformer"])
    convert.add_argument("--out", required=True, type=output_file, help="model file to write (.safetensors)")
    convert.add_argument("--labels", help="comma-separated class names in logit order "
                                          "(default: the 35 Speech Commands v2 words when there are 35 classes)")
    convert.add_argument("--theta", type=float, default=128.0, help="Legendre memory window, frames (default 128)")
    convert.set_defaults(func=_cmd_convert)

    export = verbs.add_parser(
        "export", help="step form -> ONNX graph with explicit state",
        description="Export the step form of a model (batch norms folded, one frame per step, explicit "
                    "state) as an ONNX graph, opset 17, dynamic batch (one row per stream). State tensors are "
                    "graph inputs state.NAME and outputs next.NAME; the graph's metadata (key 'lmustream') "
                    "lists them with the labels, frontend and look-ahead. Run it with "
                    "examples/onnx_stream.py (onnxruntime and numpy only).")
    export.add_argument("--model", required=True, help="model file, or the name of a shipped model")
    export.add_argument("--onnx", required=True, metavar="OUT", type=output_file, help="the .onnx file to write")
    export.add_argument("--audio-in", action="store_true",
                        help="take 160 raw 16 kHz samples per step and compute the log-mel inside the graph")
    export.add_argument("--chunk", type=positive_int, default=1, metavar="K",
                        help="steps (frames) per graph call (default 1, at most 128): the graph unrolls one "
                             "step per frame, so its size grows with K (K 128: about 77 MB)")
    export.set_defaults(func=_cmd_export)

    from lmustream import detect_cli
    detect_cli.add_verbs(verbs)

    from lmustream.adapters import cli as finetune_cli
    finetune = verbs.add_parser("finetune", help="teach a model new keywords from a few clips (AFLoRA, LoRA, VeRA, head or full)",
                                description=finetune_cli.DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune_cli.add_arguments(finetune)
    finetune.set_defaults(func=finetune_cli.run)
    return parser


def whole_number(rule: str, ok):
    """argparse type: an integer for which ``ok`` holds; ``rule`` words that for the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value
    return parse


positive_int = whole_number("a positive integer", lambda v: v >= 1)  # the verbs' shared value checks
non_negative_int = whole_number("an integer >= 0", lambda v: v >= 0)


def output_file(text: str) -> str:
    """argparse type: a file to write. A path that cannot be written (a folder at that name, a file where a
    folder must be, no permission) is refused before any work, not after it."""
    from lmustream.paths import check_writable

    try:
        check_writable(text)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e.strerror}") from None
    return text


def plot_file(text: str) -> str:
    """argparse type: an image file for matplotlib, in a format it writes (named by the suffix), checked
    here because matplotlib would refuse it only when the plot is drawn, at the end of the work."""
    text = output_file(text)
    try:
        from matplotlib.backend_bases import FigureCanvasBase  # here: only when a plot is asked for
    except ImportError:
        raise argparse.ArgumentTypeError("plots need matplotlib: pip install matplotlib") from None
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(text).suffix.lower()[1:]
    if suffix not in formats:
        # without a suffix matplotlib would add ".png" itself: the file would not be the one named
        raise argparse.ArgumentTypeError(f"{text!r}: the suffix names the image format, one of "
                                         f"{', '.join(formats)}")
    if suffix == "pgf":  # the one format matplotlib draws through an external program
        import shutil

        import matplotlib

        tex = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(tex) is None:
            raise argparse.ArgumentTypeError(f"{text!r}: pgf output needs {tex}, which is not installed")
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line read as one plain line each, not as Python source locations."""
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():  # the plain format is the command line's, not the caller's
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse fills a verb's key=value list from one run of words only and hands back any after a
    # later option (train --out r epochs=1 --data d seed=1); parse_intermixed_args refuses subparsers.
    if getattr(args, "overrides", None) is not None:
        args.overrides += [word for word in extras if not word.startswith("-")]
        extras = [word for word in extras if word.startswith("-")]
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except LmuStreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named cannot be written or read: no traceback for that
        name = e.filename2 or e.filename  # os.replace(tmp, target) names the target second
        if isinstance(e, FileExistsError) and name and os.path.isfile(name):  # mkdir met a file on the path
            print(f"error: {str(name)!r} is a file, not a folder", file=sys.stderr)
            return 2
        where = f": {name!r}" if name else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2

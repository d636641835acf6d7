"""What a model file holds, for people: ``lmustream show MODEL``.

Reads the header and the tensors' shapes only (no weights are loaded), so it answers for a file
the kernel would refuse too, as long as the header parses: the words it knows, its architecture
and cost, the frontend it expects, how the detector reads its logits, and where it came from
(training recipe, fine-tuning, calibration).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from lmustream.errors import CheckpointError


def describe_model(name_or_path: str | os.PathLike) -> dict:
    """A JSON-ready description of a model file or shipped model."""
    from lmustream.models.artifact import read_header
    from lmustream.models.lmuformer import LMUFormerConfig, macs_per_frame
    from lmustream.shipped import beside_model, resolve_model
    from lmustream.stream.backend import detector_defaults_in, training_loss_in
    from lmustream.stream.detector import posterior_for_loss

    name = os.fspath(name_or_path)
    path = resolve_model(name)
    header = read_header(path)
    config = LMUFormerConfig.from_dict(header["config"])
    extra = header.get("extra") if isinstance(header.get("extra"), dict) else {}
    card = beside_model(path, ".md")  # shipped models' cards lie beside them
    loss = training_loss_in(extra)
    detector = detector_defaults_in(extra, path)
    description = {
        "path": str(path),
        "shipped_name": name if path != Path(name) else None,  # resolved by name, not as a file
        "card": str(card) if card.is_file() else None,
        "bytes": path.stat().st_size,
        "format_version": header.get("format_version"),
        "architecture": {**config.to_dict(), "lookahead_frames": config.lookahead},
        "parameters": _parameter_count(path),
        "macs_per_frame": sum(macs_per_frame(config).values()),
        "labels": list(header["labels"]),
        "keywords": [label for label in header["labels"] if not label.startswith("_")],
        "frontend": header.get("frontend"),
        "training_loss": loss,
        "posterior": detector.get("posterior") if detector.get("posterior") not in (None, "auto")
        else posterior_for_loss(loss),
        "detector": detector,
    }
    if isinstance(extra.get("recipe"), dict):
        description["training"] = _training(extra)
    if isinstance(extra.get("finetune"), dict):
        description["finetune"] = extra["finetune"]
    return description


def _training(extra: dict) -> dict:
    recipe = extra["recipe"]
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    optim = recipe.get("optim") if isinstance(recipe.get("optim"), dict) else {}
    return {"model": recipe.get("model"), "data": data.get("path"), "kind": data.get("kind"), "task": data.get("task"),
            "epochs": recipe.get("epochs"), "kept_epoch": extra.get("epoch"),
            "validation_accuracy": extra.get("validation_accuracy"), "loss": optim.get("loss"),
            "init_from": recipe.get("init_from"), "seed": recipe.get("seed")}


def _parameter_count(path: Path) -> int:
    """Trainable parameters: every tensor but the batch norms' running statistics."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}
    except Exception as e:  # the header parsed, so this is a damaged tensor table
        raise CheckpointError(f"{path}: cannot read its tensor table: {e}") from e
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(shape) for key, shape in shapes.items() if key.rsplit(".", 1)[-1] not in statistics)


def format_description(d: dict) -> str:
    """``describe_model``'s result as aligned text lines."""
    a = d["architecture"]
    kind = "spiking LMUFormer" if a["spiking"] else "LMUFormer"
    embedding = (f"{a['embed_convs']} embedding convolutions of kernel {a['kernel_size']}, "
                 + ("causal" if a["causal"] else f"centred (look-ahead {a['lookahead_frames']} frames, "
                                                  f"{a['lookahead_frames'] * 10} ms)"))
    blocks = f"{a['depth']} block{'s' if a['depth'] != 1 else ''}"
    f = d["frontend"] or {}
    rows = [("model", d["shipped_name"] or d["path"]),
            ("file", f"{d['path']} ({d['bytes'] / 1e6:.1f} MB, format {d['format_version']})")]
    if d["card"]:
        rows.append(("model card", d["card"]))
    rows += [
        ("architecture", f"{kind}: dim {a['dim']}, {blocks}, Legendre memory {a['memory_size']} "
                         f"(theta {a['theta']:g} frames), {embedding}"),
        ("cost", f"{d['parameters']:,} parameters, {d['macs_per_frame']:,} MACs per 10 ms frame"),
        (f"labels ({len(d['labels'])})", ", ".join(d["labels"])),
        ("frontend", f"{f.get('sample_rate')} Hz, {f.get('n_mels')} mel bins, {f.get('frame_length_ms'):g} ms "
                     f"window, {f.get('frame_shift_ms'):g} ms hop; training clips of {a['frames']} frames"
         if f else "none recorded"),
        ("posterior", f"{d['posterior']} (trained with {d['training_loss'] or 'an unrecorded loss'})"),
    ]
    detector = d["detector"]
    thresholds = detector.get("thresholds")
    if thresholds:
        target = detector.get("target_fa_per_hour")
        rows.append(("calibration", ", ".join(f"{k} {v:.3g}" for k, v in thresholds.items())
                     + (f" (for {target:g} false alarms per hour)" if isinstance(target, (int, float)) else "")))
    else:
        rows.append(("calibration", "none: every keyword's threshold is the detector's default "
                                    "(`lmustream calibrate` sets per-keyword ones)"))
    t = d.get("training")
    if t:
        accuracy = t.get("validation_accuracy")
        kept = f"kept epoch {t['kept_epoch']}" if t.get("kept_epoch") is not None else "the last epoch"
        task = f" (task {t['task']})" if t.get("task") and t.get("kind") in ("auto", "speech_commands") \
            and not str(t.get("data")).endswith(".csv") else ""
        rows.append(("trained", f"{t.get('epochs')} epochs on {t.get('data')}{task}, "
                                f"{t.get('loss')} loss, seed {t.get('seed')}; {kept}"
                     + (f", validation accuracy {accuracy:.2%}" if isinstance(accuracy, (int, float)) else "")
                     + (f"; started from {t['init_from']}" if t.get("init_from") else "")))
    ft = d.get("finetune")
    if ft:
        words = ", ".join(ft.get("new_words") or []) or "none"
        rows.append(("fine-tuned", f"{ft.get('method')} from {ft.get('base')}: new words {words} "
                                   f"({ft.get('enrollment_clips')} enrollment clips, {ft.get('epochs')} epochs)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

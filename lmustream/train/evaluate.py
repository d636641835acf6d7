"""Accuracy, per-class accuracy and the confusion matrix of a model file on a dataset split."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lmustream.errors import ConfigError
from lmustream.models.artifact import ModelArtifact


def add_to_confusion(confusion: torch.Tensor, y: torch.Tensor, pred: torch.Tensor) -> None:
    """Count (true, predicted) pairs into ``confusion [K, K]`` in place."""
    K = confusion.shape[0]
    confusion += torch.bincount(y * K + pred, minlength=K * K).view(K, K)


def evaluate_artifact(artifact: ModelArtifact, data_path: str, split: str = "test", *, kind: str = "auto",
                      task: str | None = None, pattern: str | None = None, label_map: dict | None = None,
                      frames: int | None = None, cache_dir: str | None = None, seed: int = 0,
                      batch_size: int = 256, noise_dir: str | None = None) -> dict:
    """Evaluate ``artifact`` on ``split`` of the dataset at ``data_path``; returns a JSON-ready dict.

    ``data_path`` may also be a feature pack (``lmustream data pack``): its clips, labels and splits are
    fixed when it is made, so the dataset options must be left at their defaults.
    """
    from lmustream.data.feature_dataset import FeatureDataset
    from lmustream.data.pack import is_pack

    if is_pack(data_path):
        given = {name: value for name, value in (("--kind", kind != "auto" and kind), ("--task", task),
                                                 ("--pattern", pattern), ("--label-map", label_map),
                                                 ("--noise-dir", noise_dir)) if value}
        if given:
            raise ConfigError(f"{data_path} is a feature pack: its clips, labels and splits were fixed when it "
                              f"was made, so {', '.join(given)} cannot apply")
        return _evaluate_pack(artifact, data_path, split, batch_size)
    clips, skipped = eval_clips(artifact, data_path, split, kind=kind, task=task, pattern=pattern,
                                label_map=label_map, seed=seed, noise_dir=noise_dir)
    frames = frames or artifact.model.config.frames
    dataset = FeatureDataset(clips, artifact.labels, artifact.frontend, frames=frames, cache_dir=cache_dir)
    result = _score(artifact, readable_batches(dataset, batch_size, skipped), split)
    result["skipped"] = len(skipped)
    return result


def eval_clips(artifact: ModelArtifact, data_path: str, split: str = "test", *, kind: str = "auto",
               task: str | None = None, pattern: str | None = None, label_map: dict | None = None, seed: int = 0,
               noise_dir: str | None = None) -> tuple[list, list]:
    """``(clips, skipped files)`` of ``split`` ("all": every clip) of the dataset at ``data_path``, as
    ``lmustream eval`` scores them: the model's own speaker split when it was trained on this data.

    ConfigError when the split is empty or holds labels the model lacks.
    """
    from lmustream.data.datasets import detect_kind, open_dataset
    from lmustream.data.labels import SPEECH_COMMANDS_12
    from lmustream.data.sources import SILENCE_LABEL, UNKNOWN_LABEL
    from lmustream.data.splits import SplitWarning

    split_args = _recipe_split(artifact, data_path)
    if split_args:  # the data the model was trained on: reproduce its speaker split exactly
        _check_recipe_reading(split_args, data_path, kind, pattern, label_map)
        kind, pattern = split_args.pop("kind"), split_args.pop("pattern") or pattern
        label_map = split_args.pop("label_map") or label_map
    if kind == "auto" and (Path(data_path).is_file() or pattern is not None):
        kind = detect_kind(data_path, pattern=pattern)  # a manifest or a file-name pattern: never Speech Commands
    if kind == "auto" and _names_catch_all_classes(data_path):
        # Folders named _unknown_ / _silence_ are classes, which Speech Commands' word folders never are
        # (there a leading "_" marks _background_noise_): read them as labelled folders, not skipped.
        kind = "folders"
    if task is None:
        # A 12-class model reads Speech Commands as the 12-class task; data in another layout
        # (labelled folders, a manifest, a pattern) already names the model's own labels.
        sc_layout = kind in ("auto", "speech_commands")
        task = "12" if "_unknown_" in artifact.labels and sc_layout else "35"
    keywords = None
    if str(task) == "12" and set(artifact.labels) - set(SPEECH_COMMANDS_12):
        # A 12-class model taught more words (lmustream finetune): all its words are keywords, so a
        # folder of its new words is not read as _unknown_.
        keywords = [label for label in artifact.labels if label not in (UNKNOWN_LABEL, SILENCE_LABEL)]
    if noise_dir is not None:
        if str(task) != "12":
            raise ConfigError(f"--noise-dir cuts the 12-class task's _silence_ clips; this evaluation reads the "
                              f"{task}-word task, which has none")
        split_args["noise_dir"] = noise_dir
    elif str(task) != "12":
        split_args.pop("noise_dir", None)
    if split == "all":  # every clip is scored: no speaker needs holding out, however few there are
        split_args.update(validation_speakers=None, test_speakers=None, validation_fraction=0.0, test_fraction=0.0)
    with warnings.catch_warnings():
        if split == "all":  # every clip is scored: which classes a split lacks does not matter
            warnings.simplefilter("ignore", SplitWarning)
        index = open_dataset(data_path, kind=kind, task=task, pattern=pattern, label_map=label_map,
                             seed=split_args.pop("seed", seed), complete=False, keywords=keywords, **split_args)
    clips = [c for part in index.splits.values() for c in part] if split == "all" else index.splits.get(split) or []
    if not clips:
        hint = "; --split all scores every clip" if split != "all" else ""
        raise ConfigError(f"{data_path}: split {split!r} is empty (splits: "
                          f"{', '.join(f'{k}={len(v)}' for k, v in index.splits.items())}){hint}")
    missing = sorted({c.label for c in clips} - set(artifact.labels))
    if missing:
        raise ConfigError(f"labels in the data but not in the model: {', '.join(missing)} "
                          f"(model labels: {', '.join(artifact.labels)})")
    return clips, list(index.skipped)


def readable_batches(dataset, batch_size: int, skipped: list):
    """Batches of the clips whose audio loads; each one that fails is warned about, appended to ``skipped``
    and left out: a replacement clip (as training serves) would score one recording twice."""
    from lmustream.data.clips import SkippedFileWarning
    from lmustream.errors import AudioError

    xs, ys = [], []
    for i, clip in enumerate(dataset.clips):
        try:
            features, _ = dataset.features(i)
        except AudioError as e:
            skipped.append((clip.describe(), str(e)))
            said = str(e) if str(clip.path) in str(e) else f"{clip.describe()}: {e}"
            warnings.warn(f"skipping {said}", SkippedFileWarning, stacklevel=2)
            continue
        xs.append(torch.from_numpy(features))
        ys.append(dataset.targets[i])
        if len(xs) == batch_size:
            yield torch.stack(xs), torch.tensor(ys)
            xs, ys = [], []
    if xs:
        yield torch.stack(xs), torch.tensor(ys)


def _check_recipe_reading(recipe: dict, data_path: str, kind: str, pattern, label_map) -> None:
    """ConfigError when --kind, --pattern or --label-map would read the model's own training data otherwise
    than its recipe did: the recipe's reading is what reproduces its held-out split."""
    from lmustream.data.datasets import detect_kind

    recipe_kind = recipe["kind"]
    if kind != "auto" and recipe_kind == "auto":
        recipe_kind = detect_kind(data_path, pattern=recipe["pattern"])
    given = {"--kind": (kind if kind != "auto" else None, recipe_kind),
             "--pattern": (pattern, recipe["pattern"]),
             "--label-map": (label_map, recipe["label_map"])}
    conflicts = [f"{option} {ours!r} (the recipe's: {theirs!r})" for option, (ours, theirs) in given.items()
                 if ours is not None and ours != theirs]
    if conflicts:
        raise ConfigError(f"{data_path} is the data this model was trained on, read as its recipe reads it "
                          f"(which reproduces its validation and test speakers); {'; '.join(conflicts)} "
                          f"would read it otherwise: leave them out")


def _evaluate_pack(artifact: ModelArtifact, path: str, split: str, batch_size: int) -> dict:
    """Accuracy on a feature pack's split: its 8-bit features as the trainer reads them."""
    from lmustream.data.pack import read_pack

    return _score(artifact, pack_batches(artifact, read_pack(path), path, split, batch_size), split)


def pack_batches(artifact: ModelArtifact, pack, path: str, split: str, batch_size: int):
    """``(features, labels as the model's class indices)`` batches of ``split`` of ``pack`` (read from ``path``).

    ConfigError, before any batch, when the pack does not fit the model: other frontend settings,
    another clip length, labels the model lacks, or an empty split ("all": every split).
    """
    import numpy as np

    from lmustream.data.pack import check_frontend, dequantize

    check_frontend(pack, artifact.frontend, path, "the model's")
    if pack.frames != artifact.model.config.frames:
        raise ConfigError(f"{path}: the pack's clips are {pack.frames} frames long; the model was trained on "
                          f"{artifact.model.config.frames}")
    names = list(pack.splits) if split == "all" else [split]
    parts = [pack.splits[name] for name in names if name in pack.splits and len(pack.splits[name][1])]
    if not parts:
        raise ConfigError(f"{path}: split {split!r} is empty (splits: "
                          f"{', '.join(f'{k}={len(v[1])}' for k, v in pack.splits.items())})")
    codes = np.concatenate([c for c, _ in parts])
    pack_labels = np.concatenate([y for _, y in parts])
    missing = sorted({pack.labels[i] for i in np.unique(pack_labels)} - set(artifact.labels))
    if missing:
        raise ConfigError(f"labels in the pack but not in the model: {', '.join(missing)} "
                          f"(model labels: {', '.join(artifact.labels)})")
    to_model = torch.tensor([artifact.labels.index(lab) if lab in artifact.labels else -1 for lab in pack.labels])
    y = to_model[torch.from_numpy(pack_labels)]
    # Checked above, dequantized lazily below: one batch of float32 features in memory at a time.
    return ((torch.from_numpy(dequantize(codes[i:i + batch_size])), y[i:i + batch_size])
            for i in range(0, len(y), batch_size))


def _score(artifact: ModelArtifact, batches, split: str) -> dict:
    """Accuracy, per-class accuracy and confusion of ``artifact`` over ``(features, labels)`` batches."""
    model = artifact.model.eval()
    device = next(model.parameters()).device
    K = len(artifact.labels)
    confusion = torch.zeros(K, K, dtype=torch.long)
    with torch.no_grad():
        for x, y in batches:
            pred = model(torch.as_tensor(x).float().to(device)).argmax(1).cpu()
            add_to_confusion(confusion, torch.as_tensor(y), pred)
    n = int(confusion.sum())
    if n == 0:
        raise ConfigError(f"no clip of the {split} split could be read (each was warned about above)")
    per_class = {}
    for i, label in enumerate(artifact.labels):
        total = int(confusion[i].sum())
        if total:
            per_class[label] = {"accuracy": float(confusion[i, i]) / total, "n": total}
    return {"accuracy": float(confusion.diag().sum()) / n, "n": n, "split": split, "per_class": per_class,
            "labels": list(artifact.labels), "confusion": confusion.tolist()}


def _names_catch_all_classes(data_path: str) -> bool:
    """Whether the folder ``data_path`` has an ``_unknown_`` or ``_silence_`` subfolder."""
    from lmustream.data.sources import SILENCE_LABEL, UNKNOWN_LABEL

    return any((Path(data_path) / name).is_dir() for name in (UNKNOWN_LABEL, SILENCE_LABEL))


def _recipe_split(artifact: ModelArtifact, data_path: str) -> dict:
    """The split settings stored in the model's training recipe, if it was trained on ``data_path``."""
    recipe = artifact.extra.get("recipe") or {}
    data = recipe.get("data") or {}
    if not data.get("path") or Path(data["path"]).resolve() != Path(data_path).resolve():
        return {}
    split = {"kind": data.get("kind", "auto"), "pattern": data.get("pattern"), "label_map": data.get("label_map"),
             "validation_speakers": data.get("validation_speakers"), "test_speakers": data.get("test_speakers"),
             "validation_fraction": data.get("validation_fraction", 0.1),
             "test_fraction": data.get("test_fraction", 0.1), "seed": recipe.get("seed", 0)}
    # Speech Commands lists the recipe ignored (split by speaker instead) must stay ignored: its own
    # test speakers are not the lists', and the lists' test clips may be clips it trained on.
    if data.get("split_lists") is not None:
        split["split_lists"] = data["split_lists"]
    if data.get("silence_dir"):  # where its _silence_ clips were cut from
        split["noise_dir"] = data["silence_dir"]
    return split


def format_report(result: dict) -> str:
    skipped = result.get("skipped", 0)
    lines = [f"accuracy {result['accuracy']:.4f} on {result['n']} clips ({result['split']} split)"
             + (f"; {skipped} unreadable clip(s) skipped" if skipped else ""), "",
             f"{'class':<16}{'n':>6}{'accuracy':>10}"]
    for label, row in result["per_class"].items():
        lines.append(f"{label:<16}{row['n']:>6}{row['accuracy']:>10.3f}")
    confusion = result["confusion"]
    K = len(result["labels"])
    # Rows: the classes in the data; columns: those and every class predicted, so that each row sums to its n.
    rows = [i for i, lab in enumerate(result["labels"]) if lab in result["per_class"]]
    cols = [j for j in range(K) if j in rows or any(confusion[i][j] for i in range(K))]
    heads = [str(rows.index(j)) if j in rows else result["labels"][j] for j in cols]
    widths = [max(5, len(head) + 1) for head in heads]
    width = max(4, max(len(result["labels"][i]) for i in rows) if rows else 4)
    lines += ["", "confusion (rows: true, columns: predicted, numbered as the rows)",
              " " * width + "".join(f"{head:>{w}}" for head, w in zip(heads, widths))]
    for i in rows:
        lines.append(f"{result['labels'][i]:<{width}}" + "".join(f"{confusion[i][j]:>{w}}" for j, w in zip(cols, widths)))
    if len(rows) != len(cols):
        lines.append("(named columns: predicted classes with no clip in the data)")
    return "\n".join(lines)


def plot_confusion(result: dict, path: str | Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("--plot needs matplotlib: pip install matplotlib") from e
    labels = result["labels"]
    cm = torch.tensor(result["confusion"], dtype=torch.float)
    cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.3 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.4f} (n={result['n']})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

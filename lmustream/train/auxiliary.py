"""Auxiliary classes: another task's recordings trained beside this task's, dropped from the saved model.

A model trained on synthetic voices meets real voices only at test time. Real recordings of other
words (another data set, another language) can still teach its shared layers what real speakers,
microphones and rooms sound like: their clips train as extra classes, named ``<pack>:<label>`` so
that they never merge with this task's labels, and the head rows of those classes are dropped from
the deployed model. sc12-lmuformer learnt this way from the 7,200 real Arabic Speech Commands clips.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lmustream.errors import ConfigError

SEPARATOR = ":"
FULL_MODEL_NAME = "model+auxiliary.safetensors"  # beside model.safetensors: every class, for init_from


def auxiliary_name(path) -> str:
    """The prefix of a pack's classes: its file name without ``.npz`` (``asc40.npz`` -> ``asc40:open``)."""
    return Path(path).name.removesuffix(".npz")


def add_auxiliary(base, packs: list, frontend) -> tuple[object, list[str]]:
    """``base`` (a FeaturePack) with every clip of every pack in ``packs`` appended to its train split.

    Each pack's labels become new classes ``<name>:<label>`` after the base's. Returns the merged pack
    and the auxiliary labels in order. Packs must hold features made as this run's (``frontend``)
    and clips of the base's length.
    """
    from lmustream.data.pack import check_frontend, merge_train, read_pack

    names = [auxiliary_name(p) for p in packs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"data.auxiliary_packs: two packs are named {repeated[0]!r}; their classes would be "
                          f"indistinguishable ({repeated[0]}:<label>): rename one file")
    added = []
    for path, name in zip(packs, names):
        extra = read_pack(path)
        check_frontend(extra, frontend, path, "this run uses")
        if extra.frames != base.frames:
            raise ConfigError(f"data.auxiliary_packs: {path} holds {extra.frames}-frame clips, the training data "
                              f"{base.frames}-frame clips")
        labels = [f"{name}{SEPARATOR}{label}" for label in extra.labels]
        clash = sorted(set(labels) & set(base.labels))
        if clash:
            raise ConfigError(f"data.auxiliary_packs: {path}: the training data already has a class {clash[0]!r}")
        # Every split: the clips teach the shared layers, and none of them is this task's to validate on.
        codes = np.concatenate([c for c, _ in extra.splits.values()])
        y = np.concatenate([np.asarray(t, np.int64) for _, t in extra.splits.values()])
        relabelled = dataclasses.replace(extra, labels=labels, splits={"train": (codes, y)}, noise=None)
        base, _ = merge_train(dataclasses.replace(base, labels=list(base.labels) + labels), relabelled)
        added += labels
    return base, added


def task_model(model, n_task: int):
    """A copy of ``model`` whose head keeps only its first ``n_task`` classes (the task's own), in eval mode."""
    import torch

    from lmustream.models import LMUFormer

    weights = dict(model.state_dict())
    for key in ("head.weight", "head.bias"):
        weights[key] = weights[key][:n_task]
    device = next(model.parameters()).device
    trimmed = LMUFormer(dataclasses.replace(model.config, n_classes=n_task)).to(device)
    with torch.no_grad():
        trimmed.load_state_dict(weights)
    return trimmed.eval()

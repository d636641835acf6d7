"""From a DataConfig to tensors the training loop indexes: splits, labels, background noise."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import ConfigError
from lmustream.train.config import DataConfig, TrainConfig

NOISE_EXTENSIONS = (".wav", ".flac", ".ogg")


class FeatureTensorSet(torch.utils.data.Dataset):
    """All clips of a split as one in-memory float16 tensor ``[n, frames, n_mels]`` plus labels.

    Built once from a feature dataset (whose on-disk cache makes later runs fast); batches are
    gathered by index with no per-clip Python work, which keeps small models GPU-bound.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features = features
        self.labels = labels

    @classmethod
    def from_dataset(cls, dataset, desc: str, progress: bool) -> "FeatureTensorSet":
        n = len(dataset)
        if n == 0:
            raise ConfigError(f"the {desc} split is empty")
        first, _ = dataset[0]
        features = torch.empty((n, *np.shape(first)), dtype=torch.float16)
        labels = torch.empty(n, dtype=torch.long)
        indices = range(n)
        if progress:
            from tqdm import tqdm
            indices = tqdm(indices, desc=f"features ({desc})", leave=False)
        for i in indices:
            x, y = dataset[i]
            features[i] = torch.as_tensor(x)
            labels[i] = int(y)
        return cls(features, labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.features[i].float(), self.labels[i]

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Clips ``idx`` as float32 features on ``device`` (sent as float16: half the copy) and labels."""
        return self.features[idx].to(device).float(), self.labels[idx].to(device)


@dataclass
class TrainingData:
    labels: list[str]
    train: FeatureTensorSet
    validation: FeatureTensorSet | None  # None: no held-out split was asked for (the last epoch is kept)
    test: FeatureTensorSet | None
    frontend: FbankConfig
    noise: torch.Tensor | None  # unnormalized log-mel of background noise, [T, n_mels]
    summary: str = ""
    auxiliary_labels: list = dataclasses.field(default_factory=list)  # the last classes of ``labels``: see train.auxiliary

    @property
    def task_labels(self) -> list[str]:
        """The classes the saved model keeps: every label but the auxiliary ones."""
        return list(self.labels)[:len(self.labels) - len(self.auxiliary_labels)]


def noise_recordings(folders: list[Path]) -> list[Path]:
    """The noise recordings named by ``folders`` (folders of recordings, or recordings themselves).

    ConfigError for a path that does not exist, or a folder or file that is no recording: a typo there would
    otherwise train or fine-tune without noise, unnoticed.
    """
    found = []
    for folder in map(Path, folders):
        if folder.is_file() and folder.suffix.lower() in NOISE_EXTENSIONS:
            found.append(folder)
            continue
        if not folder.is_dir():
            raise ConfigError(f"noise {str(folder)!r}: no such folder" if not folder.exists() else
                              f"noise {str(folder)!r}: not a folder or a {'/'.join(NOISE_EXTENSIONS)} recording")
        inside = [path for path in sorted(folder.iterdir()) if path.suffix.lower() in NOISE_EXTENSIONS]
        if not inside:
            raise ConfigError(f"noise folder {str(folder)!r} holds no {'/'.join(NOISE_EXTENSIONS)} recordings")
        found += inside
    return found


def noise_logmel(folders: list[Path], frontend: FbankConfig) -> torch.Tensor | None:
    """Log-mel of every recording of :func:`noise_recordings`, concatenated over time, or None if none."""
    from lmustream.audio.features import fbank
    from lmustream.audio.io import load_audio

    pieces = [fbank(torch.from_numpy(load_audio(path, frontend.sample_rate)), frontend)
              for path in noise_recordings(folders)]
    return torch.cat(pieces) if pieces else None


def prepare_data(config: TrainConfig, verbose: bool = True, frontend: FbankConfig | None = None,
                 progress: bool | None = None) -> TrainingData:
    """The run's data; ``verbose`` prints its summary, ``progress`` (default: ``verbose``) draws progress bars."""
    from lmustream.data.datasets import detect_kind, open_dataset
    from lmustream.data.feature_dataset import FeatureDataset

    d = config.data
    progress = verbose if progress is None else progress
    frontend = frontend or FbankConfig()
    from lmustream.data.pack import is_pack

    if d.pack:  # a pack carries the features, labels and noise: it needs no audio beside it
        return training_data_from_pack(d.pack, config, frontend, verbose, expect_source=True)
    if not d.path:
        raise ConfigError("no training data: set data.path or data.pack in the config, or pass --data")
    if is_pack(d.path):
        return training_data_from_pack(d.path, config, frontend, verbose)
    for key in ("add_packs", "auxiliary_packs"):
        if getattr(d, key):
            raise ConfigError(f"data.{key} needs a feature pack as data.pack or data.path (lmustream data pack)")
    kind = detect_kind(d.path, task=d.task, pattern=d.pattern) if d.kind == "auto" else d.kind
    if d.silence_dir is not None and kind != "speech_commands":  # open_dataset would call it noise_dir
        raise ConfigError(f"data.silence_dir applies to Speech Commands data only (task 12 cuts its _silence_ "
                          f"clips from it), not to {kind!r} data; remove it")
    index = open_dataset(d.path, kind=d.kind, task=d.task, pattern=d.pattern, label_map=d.label_map,
                         split_lists=d.split_lists, validation_speakers=d.validation_speakers, test_speakers=d.test_speakers,
                         validation_fraction=d.validation_fraction, test_fraction=d.test_fraction,
                         seed=config.seed, noise_dir=d.silence_dir)
    labels = list(index.labels)
    splits = {name: cap_classes(clips, d.class_caps, seed=config.seed) for name, clips in index.splits.items()}

    # before the features: a noise folder that cannot serve must not cost their computation first
    noise_dirs = [Path(p) for p in d.noise_dirs]
    if (Path(d.path) / "_background_noise_").is_dir():
        noise_dirs.append(Path(d.path) / "_background_noise_")
    noise = noise_logmel(noise_dirs, frontend) if config.augment.noise_prob > 0 else None

    def split(name):
        clips = splits.get(name) or []
        if not clips:
            return None
        ds = FeatureDataset(clips, labels, frontend, frames=d.frames, cache_dir=d.cache_dir)
        return FeatureTensorSet.from_dataset(ds, name, progress)

    train, validation, test = split("train"), split("validation"), split("test")
    if train is None:
        raise ConfigError(f"{d.path}: the train split is empty")
    summary = index.summary() if hasattr(index, "summary") else ""
    if verbose and summary:
        print(summary)
    return TrainingData(labels, train, validation, test, frontend, noise, summary)


def pack_source(config: TrainConfig) -> dict:
    """What a pack made from ``config`` holds: its data section and seed, minus transport-only fields."""
    source = dataclasses.asdict(config.data)
    for key in ("path", "cache_dir", "num_workers", "pack", "add_packs", "auxiliary_packs", "noise_dirs", "silence_dir"):
        source.pop(key)
    source["seed"] = config.seed
    source["dataset"] = Path(config.data.path).name
    return source


def training_data_from_pack(path, config: TrainConfig, frontend: FbankConfig, verbose: bool,
                            expect_source: bool = False) -> TrainingData:
    """TrainingData from a feature pack (``lmustream data pack``), checked against the run's frontend.

    With ``expect_source`` (the pack stands in for ``data.path``), the pack must have been made
    from a data section that splits and labels the data the same way as this run's.
    """
    from lmustream.data.pack import check_frontend, merge_train, read_pack

    pack = read_pack(path)
    if expect_source:
        if pack.source is None:
            raise ConfigError(f"{path} does not record the data settings it was made from, so data.pack cannot "
                              f"check them against this run's: remake it with lmustream data pack, or pass it as "
                              f"--data {path} to train on it as it is")
        made_from, wanted = _json_roundtrip(pack.source), _json_roundtrip(pack_source(config))
        if not config.data.path:  # the pack alone: there is no dataset folder to compare its name with
            made_from.pop("dataset", None)
            wanted.pop("dataset")
        # A data setting added after the pack was made was at its default then.
        defaults = _json_roundtrip(dataclasses.asdict(DataConfig()))
        made_from = {**{k: v for k, v in defaults.items() if k in wanted}, **made_from}
        if made_from != wanted:
            differ = sorted(k for k in set(made_from) | set(wanted) if made_from.get(k) != wanted.get(k))
            raise ConfigError(f"{path} was made from other data settings than this run's ("
                              + "; ".join(f"{k} {made_from.get(k)!r} there, {wanted.get(k)!r} here" for k in differ)
                              + "): train with the config it was made with, or remake it with lmustream data pack")
    auxiliary = []
    if config.data.auxiliary_packs:
        from lmustream.train.auxiliary import add_auxiliary

        pack, auxiliary = add_auxiliary(pack, list(config.data.auxiliary_packs), frontend)
        if verbose:
            print(f"auxiliary classes (trained, then left out of model.safetensors): {len(auxiliary)} from "
                  f"{', '.join(str(p) for p in config.data.auxiliary_packs)}")
    for extra in config.data.add_packs:
        pack, dropped = merge_train(pack, read_pack(extra))
        if dropped and verbose:
            print(f"{extra}: left out clips of labels {path} lacks: "
                  + ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    check_frontend(pack, frontend, path, "this run uses")
    if pack.frames != config.data.frames:
        raise ConfigError(f"{path}: the pack holds {pack.frames}-frame clips but data.frames is {config.data.frames}")

    def split(name):
        if name not in pack.splits or len(pack.splits[name][1]) == 0:
            return None
        codes, y = pack.splits[name]
        return FeatureTensorSet(torch.from_numpy(pack.features(name)).to(torch.float16), torch.from_numpy(y))

    train, validation, test = split("train"), split("validation"), split("test")
    if train is None:
        raise ConfigError(f"{path}: the pack's train split is empty")
    noise = None
    if pack.noise is not None and config.augment.noise_prob > 0:
        noise = torch.from_numpy(pack.noise.astype(np.float32))
    summary = pack.summary or f"{path}: " + ", ".join(f"{k} {v}" for k, v in pack.counts().items())
    if verbose:
        print(summary)
    return TrainingData(list(pack.labels), train, validation, test, frontend, noise, summary, auxiliary)


def _json_roundtrip(value):
    return json.loads(json.dumps(value))


def cap_classes(clips: list, caps: dict, seed: int = 0) -> list:
    """``clips`` with at most ``caps[label]`` clips of each capped label (a seeded subset, order kept).

    A cap is a count (``2000``) or ``"Kx"``: K times the mean size of the other classes present.
    Speech Commands' 12-class task folds 25 words into ``_unknown_``; uncapped, that class
    outnumbers each keyword 25 to 1 and the model learns to answer it.
    """
    if not caps:
        return clips
    from collections import Counter

    counts = Counter(c.label for c in clips)
    keep = set(range(len(clips)))
    for label, cap in caps.items():
        value, relative = parse_class_cap(label, cap)
        if relative:
            others = [n for other, n in counts.items() if other != label]
            value = max(1, round(value * sum(others) / len(others))) if others else counts[label]
        members = [i for i, c in enumerate(clips) if c.label == label]
        if len(members) > value:
            rng = np.random.default_rng([seed, zlib_crc(label)])
            keep -= set(rng.choice(members, len(members) - int(value), replace=False).tolist())
    return [c for i, c in enumerate(clips) if i in keep]


def parse_class_cap(label: str, cap) -> tuple[float, bool]:
    """``(value, relative)`` of one of :func:`cap_classes`' caps: a count, or K of "Kx"; ConfigError otherwise."""
    text = str(cap).strip()
    relative = text.endswith("x")
    try:
        value = float(text[:-1]) if relative else int(text)
    except ValueError:
        value = -1
    if not 0 < value < float("inf"):  # also NaN ("nanx"), which every comparison fails
        raise ConfigError(f"data.class_caps: {label!r}: expected a count (2000) or a ratio (3x), got {cap!r}")
    return value, relative


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))

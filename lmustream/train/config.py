"""Training configuration: one YAML file per recipe (configs/), overridable with ``key=value``.

Sections mirror the pieces they configure; every field documents its unit and default.
Unknown keys are errors (a misspelt key must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lmustream.errors import ConfigError
from lmustream.ranges import check_pair, check_range, is_number
from lmustream.shipped import resolve_config


@dataclass
class DataConfig:
    path: str = ""  # dataset: Speech Commands folder, labelled folders, a CSV manifest, or a pattern folder
    kind: str = "auto"  # auto | speech_commands | folders | manifest | pattern
    task: str = "35"  # Speech Commands task: "35" words or "12" classes
    pattern: str | None = None  # filename pattern, e.g. "{label}_{speaker}_{index}.wav"
    label_map: dict | str | None = None  # e.g. {"0": "zero"} for digit file names (or "0=zero,1=one")
    split_lists: bool | None = None  # Speech Commands validation/testing lists: None = when present, true = required, false = ignored
    validation_speakers: list | int | None = None  # held-out speaker ids, or how many to hold out (by seed)
    test_speakers: list | int | None = None
    validation_fraction: float = 0.1  # of speakers, when no official lists
    test_fraction: float = 0.1
    frames: int = 128  # clip length in frames after pad/crop (1 s = 98 frames, padded to 128)
    cache_dir: str | None = None  # feature cache (default: ~/.cache/lmustream/features)
    noise_dirs: list = field(default_factory=list)  # extra background-noise folders for augmentation
    silence_dir: str | None = None  # task 12: recordings to cut _silence_ clips from (default: the dataset's _background_noise_)
    num_workers: int = 0  # DataLoader workers
    class_caps: dict = field(default_factory=dict)  # per split at most N clips of a label, or "Kx" = K x the mean other class
    pack: str | None = None  # feature pack made from this data section (lmustream data pack): read instead of the audio
    add_packs: list = field(default_factory=list)  # feature packs whose train clips join the training split
    # Feature packs of other tasks (other words, any language) whose clips all train as extra classes
    # ('<pack name>:<label>'): more real voices for the shared layers. The saved model keeps this
    # task's labels only; model+auxiliary.safetensors keeps every class (init_from of a next stage).
    auxiliary_packs: list = field(default_factory=list)


@dataclass
class AugmentConfig:
    enabled: bool = True  # master switch (train split only, always)
    mixup_rate: float = 0.6  # fraction of batches mixed (paper recipe)
    mixup_alpha: float = 10.0  # lambda ~ Beta(alpha, alpha)
    freq_mask: int = 48  # SpecAugment: max mel bins masked
    time_mask: int = 48  # SpecAugment: max frames masked
    time_shift: int = 10  # random roll, +- frames
    noise_prob: float = 0.8  # probability of mixing background noise into a clip
    snr_db: tuple = (0.0, 20.0)  # SNR range for background noise, dB
    gain_db: float = 6.0  # random gain, +- dB
    feature_noise: float = 0.0  # std of additive Gaussian noise on normalized features (recipe: small)
    freq_warp: float = 0.0  # vocal-tract length perturbation: frequencies scaled by alpha in [1-w, 1+w]
    time_stretch: float = 0.0  # tempo perturbation: time scaled by beta in [1-s, 1+s] about the clip centre
    lowpass_prob: float = 0.0  # probability of a band-limited channel (e.g. 8 kHz telephone / recorder audio)
    lowpass_hz: tuple = (3400.0, 7000.0)  # its cutoff, drawn uniformly, Hz
    channel_eq_db: float = 0.0  # microphone response: a random tilt plus one broad bump, each up to +- this, dB
    # what snr_db is measured against: "clip", the clip's own frames; "input", the whole padded model input,
    # whose padding frames (log-mel 0) outweigh most speech, so the noise comes out several dB louder than
    # snr_db (the shipped models' recipes trained so, and keep it to stay reproducible)
    snr_reference: str = "clip"


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | adamw
    lr: float = 2.5e-3  # paper
    weight_decay: float = 5e-7
    schedule: str = "step"  # step (paper: x gamma every `step_every` epochs after `step_start`) | cosine
    step_start: int = 10
    step_every: int = 10
    gamma: float = 0.85
    warmup_epochs: float = 0.0  # linear warm-up (cosine schedule)
    loss: str = "bce"  # bce (paper, soft labels) | ce
    label_smoothing: float = 0.0
    grad_clip: float = 5.0  # max gradient norm, 0 disables
    ema_decay: float = 0.0  # > 0: validate and save a moving average of the weights (lmustream.train.ema), e.g. 0.999


@dataclass
class PrefixLossConfig:
    """Training for early exit (lmustream.train.early_exit_loss): loss += weight * loss on running-mean prefixes."""

    weight: float = 0.0  # 0 disables (training exactly as without the section)
    mode: str = "all"  # all: every prefix, averaged | random: one random prefix per clip
    min_frames: int = 1  # shortest prefix trained, frames


@dataclass
class DistillConfig:
    """Knowledge distillation (lmustream.train.distill): loss = (1-w) * loss + w * T^2 KL(teacher || student)."""

    teacher: str | list[str] | None = None  # a model file or shipped model name with the data's labels, or a
    # list of them (an ensemble: their softened posteriors averaged); None disables
    weight: float = 0.5  # w: the share of the loss that follows the teacher
    temperature: float = 2.0  # T: softens both posteriors so the teacher's near-misses count


@dataclass
class TrainConfig:
    model: str = "lmuformer"  # a named configuration (lmustream.models.NAMED_CONFIGS)
    model_overrides: dict = field(default_factory=dict)  # e.g. {causal: true, dim: 128}
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    prefix_loss: PrefixLossConfig = field(default_factory=PrefixLossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    epochs: int = 30
    batch_size: int = 128  # global batch (split across DDP processes)
    seed: int = 0
    out: str = "runs/default"  # run folder: checkpoints, metrics.csv, model.safetensors
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints (0: epoch ends only)
    amp: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # bf16 autocast on a CPU that computes bf16 in hardware too (train/precision.py)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    init_from: str | None = None  # start from this model file's weights (same shapes and labels), e.g. ANN -> SNN
    init_new_labels: bool = False  # with init_from: labels the source lacks get fresh head rows (a new vocabulary)

    def validate(self) -> "TrainConfig":
        for key, interval in _RANGES.items():
            value = self._value(key)
            # None: an optional setting left unset; a list: speakers named by id rather than counted
            if value is not None and not isinstance(value, list):
                check_range(key, value, interval)
        check_augment(self.augment)
        if self.data.validation_fraction + self.data.test_fraction >= 1:
            raise ConfigError(f"data.validation_fraction + data.test_fraction must be < 1 (train needs speakers "
                              f"too), got {self.data.validation_fraction} + {self.data.test_fraction}")
        from lmustream.train.data import parse_class_cap
        for label, cap in self.data.class_caps.items():
            parse_class_cap(label, cap)
        _check_device(self.device)
        if isinstance(self.data.label_map, str):  # the command line's "0=zero,1=one": a mapping from here on
            from lmustream.data.sources import parse_label_map
            self.data.label_map = parse_label_map(self.data.label_map)
        if self.init_new_labels and not self.init_from:
            raise ConfigError("init_new_labels=true starts a new vocabulary from init_from's network, and init_from "
                              "is not set: set init_from, or init_new_labels=false to train from scratch")
        if self.optim.loss not in ("bce", "ce"):
            raise ConfigError(f"optim.loss must be 'bce' or 'ce', got {self.optim.loss!r}")
        if self.optim.schedule not in ("step", "cosine"):
            raise ConfigError(f"optim.schedule must be 'step' or 'cosine', got {self.optim.schedule!r}")
        if self.optim.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optim.optimizer must be 'adam' or 'adamw', got {self.optim.optimizer!r}")
        from lmustream.train.early_exit_loss import validate as validate_prefix_loss
        validate_prefix_loss(self.prefix_loss, self.data.frames)
        from lmustream.train.distill import validate as validate_distill
        validate_distill(self.distill)
        from lmustream.train.ema import validate as validate_ema
        validate_ema(self.optim.ema_decay)
        from lmustream.models import get_config
        get_config(self.model, **self.model_overrides)  # raises on unknown names / fields
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def _value(self, key: str) -> Any:
        section, _, name = key.rpartition(".")
        return getattr(getattr(self, section) if section else self, name)


# The values every numeric setting may take, as intervals. A typo such as optim.lr=-1 must fail
# here, before the data is read, not as a traceback minutes later or as a run that trains on
# nonsense. Infinite ends are open, so NaN and infinities never pass. Checked elsewhere:
# prefix_loss.min_frames (it depends on data.frames) and optim.ema_decay (lmustream.train.ema).
_RANGES = {
    "epochs": "[1, inf)", "batch_size": "[1, inf)", "checkpoint_every": "[0, inf)",
    "seed": "[0, 4294967295]",  # a numpy seed (class caps) must be >= 0, and 32 bits suffice
    "data.validation_fraction": "[0, 1)", "data.test_fraction": "[0, 1)", "data.frames": "[1, inf)",
    "data.num_workers": "[0, inf)", "data.validation_speakers": "[0, inf)", "data.test_speakers": "[0, inf)",
    "optim.lr": "(0, inf)", "optim.weight_decay": "[0, inf)", "optim.step_start": "[0, inf)",
    "optim.step_every": "[1, inf)", "optim.gamma": "(0, 1]", "optim.warmup_epochs": "[0, inf)",
    "optim.label_smoothing": "[0, 1]", "optim.grad_clip": "[0, inf)",
    "prefix_loss.weight": "[0, inf)", "distill.weight": "[0, 1]", "distill.temperature": "(0, inf)",
}
# AugmentConfig's numbers. lmustream.adapters.finetune checks its own AugmentConfig with them too.
_AUGMENT_RANGES = {
    "mixup_rate": "[0, 1]", "mixup_alpha": "(0, inf)", "freq_mask": "[0, inf)", "time_mask": "[0, inf)",
    "time_shift": "[0, inf)", "noise_prob": "[0, 1]", "gain_db": "[0, inf)", "feature_noise": "[0, inf)",
    "freq_warp": "[0, 0.5)", "time_stretch": "[0, 0.5)", "lowpass_prob": "[0, 1]", "channel_eq_db": "[0, 40]",
}
SNR_REFERENCES = ("clip", "input")
_AUGMENT_PAIRS = {"snr_db": "(-inf, inf)", "lowpass_hz": "(0, inf)"}  # each end, and low <= high


def check_augment(augment: AugmentConfig, prefix: str = "augment.") -> None:
    """ConfigError naming ``prefix`` + the field for a number of ``augment`` out of range. An ``int`` field
    must hold an integer: a YAML recipe is type-checked on loading, an AugmentConfig built in Python is not."""
    if augment.snr_reference not in SNR_REFERENCES:
        raise ConfigError(f"{prefix}snr_reference must be one of {', '.join(SNR_REFERENCES)}, "
                          f"got {augment.snr_reference!r}")
    for f in fields(AugmentConfig):
        if f.name in _AUGMENT_RANGES:
            check_range(prefix + f.name, getattr(augment, f.name), _AUGMENT_RANGES[f.name], integer=f.type == "int")
        elif f.name in _AUGMENT_PAIRS:
            check_pair(prefix + f.name, getattr(augment, f.name), _AUGMENT_PAIRS[f.name])


def _check_device(name: str) -> None:
    """ConfigError unless ``name`` is "auto" or names a torch device. Whether this machine has it is
    the trainer's check (its ``_device``): data pack reads the same config on machines without the GPU."""
    if name == "auto":
        return
    import torch

    try:
        torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N (or another torch device), "
                          f"got {name!r}") from None


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where or 'config'}: {', '.join(unknown)}; "
                          f"known: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING \
            else known[name].default
        key = f"{where}.{name}".lstrip(".")
        value = _typed(value, str(known[name].type), key)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key)
            continue
        value = _checked(value, str(known[name].type), key, default)
        kwargs[name] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    return cls(**kwargs)


class _Raw(str):
    """An override's text, typed when the target field is known (a pattern like "{label}.wav" stays text)."""


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text",
               "list": "a list", "tuple": "a list", "dict": "a mapping", "None": "null"}


_TYPE_CHECKS = {"None": lambda v: v is None, "bool": lambda v: isinstance(v, bool),
                "int": lambda v: is_number(v, integer=True), "float": is_number,  # YAML's true is an int to Python
                "str": lambda v: isinstance(v, str), "list": lambda v: isinstance(v, (list, tuple)),
                "tuple": lambda v: isinstance(v, (list, tuple)), "dict": lambda v: isinstance(v, dict)}


def _checked(value: Any, annotation: str, key: str, default: Any = None) -> Any:
    """``value`` if it has one of the annotation's types, else a ConfigError naming the key: a
    typo'd value must fail before training starts, not mid-run. Numbers written as YAML 1.1 reads
    them (``1e-3`` is text to it) become floats, numbers become text for text fields (``task: 12``),
    and a pair such as ``snr_db`` must have its default's length and kinds of element."""
    allowed = [t.strip() for t in annotation.split("|")]
    if "float" in allowed and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if "str" in allowed and is_number(value):
        value = str(value)
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        numeric = all(is_number(d) for d in default)
        if len(value) != len(default) or (numeric and not all(is_number(v) for v in value)):
            kinds = " numbers" if numeric else " values"
            raise ConfigError(f"{key}: expected a list of {len(default)}{kinds} like {list(default)}, got {value!r}")
    if any(t not in _TYPE_CHECKS for t in allowed) or any(_TYPE_CHECKS[t](value) for t in allowed):
        return float(value) if allowed == ["float"] else value
    expected = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in allowed))
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _typed(value: Any, annotation: str, key: str = "") -> Any:
    if isinstance(value, dict) and "dict" in annotation:  # free-form sections: parse every leaf
        return {k: _typed(v, "any", f"{key}.{k}") for k, v in value.items()}
    if not isinstance(value, _Raw):
        return value
    if annotation.replace(" ", "") == "str|None" and value.strip().lower() in ("null", "none"):
        return None  # init_from=null clears a config's value (a folder named ~ or "" stays text)
    if annotation.replace(" ", "") in ("str", "str|None"):
        return str(value)
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse override value {value!r}: {e}") from e
    if annotation.replace(" ", "") in ("float", "float|None") and isinstance(parsed, str):
        try:  # YAML 1.1 reads 5e-3 (no dot) as text
            return float(parsed)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    return parsed


def apply_override(tree: dict, assignment: str) -> None:
    """``a.b=value`` into a nested dict; the value is parsed as YAML (numbers, booleans, lists)
    unless the field is a string."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value (e.g. epochs=20, optim.lr=1e-3)")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    node[parts[-1]] = _Raw(text)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file, the name of a shipped recipe (``sc12-lmuformer``) or the defaults,
    with ``key=value`` overrides applied."""
    import yaml

    tree: dict = {}
    if path is not None:
        path = resolve_config(path)
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not a text (YAML) file") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
        except OSError as e:
            raise ConfigError(f"config file {str(path)!r} cannot be read: {e.strerror or e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys (e.g. 'epochs: 30'), "
                              f"not a {type(tree).__name__}")
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        return _build(TrainConfig, tree, "").validate()
    except TypeError as e:
        raise ConfigError(f"bad config: {e}") from e

"""Teaching a deployed model new keywords from a few clips, on the CPU (``lmustream finetune``).

1. The head grows one row per new word (the old rows kept); each new row starts as a detector of
   its clips' mean feature, calibrated to the old logits (see :func:`imprint_classes`).
2. An adapter (AFLoRA by default; LoRA, VeRA, head-only or full fine-tuning) is added, and
   it and the head are trained on the enrollment clips with augmentation (background noise,
   time shift, gain, SpecAugment masks) and label smoothing. Half of the enrollment clips are
   heard through the replay clips' recording channel (see :mod:`lmustream.adapters.channel`).
   Batch norms keep the pretrained statistics.
3. The old task is replayed so that the old keywords are not forgotten: every step mixes
   old-word clips (``replay``: real or synthetic recordings of the old words, e.g. from
   ``lmustream data synth``) into the batch, and distils the pretrained model's outputs over the
   old classes into the new model on every clip (Learning without Forgetting; Li & Hoiem, 2017).
   Ten clips of a new word are drawn far more often than the replay clips of an old word; a logit
   adjustment for those sampling rates keeps the new words from stealing old-word clips.
4. The adapter is merged into the weights: the result is a plain model file (same format,
   step form, ONNX export), written with the adapter alone beside it. Its header records that
   its logits were trained with softmax cross-entropy, so the detector reads them as softmax
   posteriors whatever loss the base was trained with (per-class sigmoids of logits that only a
   softmax constrained fire on running speech: on the English adapter experiment, hundreds of
   false alarms an hour instead of a few dozen).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lmustream.adapters.api import (add_adapter, count_parameters, default_adapter_path, make_config,
                                    merged_artifact, save_adapter)
from lmustream.adapters.core import ALL_LAYERS
from lmustream.adapters.data import ClipSet, list_clips, load_clip_set, rank_clips, synthetic_noise
from lmustream.adapters.evaluate import accuracy, predict
from lmustream.adapters.head import grow_head, imprint_classes, lower_classes
from lmustream.audio.features import mel_centre_hz
from lmustream.errors import ConfigError
from lmustream.ranges import check_range
from lmustream.train.config import AugmentConfig, check_augment
from lmustream.train.distill import kl_to_teacher
from lmustream.train.precision import native_bfloat16

DEFAULT_RANKS = {"aflora": 4, "lora": 8, "vera": 64}
CATCH_ALL_FACTOR = 5  # replay clips of _unknown_ / _silence_ per replay clip of a word
DEFAULT_CHANNEL_MATCH = 0.5  # of the adapters and full fine-tuning; head-only: 0 (FinetuneConfig.channel_match)
# Layers adapted by default. New words are learnt in the patch embedding: AFLoRA there alone, frozen
# late, came closer to LoRA on every layer than AFLoRA on every layer did, on both tasks of the
# adapter experiment and with fewer than a fifth of LoRA's parameters (docs/adapters.md).
DEFAULT_TARGETS = {"aflora": ("embed.*",)}
PRECISIONS = ("auto", "fp32", "bf16")
FINETUNE_LOSS = "ce"  # what the header records (extra.finetune.loss): softmax cross-entropy, below
ADVISED_CLIPS = 5  # fewer enrollment clips of a word than this: warn (5-20 per word, from several takes)
ADVICE_PREFIXES = ("warning:", "note:")  # log lines the user must see even when stdout is JSON
# full: every weight moves (the vectors of aflora / vera take vector_lr_scale x larger steps).
# AFLoRA and LoRA at 4e-3: at 1e-3 neither fits its own enrollment clips in 20 epochs (clean accuracy on
# them 0.67 and 0.75 on the English adapter task); on the English task both learned the new words about
# 4 points better at 4e-3 than at 2e-3, on the Arabic task as well (docs/adapters.md).
DEFAULT_LR = {"aflora": 4e-3, "lora": 4e-3, "vera": 1e-3, "head": 1e-3, "full": 3e-4}
# The values every numeric setting may take, as intervals (lmustream.ranges). Infinite
# ends are open, so NaN and infinities never pass: `nan > 0` is False, so a NaN grad_clip would
# switch clipping off without a word, and a NaN temperature or weight makes the loss, then the
# model, NaN. The warm-ups are fractions of the run.
RANGES = {
    "lr": "(0, inf)", "vector_lr_scale": "(0, inf)", "warmup": "[0, 1]", "grad_clip": "[0, inf)",
    "weight_decay": "[0, inf)", "distill_weight": "[0, inf)", "distill_temperature": "(0, inf)",
    "replay_weight": "[0, inf)", "label_smoothing": "[0, 1]", "balance": "[0, 1]", "channel_match": "[0, 1]",
    "new_word_bias": "(-inf, inf)", "aflora_initial_warmup": "[0, 1)", "aflora_final_warmup": "[0, 1)",
}
INTEGER_RANGES = {
    "epochs": "[1, inf)", "batch_size": "[1, inf)", "replay_per_class": "[0, inf)", "aflora_delta_t": "[1, inf)",
    "seed": "[0, 4294967295]",  # numpy's generators refuse a negative seed
    "rank": "[1, inf)", "threads": "[1, inf)",
}
OPTIONAL = ("rank", "threads")  # None: the method's default rank, torch's thread count


def parameter_groups(model: torch.nn.Module, vector_lr_scale: float) -> list[dict]:
    """The trainable parameters as optimizer groups, each with its learning-rate ``scale``.

    The feature-transformation vectors (AFLoRA's and VeRA's ``lambda_*``) scale whole paths, as in
    VeRA they take steps ``vector_lr_scale`` times larger than the matrices and the head.
    """
    vectors, others = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (vectors if name.rsplit(".", 1)[-1].startswith("lambda_") else others).append(p)
    groups = [{"params": others, "scale": 1.0}]
    if vectors:
        groups.append({"params": vectors, "scale": float(vector_lr_scale)})
    return groups


def few_shot_augment() -> AugmentConfig:
    """Augmentation for a few enrollment clips: no mixup (it blurs classes of ten clips), milder masks."""
    return AugmentConfig(mixup_rate=0.0, freq_mask=24, time_mask=24, time_shift=10, noise_prob=0.6,
                         snr_db=(5.0, 25.0), gain_db=6.0, feature_noise=0.0)


@dataclass
class FinetuneConfig:
    """Settings of :func:`finetune` (the CLI's options).

    method: aflora | lora | vera | head | full.   rank: None = the method's default (4, 8, 64).
    epochs: passes over the enrollment clips.    batch_size: enrollment clips per step (as many
    replay clips join each step).    lr: Adam learning rate (None: the method's DEFAULT_LR), warmed up
    linearly over the first ``warmup`` fraction of the steps, then cosine decay to 0.
    vector_lr_scale: the feature-transformation vectors' learning rate, as a multiple of ``lr``.
    grad_clip: largest gradient norm (0: no clipping).
    replay_per_class: old-word clips kept per old class from the replay set (5 times as many for a
      catch-all class such as ``_unknown_``).
    distill_weight, distill_temperature: Learning-without-Forgetting term on the old classes.
    replay_weight: weight of the replay clips' classification loss (0: they are only distilled).
    label_smoothing: of the classification targets.
    balance: strength tau of the logit adjustment for how often each class is sampled (0: none,
      1: fully balanced; see :func:`sampling_log_prior`).
    channel_match: probability that an enrollment clip is heard through the replay clips' recording
      channel (level, spectral tilt, bandwidth; 0: never; see :mod:`lmustream.adapters.channel`).
      None: 0.5, or 0 for head-only training (a head on fixed features cannot learn to discount the
      channel, and the moved clips only blur its classes).
    new_word_bias: subtracted from the new words' logits in the deployed head after training. A few
      clips seen many times leave the new classes over-confident on unseen voices, so they take
      clips of old words; a positive bias trades new-word recall for old-word accuracy (0: none;
      docs/adapters.md measures the trade).
    aflora_initial_warmup, aflora_final_warmup: AFLoRA's warm-ups as fractions of the run (so that
      the schedule scales with --epochs); aflora_delta_t: its window in steps (the paper's 10 is
      for runs of thousands of steps; a few-shot run has a few hundred).
    target_modules: adapted layers (names or glob patterns). None: AFLoRA the patch embedding's
      layers (``embed.*``), LoRA and VeRA every Linear and Conv1d.
    threads: torch CPU threads (None: torch's default).
    precision: the training passes' arithmetic: "fp32", "bf16" (bfloat16 autocast: float32 weights,
      optimizer and evaluation; products in bfloat16), or "auto": bf16 where the CPU computes it
      natively (AVX512-BF16 or AMX on x86, BF16 on Arm), where it trains about 1.5x faster with the
      same accuracy (docs/adapters.md), else fp32.
    """

    method: str = "aflora"
    rank: int | None = None
    epochs: int = 20
    batch_size: int = 16
    lr: float | None = None
    warmup: float = 0.06
    vector_lr_scale: float = 30.0
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    replay_per_class: int = 10
    distill_weight: float = 1.0
    distill_temperature: float = 2.0
    replay_weight: float = 1.0
    label_smoothing: float = 0.1
    balance: float = 1.0
    channel_match: float | None = None
    new_word_bias: float = 0.0
    aflora_initial_warmup: float = 0.6
    aflora_final_warmup: float = 0.35
    aflora_delta_t: int = 2
    target_modules: tuple | None = None
    augment: AugmentConfig = field(default_factory=few_shot_augment)
    seed: int = 0
    threads: int | None = None
    precision: str = "auto"

    def __post_init__(self):
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.method)  # an unknown method: validate names it
        if self.target_modules is None:
            self.target_modules = DEFAULT_TARGETS.get(self.method, ALL_LAYERS)
        if self.channel_match is None:
            self.channel_match = 0.0 if self.method == "head" else DEFAULT_CHANNEL_MATCH
        self.validate()

    def validate(self) -> "FinetuneConfig":
        """ConfigError naming the first setting out of range. :func:`finetune` calls it again: a field
        set after construction must not reach the run unchecked."""
        if self.method not in DEFAULT_LR:
            raise ConfigError(f"unknown fine-tuning method {self.method!r}; known: {', '.join(DEFAULT_LR)}")
        for name, interval in INTEGER_RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                check_range(f"finetune {name}", value, interval, integer=True)
        for name, interval in RANGES.items():
            check_range(f"finetune {name}", getattr(self, name), interval)
        if self.aflora_initial_warmup + self.aflora_final_warmup >= 1:
            raise ConfigError(f"finetune aflora_initial_warmup + aflora_final_warmup must be < 1 (the freezing "
                              f"schedule needs steps between them), got {self.aflora_initial_warmup} + "
                              f"{self.aflora_final_warmup}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"finetune precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"finetune augment must be an AugmentConfig, got {type(self.augment).__name__}")
        # TrainConfig.validate checks an AugmentConfig inside a training config; this one is never inside one.
        check_augment(self.augment, "finetune augment.")
        self.adapter_config()  # the adapter's own checks (target patterns, rank), now rather than mid-run
        return self

    def compute_precision(self) -> str:
        """"fp32" or "bf16": what ``precision`` means on this CPU."""
        if self.precision == "auto":
            return "bf16" if native_bfloat16() else "fp32"
        return self.precision

    def adapter_config(self):
        fields = {"target_modules": self.target_modules, "seed": self.seed}  # the adapter config checks them
        if self.method in DEFAULT_RANKS:
            fields["rank"] = DEFAULT_RANKS[self.method] if self.rank is None else self.rank
        elif self.rank is not None:
            raise ConfigError(f"finetune rank (--rank) does not apply to method {self.method!r}: it trains no "
                              f"low-rank path")
        if self.method in ("head", "full"):
            fields.pop("target_modules")
        if self.method == "aflora":
            fields.update(initial_warmup=self.aflora_initial_warmup * self.epochs,
                          final_warmup=self.aflora_final_warmup * self.epochs, delta_t=self.aflora_delta_t)
        return make_config(self.method, **fields)


@dataclass
class FinetuneResult:
    """What a fine-tuning run did and measured (``to_dict`` is the CLI's JSON)."""

    method: str
    labels: list[str]
    new_labels: list[str]
    enrollment_clips: int
    replay_clips: int
    steps: int
    avg_trainable_params: float  # every trainable parameter (adapter + head), averaged over steps
    avg_trainable_adapter_params: float  # the same without the modules trained whole (the head)
    trainable_params_start: int
    total_params: int
    seconds: float  # the whole run: loading, features, training, merging, saving (evaluation excluded)
    train_seconds: float
    peak_memory_mb: float
    precision: str = "fp32"  # the training passes' arithmetic (FinetuneConfig.precision resolved)
    freezes: list[dict] = field(default_factory=list)
    new_accuracy: float | None = None
    old_accuracy_before: float | None = None
    old_accuracy_after: float | None = None
    eval_seconds: float = 0.0
    model_path: str | None = None
    adapter_path: str | None = None
    artifact: object = field(default=None, repr=False)  # the merged ModelArtifact (not in the JSON)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "artifact"}


def enrollment_advice(names: list[str], has_replay: bool) -> list[str]:
    """Warnings about the enrollment that predict a poor result: words with too few clips, no replay."""
    counts = {word: names.count(word) for word in dict.fromkeys(names)}
    few = [f"{word} ({n})" for word, n in counts.items() if n < ADVISED_CLIPS]
    lines = []
    if few:
        lines.append(f"warning: few enrollment clips for {', '.join(few)}: a word learnt from fewer than "
                     f"{ADVISED_CLIPS} takes rarely works for other speakers or rooms; record 5-20 per word")
    if not has_replay:
        lines.append("note: no replay clips of the old words (--replay DIR with --replay-per-class > 0): only "
                     "distillation from the original model keeps them from being forgotten")
    return lines


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def learning_rate_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of the steps, then cosine decay to 0."""
    ramp = max(1, round(warmup * total))
    if step <= ramp:
        return step / ramp
    return 0.5 * (1 + math.cos(math.pi * min((step - ramp) / max(total - ramp, 1), 1.0)))


def sampling_log_prior(y_enroll: torch.Tensor, y_replay: torch.Tensor, new_classes: list[int], n_classes: int,
                       per_step: int) -> torch.Tensor:
    """log of how much more often each new class is sampled than a typical old class, 0 for old classes.

    Each step draws ``per_step`` enrollment clips and as many replay clips, each uniformly from its
    set, so the few clips of a new word are seen far more often than the replay clips of an old
    word, and a plain loss would teach the new classes a bias that steals old-word clips. Adding
    this log-ratio to the new classes' logits inside the loss (logit adjustment, Menon et al.,
    ICLR 2021) takes that bias out of the deployed logits. The old classes are left as they are:
    their balance (e.g. a generous ``_unknown_``) is the pretrained model's, which distillation keeps.
    """
    rate = torch.bincount(y_enroll, minlength=n_classes).double() * per_step / len(y_enroll)
    rate += torch.bincount(y_replay, minlength=n_classes).double() * per_step / len(y_replay)
    old = [c for c in range(n_classes) if c not in new_classes and rate[c] > 0]
    reference = rate[old].median() if old else rate[rate > 0].min()
    adjustment = torch.zeros(n_classes, dtype=torch.float64)
    for c in new_classes:
        if rate[c] > 0:
            adjustment[c] = torch.log(rate[c] / reference)
    return adjustment.float()


def finetune(model, new_words, *, config: FinetuneConfig | None = None, out: str | Path | None = None,
             adapter_out: str | Path | None = None, replay=None, eval_new=None, eval_old=None,
             noise_dirs=(), cache_dir=None, progress: bool = True, log=None) -> FinetuneResult:
    """Teach ``model`` (a model file, shipped name or ModelArtifact) the words in ``new_words``.

    ``new_words``, ``replay``, ``eval_new``, ``eval_old``: labelled folders (one folder per word),
    CSV manifests, or lists of :class:`~lmustream.data.clips.Clip`. Enrollment words that are
    already classes of the model are adapted rather than added. Writes the merged model to
    ``out`` and the adapter to ``adapter_out`` (default: beside ``out``) when given.
    ``log(line)`` receives progress lines (every AFLoRA freeze included).
    """
    from lmustream.models.artifact import ModelArtifact, load_model, save_model
    from lmustream.models.registry import resolve_model
    from lmustream.adapters.augment import FewShotAugmenter

    config = config or FinetuneConfig()
    if not isinstance(config, FinetuneConfig):
        raise ConfigError(f"finetune's config must be a FinetuneConfig, got {type(config).__name__}")
    config.validate()  # before any work, and again: a field may have been set since construction
    _check_paths(new_words, replay, eval_new, eval_old, noise_dirs, out, adapter_out)
    adapter_cfg = config.adapter_config()
    log = log or (lambda line: None)
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    base_name = None if isinstance(model, ModelArtifact) else str(model)
    artifact = model if isinstance(model, ModelArtifact) else load_model(resolve_model(model))
    teacher = artifact.model.eval()  # the model as deployed: never changed here
    old_labels = list(artifact.labels)
    frames, frontend = teacher.config.frames, artifact.frontend

    enroll = load_clip_set(list_clips(new_words, "new words"), frontend, frames, cache_dir, progress, "enrollment")
    new_labels = [w for w in enroll.labels if w not in old_labels]
    labels = old_labels + new_labels
    replay_set = _replay_set(replay, old_labels, new_labels, config, frontend, frames, cache_dir, progress, log)
    noise = synthetic_noise(frontend, seed=config.seed)
    if noise_dirs:
        from lmustream.train.data import noise_logmel
        recorded = noise_logmel([Path(d) for d in noise_dirs], frontend)
        noise = noise if recorded is None else torch.cat([recorded, noise])
    speech_replay = replay_set  # the replay's recordings, before any silence is cut for it
    if replay_set:
        replay_set = _with_silence(replay_set, old_labels, noise, config, frontend, frames, log)
    log(f"{len(enroll)} enrollment clips of {len(enroll.labels)} word(s) ({len(new_labels)} new: "
        f"{', '.join(new_labels) or 'none'}); {len(replay_set) if replay_set else 0} replay clips")
    for line in enrollment_advice(enroll.names, replay_set is not None):
        log(line)

    model = copy.deepcopy(teacher)
    if new_labels:
        grow_head(model, len(labels))
    y_enroll = enroll.targets(labels)
    imprint_classes(model, enroll.x, y_enroll, [labels.index(w) for w in new_labels])
    add_adapter(model, adapter_cfg)
    model.eval()  # batch norms keep the pretrained statistics (a few clips cannot estimate them)

    # The teacher's view of every training clip, clean: the target the augmented student must keep.
    x_train = torch.cat([enroll.x, replay_set.x]) if replay_set else enroll.x
    y_train = torch.cat([y_enroll, replay_set.targets(labels)]) if replay_set else y_enroll
    teacher_logits = predict(teacher, x_train)
    n_enroll, n_old = len(enroll), len(old_labels)

    augmenter = FewShotAugmenter(config.augment, frontend, noise)
    if replay_set and config.channel_match > 0:
        augmenter.channel = augmenter.channel_matcher(enroll.x, speech_replay.x, config.channel_match)
        log(augmenter.channel.describe(mel_centre_hz(frontend)))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameter_groups(model, config.vector_lr_scale), lr=config.lr,
                                 weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(n_enroll / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    freezer = None
    if config.method == "aflora":
        from lmustream.adapters.aflora import AFLoRAFreezer
        try:
            freezer = AFLoRAFreezer(model, adapter_cfg, steps_per_epoch, total_steps,
                                    on_freeze=lambda event: log(event.describe()))
        except ConfigError as e:  # its advice speaks of the schedule's epochs, which finetune derives
            raise ConfigError(f"{n_enroll} enrollment clips at {config.batch_size} per step for {config.epochs} "
                              f"epoch(s) make {total_steps} optimizer step(s): too few for AFLoRA's freezing "
                              f"schedule (warm-ups of {config.aflora_initial_warmup:.0%} and "
                              f"{config.aflora_final_warmup:.0%} of the run); raise --epochs, or use "
                              f"--method lora") from e
    total_params = count_parameters(model)[1]
    head_params = sum(p.numel() for p in model.head.parameters())
    trainable_start = count_parameters(model)[0]

    log_prior = None  # without replay the old words are never sampled: nothing to balance them against
    if config.balance and replay_set:
        log_prior = config.balance * sampling_log_prior(y_enroll, replay_set.targets(labels),
                                                        [labels.index(w) for w in new_labels], len(labels),
                                                        config.batch_size)
    precision = config.compute_precision()
    bf16 = precision == "bf16"
    log(f"training in {'bfloat16 (autocast)' if bf16 else 'float32'}")
    train_started = time.perf_counter()
    trainable_sum = epoch_loss = 0.0
    generator = torch.Generator().manual_seed(config.seed)
    bar = range(1, total_steps + 1)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, desc=f"fine-tuning ({config.method})", leave=False, dynamic_ncols=True)
    order = torch.empty(0, dtype=torch.long)
    for step in bar:
        if len(order) < config.batch_size:  # a new epoch's shuffle of the enrollment clips
            order = torch.cat([order, torch.randperm(n_enroll, generator=generator)])
        idx, order = order[:config.batch_size], order[config.batch_size:]
        if replay_set:
            idx = torch.cat([idx, n_enroll + torch.randint(len(replay_set), (config.batch_size,), generator=generator)])
        x, target = augmenter(x_train[idx], F.one_hot(y_train[idx], len(labels)).float(), generator,
                              is_enroll=idx < n_enroll)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * group["scale"] * learning_rate_factor(step, total_steps, config.warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits = logits.float()
        if log_prior is not None:  # logit adjustment: the loss sees each class at its sampling rate
            logits = logits + log_prior
        if config.label_smoothing > 0:
            target = target * (1 - config.label_smoothing) + config.label_smoothing / len(labels)
        per_clip = -(target * F.log_softmax(logits, dim=1)).sum(1)
        weight = torch.ones_like(per_clip)
        weight[config.batch_size:] = config.replay_weight  # replay clips follow the enrollment clips
        loss = (per_clip * weight).sum() / weight.sum().clamp(min=1e-12)
        if config.distill_weight > 0:  # on the old classes, whose prior is one constant: no adjustment needed
            loss = loss + config.distill_weight * kl_to_teacher(
                logits[:, :n_old], teacher_logits[idx], config.distill_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if freezer is not None:
            freezer.step(step)  # reads this step's gradients before clipping rescales them
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        trainable_sum += count_parameters(model)[0]
        optimizer.step()
        epoch_loss += loss.item()
        if step % steps_per_epoch == 0:
            log(f"epoch {step // steps_per_epoch}/{config.epochs}: loss {epoch_loss / steps_per_epoch:.4f}")
            epoch_loss = 0.0
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - train_started
    steps = max(total_steps, 1)
    avg_trainable = trainable_sum / steps
    avg_adapter = avg_trainable - (head_params if any(p.requires_grad for p in model.head.parameters()) else 0)
    if config.method == "full":
        avg_adapter = avg_trainable

    model.eval()
    if config.new_word_bias and new_labels:
        lower_classes(model.head, [labels.index(w) for w in new_labels], config.new_word_bias)
    extra = {"finetune": {"base": base_name, "method": config.method, "loss": FINETUNE_LOSS,
                          "adapter": adapter_cfg.to_dict(), "new_words": new_labels,
                          "enrollment_clips": n_enroll, "epochs": config.epochs,
                          "new_word_bias": config.new_word_bias, "precision": precision,
                          "freezes": [asdict(e) for e in freezer.events] if freezer else []}}
    adapter_path = None
    if out is not None or adapter_out is not None:
        adapter_path = Path(adapter_out) if adapter_out else default_adapter_path(out)
        save_adapter(adapter_path, model, labels, extra)
    if "detector" in artifact.extra:
        log("the base model's detector calibration does not apply to the fine-tuned model (its posteriors are "
            "softmax): run `lmustream calibrate` on it")
    taught = merged_artifact(ModelArtifact(model, labels, frontend, artifact.extra), extra=extra)
    merged = taught.model
    if out is not None:
        save_model(out, taught)
    seconds = time.perf_counter() - started
    result = FinetuneResult(
        method=config.method, labels=labels, new_labels=new_labels, enrollment_clips=n_enroll,
        replay_clips=len(replay_set) if replay_set else 0, steps=total_steps, avg_trainable_params=avg_trainable,
        avg_trainable_adapter_params=avg_adapter, trainable_params_start=trainable_start, total_params=total_params,
        seconds=seconds, train_seconds=train_seconds, peak_memory_mb=peak_memory_mb(), precision=precision,
        freezes=[asdict(e) for e in freezer.events] if freezer else [],
        model_path=str(out) if out is not None else None,
        adapter_path=str(adapter_path) if adapter_path is not None else None, artifact=taught)

    eval_started = time.perf_counter()
    if eval_new is not None:
        clips = load_clip_set(list_clips(eval_new, "--eval-new"), frontend, frames, cache_dir, progress, "eval (new)")
        result.new_accuracy = accuracy(merged, clips, labels)
    if eval_old is not None:
        clips = load_clip_set(list_clips(eval_old, "--eval-old"), frontend, frames, cache_dir, progress, "eval (old)")
        result.old_accuracy_before = accuracy(teacher, clips, old_labels)
        result.old_accuracy_after = accuracy(merged, clips, labels)
    result.eval_seconds = time.perf_counter() - eval_started
    result.peak_memory_mb = peak_memory_mb()
    return result


def _check_paths(new_words, replay, eval_new, eval_old, noise_dirs, out, adapter_out) -> None:
    """Fail on a folder, noise recording or output that cannot serve now, not after the training."""
    from lmustream.paths import check_writable
    from lmustream.train.data import noise_recordings

    for option, path in (("--new-words", new_words), ("--replay", replay), ("--eval-new", eval_new),
                         ("--eval-old", eval_old)):
        if isinstance(path, (str, os.PathLike)) and not Path(path).exists():  # (lists of clips need no check)
            raise ConfigError(f"{option} {str(path)!r}: no such folder or manifest")
    noise_recordings(noise_dirs)
    for path in (out, adapter_out):
        if path is not None:
            check_writable(path)


def _with_silence(replay_set: ClipSet, old_labels, noise, config, frontend, frames, log) -> ClipSet:
    """The replay plus ``_silence_`` clips cut from the augmentation noise, when the model has that class
    and the replay none: without them, nothing in training shows the model silence, and the fine-tuned
    model forgets it (sc12-lmuformer taught the ten digits with the defaults answered none of 24
    silence clips right, against 24 before). Old classes the replay lacks otherwise are named."""
    from lmustream.adapters.data import silence_clip_set
    from lmustream.data.sources import SILENCE_LABEL

    if SILENCE_LABEL in old_labels and SILENCE_LABEL not in replay_set.names:
        count = config.replay_per_class  # as many as a word's, as the training recipe gives _silence_
        replay_set = replay_set + silence_clip_set(noise, frontend, frames, count, config.seed)
        log(f"replay: {count} {SILENCE_LABEL} clips cut from the background noise (the replay held none)")
    missing = [label for label in old_labels if label not in replay_set.names]
    if missing:
        log(f"note: the replay holds no clips of {', '.join(missing)}: only distillation from the original "
            f"model keeps them from being forgotten")
    return replay_set


def _replay_set(replay, old_labels, new_labels, config, frontend, frames, cache_dir, progress,
                log) -> ClipSet | None:
    """The replayed clips of the old classes. A model with ``_unknown_`` learnt every word it does not
    know as that class, so the replay's other words (e.g. a Speech Commands folder's) are replayed as
    ``_unknown_``; clips of the words being taught are left out."""
    from lmustream.data.sources import UNKNOWN_LABEL

    if replay is None or config.replay_per_class == 0:
        return None
    clips = list_clips(replay, "replay")
    others = sorted({c.label for c in clips} - set(old_labels) - set(new_labels))
    if others and UNKNOWN_LABEL in old_labels:
        log(f"replay: clips of {', '.join(others)} replayed as {UNKNOWN_LABEL} (words the model does not know)")
        clips = [dataclasses.replace(c, label=UNKNOWN_LABEL) if c.label in others else c for c in clips]
    ignored = sorted({c.label for c in clips} - set(old_labels))
    if ignored:
        why = "the words being taught" if set(ignored) <= set(new_labels) else "not classes of the model"
        log(f"replay: ignoring clips of {', '.join(ignored)} ({why})")
    kept, per_class = [], {}
    for clip in rank_clips([c for c in clips if c.label in old_labels], config.seed):
        # A catch-all class (_unknown_: every other word) needs more examples than one word does.
        limit = config.replay_per_class * (CATCH_ALL_FACTOR if clip.label.startswith("_") else 1)
        if per_class.get(clip.label, 0) < limit:
            per_class[clip.label] = per_class.get(clip.label, 0) + 1
            kept.append(clip)
    if not kept:
        raise ConfigError(f"replay: no clip of any of the model's classes ({', '.join(old_labels)})")
    return load_clip_set(kept, frontend, frames, cache_dir, progress, "replay")

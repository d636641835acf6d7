"""The training loop: one process, or several through torch DDP (``torchrun ... -m lmustream train``).

Read top to bottom: distributed setup from the environment, data, model, optimizer and
schedule, resume, then epochs of steps with checkpoints, validation and best-model selection.
Only the main process (rank 0) writes files and prints progress. Randomness (clip order,
augmentation) comes from generators seeded by (seed, epoch, step), so a run resumed from a
mid-epoch checkpoint draws exactly the numbers the uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lmustream.errors import ConfigError, LmuStreamError
from lmustream.models import LMUFormer, get_config
from lmustream.models.artifact import ModelArtifact, atomic_write_bytes, load_model, save_model, torch_load_safely
from lmustream.models.registry import resolve_model
from lmustream.train.augment import FeatureAugmenter
from lmustream.train.config import OptimConfig, TrainConfig
from lmustream.train.distill import blend as distill_blend, load_teacher, teacher_specs
from lmustream.train.distributed import share_batch_statistics
from lmustream.train.early_exit_loss import model_outputs, prefix_loss
from lmustream.train.ema import WeightAverage
from lmustream.train.evaluate import add_to_confusion
from lmustream.train.precision import autocast, uses_bfloat16

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1
PROGRESS_EVERY = 20  # steps between progress-bar updates (each update waits for the device)


class TrainingInterrupted(LmuStreamError):
    """SIGINT/SIGTERM arrived: a checkpoint was written and training stopped."""


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _device(config: TrainConfig, ddp: Distributed) -> torch.device:
    """The device to train on; ConfigError (before any data is read) when this machine lacks the one asked for."""
    if config.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", ddp.local_rank)
        return torch.device("cpu")
    device = torch.device(config.device)
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu: each knows if it can run
    if not (hasattr(backend, "is_available") and backend.is_available()):
        if device.type == "cuda":
            why = ("CUDA is asked for, but this torch is built without CUDA (a CPU-only build)"
                   if not torch.backends.cuda.is_built() else "CUDA is asked for, but no CUDA GPU is visible")
        else:
            why = f"no {device.type} device is available here"
        raise ConfigError(f"device={config.device}: {why}; use device=cpu or device=auto")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device={config.device}: this machine has {count} {device.type} device(s), "
                          f"{device.type}:0 to {device.type}:{count - 1}")
    return device


def use_fast_cuda_kernels(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms once per shape and keep the fastest.

    Clips have a fixed frame count, so the shapes repeat every step; the default heuristic
    picks slow algorithms for these 1-D convolutions in bf16 (profiled on an H100).
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def make_optimizer(params, optim: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW per ``optim``; on CUDA the fused implementation (one kernel for all tensors)."""
    opt_cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=device.type == "cuda")


def lr_factor(config: TrainConfig, epoch_float: float) -> float:
    """Learning-rate multiplier at a (fractional) epoch."""
    o = config.optim
    if o.schedule == "step":  # paper: x gamma every step_every epochs once epoch >= step_start
        e = int(epoch_float)
        return o.gamma ** ((e - o.step_start) // o.step_every + 1) if e >= o.step_start else 1.0
    if o.warmup_epochs > 0 and epoch_float < o.warmup_epochs:
        return (epoch_float + 1e-3) / o.warmup_epochs
    progress = (epoch_float - o.warmup_epochs) / max(config.epochs - o.warmup_epochs, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _loss(logits: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    if config.optim.loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target, label_smoothing=config.optim.label_smoothing)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.raised: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.raised = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@torch.no_grad()
def evaluate(model: LMUFormer, loader, device, amp: bool, cpu_bf16: bool = False) -> tuple[float, torch.Tensor]:
    """(accuracy, confusion matrix [true, predicted]) of ``model`` over ``loader``."""
    model.eval()
    K = model.config.n_classes
    confusion = torch.zeros(K, K, dtype=torch.long)
    for x, y in loader:
        with autocast(device, amp, cpu_bf16):
            pred = model(x.to(device)).argmax(1).cpu()
        add_to_confusion(confusion, y, pred)
    total = int(confusion.sum())
    return (float(confusion.diag().sum()) / total if total else float("nan")), confusion


def _save_checkpoint(path: Path, state: dict) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    state = torch_load_safely(path, "checkpoint")
    version = state.get("version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise LmuStreamError(f"checkpoint {str(path)!r} has version {version}, expected {CHECKPOINT_VERSION} "
                             f"(not a training checkpoint of this lmustream)")
    return state


def _initialize_from(model: LMUFormer, path: str, labels, fresh=()) -> None:
    """Start from another model's weights (e.g. a spiking model from its trained non-spiking twin).

    Every tensor must exist with the same shape in both. The labels must be the same, or a subset
    of the source's (a digits model from a 35-word model): then the head keeps the rows of these
    labels, in the data's order, and the rest of the network is copied whole. Labels in ``fresh``
    (auxiliary classes, or every label with ``init_new_labels``) may be missing from the source:
    their rows keep ``model``'s initialization.
    """
    source = load_model(resolve_model(path))
    theirs, ours = dict(source.model.state_dict()), model.state_dict()
    if list(source.labels) != list(labels):
        missing = [label for label in labels if label not in source.labels and label not in fresh]
        if missing:
            raise ConfigError(f"init_from {path}: its labels {source.labels} differ from the data's "
                              f"{list(labels)} (missing there: {missing}); the data's labels must be the "
                              f"source's or a subset of them, or set init_new_labels=true to start their "
                              f"head rows afresh")
        row = {label: i for i, label in enumerate(source.labels)}
        for key in ("head.weight", "head.bias"):
            theirs[key] = torch.stack([theirs[key][row[label]] if label in row else ours[key][i].to(theirs[key])
                                       for i, label in enumerate(labels)])
    mismatched = sorted(k for k in set(ours) | set(theirs)
                        if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if mismatched:
        raise ConfigError(f"init_from {path}: the models differ in {len(mismatched)} tensor(s), e.g. "
                          f"{', '.join(mismatched[:4])}; use the same dim, memory_size and layer counts")
    model.load_state_dict(theirs)


def _check_same_settings(state: dict, config: TrainConfig, path: Path) -> None:
    """LmuStreamError naming the settings that make another model than the checkpoint's."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    pairs = (("model", saved.get("model"), config.model),
             ("model_overrides", saved.get("model_overrides"), config.model_overrides),
             ("optim.optimizer", (saved.get("optim") or {}).get("optimizer"), config.optim.optimizer))
    changed = [f"{key} {then!r} there, {now!r} now" for key, then, now in pairs if then != now]
    if changed:
        raise LmuStreamError(f"--resume: {str(path)!r} was started with other settings ({'; '.join(changed)}); "
                             f"resume with the settings the run was started with, or train into another out=")


def _restore(model: LMUFormer, optimizer, state: dict, path: Path) -> None:
    """Load a checkpoint's model and optimizer; LmuStreamError when they do not fit this run's."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise LmuStreamError(f"--resume: {str(path)!r} holds another model than this run makes (its tensors have "
                             f"other shapes: other labels or data); resume with the data the run was started "
                             f"with, or train into another out=") from e


def train(config: TrainConfig, resume: bool = False, data=None, progress: bool = True) -> Path:
    """Train per ``config``; returns the path of the best model file (``<out>/model.safetensors``).

    ``data`` (optional) is a prepared :class:`lmustream.train.data.TrainingData`; by default it
    is built from ``config.data``.
    """
    from lmustream.train.data import prepare_data

    ddp = Distributed.from_env()
    device = _device(config, ddp)
    use_fast_cuda_kernels(device)
    if ddp.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    if config.batch_size % ddp.world:
        raise LmuStreamError(f"batch_size {config.batch_size} is not divisible by {ddp.world} processes")
    out = Path(config.out)
    ckpt_path = out / CHECKPOINT_NAME
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        if ckpt_path.exists() and not resume:
            raise LmuStreamError(f"{ckpt_path} exists: pass --resume to continue it, or choose another out=")
    if resume and not ckpt_path.exists():  # before minutes of data preparation, not after
        raise LmuStreamError(f"--resume: no checkpoint at {ckpt_path}")
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        _check_same_settings(state, config, ckpt_path)  # also before the data
    for spec in [config.init_from, *teacher_specs(config.distill.teacher)]:
        if spec:
            resolve_model(spec)  # a mistyped model name fails now, not after minutes of data preparation
    data = data or prepare_data(config, verbose=ddp.main, progress=ddp.main and progress)
    torch.manual_seed(config.seed)
    model_config = get_config(config.model, n_classes=len(data.labels), frames=config.data.frames,
                              **config.model_overrides)
    model = LMUFormer(model_config).to(device)
    if config.init_from and not resume:
        fresh = data.labels if config.init_new_labels else data.auxiliary_labels
        _initialize_from(model, config.init_from, data.labels, fresh=fresh)
    train_model = model
    if ddp.world > 1:
        share_batch_statistics(model)  # global-batch statistics, as a single process would compute
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model.parameters(), config.optim, device)
    average = WeightAverage(model, config.optim.ema_decay) if config.optim.ema_decay > 0 else None
    teacher = (load_teacher(config.distill.teacher, list(data.labels), data.frontend, device,
                            config.distill.temperature) if config.distill.teacher else None)
    augmenter = FeatureAugmenter(config.augment, data.frontend, data.noise)

    n_train = len(data.train)
    local_batch = config.batch_size // ddp.world
    steps_per_epoch = max(n_train // config.batch_size, 1)
    epoch, step_in_epoch, best_acc, global_step = 0, 0, -1.0, 0
    partial = None  # the running sums of an epoch a mid-epoch checkpoint stopped in
    if resume:
        _restore(model, optimizer, state, ckpt_path)
        if average is not None:
            if "ema" not in state:
                raise LmuStreamError(f"--resume with optim.ema_decay > 0, but {ckpt_path} holds no weight average "
                                     f"(the run was started without it)")
            average.load_state_dict(state["ema"])
        epoch, step_in_epoch, best_acc = state["epoch"], state["step_in_epoch"], state["best_acc"]
        global_step = state["global_step"]
        if step_in_epoch > 0:  # its metrics row must cover the steps before the stop too
            partial = state.get("epoch_sums")
        torch.set_rng_state(state["torch_rng"])
        if ddp.main:
            print(f"resumed from {ckpt_path}: epoch {epoch}, step {step_in_epoch}/{steps_per_epoch}")

    def checkpoint():
        if ddp.main:
            _save_checkpoint(ckpt_path, {
                "version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "best_acc": best_acc, "torch_rng": torch.get_rng_state(), "config": config.to_dict(),
                "epoch_sums": {"loss": float(loss_sum), "correct": float(correct), "seen": seen,
                               "seconds": time.perf_counter() - t0},
                "labels": list(data.labels), **({"ema": average.state_dict()} if average is not None else {})})

    # Without a validation split (every speaker trains: the final fit of a recipe chosen on
    # held-out speakers), there is nothing to select on, and the last epoch is the model.
    val_loader = (torch.utils.data.DataLoader(data.validation, batch_size=256, num_workers=config.data.num_workers)
                  if data.validation is not None else None)
    if val_loader is None and ddp.main:
        print("no validation split: model.safetensors is the model after the last epoch completed", flush=True)
    if ddp.main:
        bf16 = uses_bfloat16(device, config.amp, config.cpu_bf16)
        print(f"training on {device} in {'bfloat16 autocast' if bf16 else 'float32'}", flush=True)
    metrics_path = out / "metrics.csv"
    board = _tensorboard(out) if ddp.main else None
    with _StopFlag() as stop:
        while epoch < config.epochs:
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
            train_model.train()
            bar = _progress(range(step_in_epoch, steps_per_epoch), ddp.main and progress, f"epoch {epoch + 1}")
            # Running sums stay on the device: reading them every step would stall the GPU queue.
            sums, partial = partial or {"loss": 0.0, "correct": 0.0, "seen": 0, "seconds": 0.0}, None
            loss_sum = torch.tensor(sums["loss"], device=device)
            correct = torch.tensor(sums["correct"], device=device)
            seen = sums["seen"]
            t0 = time.perf_counter() - sums["seconds"]
            for step_in_epoch in bar:
                g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 10_007 + step_in_epoch)
                batch_idx = order[step_in_epoch * config.batch_size:(step_in_epoch + 1) * config.batch_size]
                x, y = data.train.batch(batch_idx, device)  # global batch: augmentation identical for any world size
                target = F.one_hot(y, len(data.labels)).float()
                x, target = augmenter(x, target, g)
                shard = slice(ddp.rank * local_batch, (ddp.rank + 1) * local_batch)
                x, target, y = x[shard], target[shard], y[shard]
                for group in optimizer.param_groups:
                    group["lr"] = config.optim.lr * lr_factor(config, epoch + step_in_epoch / steps_per_epoch)
                with autocast(device, config.amp, config.cpu_bf16):
                    logits, prefixes = model_outputs(train_model, x, config.prefix_loss)
                    teacher_logits = teacher(x) if teacher is not None else None
                loss = _loss(logits.float(), target, config)
                if teacher_logits is not None:
                    loss = distill_blend(loss, logits.float(), teacher_logits.float(), config.distill)
                if prefixes is not None:  # early-exit training: also a loss on the running-mean prefixes
                    loss = loss + prefix_loss(prefixes.float(), target, lambda z, t: _loss(z, t, config),
                                              config.prefix_loss, g, shard, len(batch_idx))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                optimizer.step()
                if average is not None:
                    average.update(model)
                global_step += 1
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if ddp.main and progress and (step_in_epoch % PROGRESS_EVERY == 0 or step_in_epoch == steps_per_epoch - 1):
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}",
                                    clips_s=f"{seen * ddp.world / (time.perf_counter() - t0):.0f}")
                if stop.raised is not None:
                    step_in_epoch += 1
                    checkpoint()
                    raise TrainingInterrupted(f"stopped by signal {stop.raised}; checkpoint saved at {ckpt_path}: "
                                              f"continue with --resume")
                if config.checkpoint_every and global_step % config.checkpoint_every == 0:
                    step_in_epoch += 1
                    checkpoint()
                    step_in_epoch -= 1
            loss_sum, correct = float(loss_sum), float(correct)
            elapsed = time.perf_counter() - t0
            epoch += 1
            step_in_epoch = 0
            if ddp.main:
                chosen = average.model if average is not None else model  # what is validated and saved
                val_acc = (evaluate(chosen, val_loader, device, config.amp, config.cpu_bf16)[0]
                           if val_loader is not None else None)
                improved = val_acc is not None and val_acc > best_acc
                if improved:
                    best_acc = val_acc
                if improved or val_acc is None:  # without validation every epoch replaces the last
                    _save_model(out, chosen.eval(), data, {"recipe": config.to_dict(), "epoch": epoch,
                                                           "validation_accuracy": val_acc})
                _last_metrics = _append_metrics(metrics_path, {
                    "epoch": epoch, "step": global_step, "train_loss": loss_sum / max(seen, 1),
                    "train_acc": correct / max(seen, 1), "val_acc": val_acc,
                    "lr": optimizer.param_groups[0]["lr"], "seconds": round(elapsed, 2),
                    "clips_per_s": round(seen * ddp.world / max(elapsed, 1e-9), 1)})
                if board is not None:
                    for key in ("train_loss", "train_acc", "val_acc", "lr", "clips_per_s"):
                        if _last_metrics[key] is not None:
                            board.add_scalar(key, _last_metrics[key], epoch)
                validated = f"validation acc {val_acc:.4f}" if val_acc is not None else "no validation"
                print(f"epoch {epoch}/{config.epochs}: train loss {loss_sum / max(seen, 1):.4f} "
                      f"acc {correct / max(seen, 1):.3f}, {validated}{' (best)' if improved else ''}", flush=True)
            checkpoint()
            if ddp.world > 1:
                dist.barrier()
    if ddp.world > 1:
        dist.barrier()
    return out / "model.safetensors"


def _save_model(out: Path, model: LMUFormer, data, extra: dict) -> None:
    """OUT/model.safetensors: the task's classes. With auxiliary classes (validated with them: a clip
    taken for one is an error), also every class in OUT/model+auxiliary.safetensors, for a next stage."""
    if not data.auxiliary_labels:
        save_model(out / "model.safetensors", ModelArtifact(model, list(data.labels), data.frontend, extra))
        return
    from lmustream.train.auxiliary import FULL_MODEL_NAME, task_model

    save_model(out / FULL_MODEL_NAME, ModelArtifact(model, list(data.labels), data.frontend, extra))
    task = data.task_labels
    save_model(out / "model.safetensors", ModelArtifact(task_model(model, len(task)), task, data.frontend, extra))


def _append_metrics(path: Path, row: dict) -> dict:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    return row


def _tensorboard(out: Path):
    """A TensorBoard writer under OUT/tensorboard when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return _Quiet(iterable)
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


class _Quiet:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **kw):
        pass

"""Knowledge distillation: a trained model (the teacher) guides the one being trained (the student).

With ``distill.teacher`` set, the training loss on the clip-level output becomes

    L = (1 - w) * loss(student, y) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015). Both models see the same augmented batch; the teacher runs in eval mode
without gradients. Its posteriors say which words sound alike and how sure it can be of a noisy
or mixed clip, which a one-hot label cannot: the usual use is a spiking LMUFormer taught by its
trained non-spiking twin. The prefix loss of early-exit training, when on, is added unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmustream.errors import ConfigError


def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened posteriors of ``[B, K]`` logits, times T^2.

    T^2 keeps the gradient's scale independent of T, so ``w`` means the same at any temperature.
    """
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1),
                    reduction="batchmean") * t * t


def blend(task_loss: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, cfg) -> torch.Tensor:
    """``(1 - w) * task_loss + w * T^2 KL`` for the section ``cfg`` (``distill``)."""
    return (1 - cfg.weight) * task_loss + cfg.weight * kl_to_teacher(student, teacher, cfg.temperature)


def load_teacher(spec: str, labels: list[str], frontend, device: torch.device) -> torch.nn.Module:
    """The teacher model, in eval mode on ``device``, with its outputs in the order of ``labels``.

    It must know exactly the data's labels (in any order) and read the same features; anything
    else would make its posteriors meaningless for this data, so both are errors.
    """
    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model

    artifact = load_model(resolve_model(spec))
    if sorted(artifact.labels) != sorted(labels):
        only_teacher = sorted(set(artifact.labels) - set(labels))
        only_data = sorted(set(labels) - set(artifact.labels))
        raise ConfigError(f"distill.teacher {spec}: its labels differ from the data's (only the teacher has "
                          f"{only_teacher}, only the data has {only_data})")
    if artifact.frontend != frontend:
        raise ConfigError(f"distill.teacher {spec}: it reads other features ({artifact.frontend}) than this "
                          f"training ({frontend})")
    order = torch.tensor([artifact.labels.index(label) for label in labels], device=device)
    return _Reordered(artifact.model.to(device).eval(), order)


class _Reordered(torch.nn.Module):
    """A frozen model whose logits come out in another label order."""

    def __init__(self, model: torch.nn.Module, order: torch.Tensor):
        super().__init__()
        self.model = model.requires_grad_(False)
        self.register_buffer("order", order)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.order)

    def train(self, mode: bool = True):  # always eval: batch statistics and dropout stay the teacher's own
        return super().train(False)


def validate(cfg) -> None:
    """Raise ConfigError for a ``distill`` section that cannot work."""
    if cfg.teacher is not None and not isinstance(cfg.teacher, str):
        raise ConfigError(f"distill.teacher must be a model file or shipped model name, got {cfg.teacher!r}")
    w, t = cfg.weight, cfg.temperature
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
        raise ConfigError(f"distill.weight must be a number in [0, 1], got {w!r}")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        raise ConfigError(f"distill.temperature must be a number > 0, got {t!r}")

"""Knowledge distillation: a trained model (the teacher) guides the one being trained (the student).

With ``distill.teacher`` set, the training loss on the clip-level output becomes

    L = (1 - w) * loss(student, y) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015). Both models see the same augmented batch; the teacher runs in eval mode
without gradients. Its posteriors say which words sound alike and how sure it can be of a noisy
or mixed clip, which a one-hot label cannot: the usual use is a spiking LMUFormer taught by its
trained non-spiking twin. The prefix loss of early-exit training, when on, is added unchanged.

``distill.teacher`` may also list several models (an ensemble, e.g. the same recipe trained with
different seeds). Their softened posteriors are averaged, p = mean_k softmax(z_k / T), and the
student follows that mean: an ensemble of independently trained models generalises better than
any one of them, and distillation carries part of that into a single deployable model.
"""

from __future__ import annotations

import math

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


def teacher_specs(teacher: str | list[str] | None) -> list[str]:
    """The model specs of ``distill.teacher``: none, one, or an ensemble's list."""
    if teacher is None:
        return []
    return [teacher] if isinstance(teacher, str) else list(teacher)


def load_teacher(spec: str | list[str], labels: list[str], frontend, device: torch.device,
                 temperature: float = 1.0) -> torch.nn.Module:
    """The teacher, in eval mode on ``device``, with its outputs in the order of ``labels``.

    Each model must know exactly the data's labels (in any order) and read the same features;
    anything else would make its posteriors meaningless for this data, so both are errors. Several
    specs make an ensemble whose outputs are ``T * log(mean_k softmax(z_k / T))``: logits whose
    softened posterior at ``temperature`` T is the mean of the members' (see :func:`kl_to_teacher`).
    """
    specs = teacher_specs(spec)
    if not specs:
        raise ConfigError("distill.teacher: no model given")
    members = [_load_one(s, labels, frontend, device) for s in specs]
    return members[0] if len(members) == 1 else _Ensemble(members, temperature)


def _load_one(spec: str, labels: list[str], frontend, device: torch.device) -> torch.nn.Module:
    from lmustream.models.artifact import load_model
    from lmustream.models.registry import resolve_model

    artifact = load_model(resolve_model(spec))
    if sorted(artifact.labels) != sorted(labels):
        only_teacher = sorted(set(artifact.labels) - set(labels))
        only_data = sorted(set(labels) - set(artifact.labels))
        hint = ("; with data.auxiliary_packs the teacher must know the auxiliary classes too: use the "
                "model+auxiliary.safetensors of a run that trained them" if only_data else "")
        raise ConfigError(f"distill.teacher {spec}: its labels differ from the data's (only the teacher has "
                          f"{only_teacher}, only the data has {only_data}){hint}")
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


class _Ensemble(torch.nn.Module):
    """Frozen teachers whose softened posteriors are averaged; returns logits of that mean at T."""

    def __init__(self, members: list[torch.nn.Module], temperature: float):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.temperature = temperature

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_p = torch.stack([F.log_softmax(m(x).float() / t, dim=1) for m in self.members])
        return t * (torch.logsumexp(log_p, dim=0) - math.log(len(self.members)))


def validate(cfg) -> None:
    """Raise ConfigError for a ``distill`` section that cannot work."""
    t = cfg.teacher
    ok = t is None or isinstance(t, str) or (isinstance(t, list) and t and all(isinstance(s, str) for s in t))
    if not ok:
        raise ConfigError(f"distill.teacher must be a model file or shipped model name, or a non-empty list "
                          f"of them (an ensemble), got {t!r}")
    w, t = cfg.weight, cfg.temperature
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
        raise ConfigError(f"distill.weight must be a number in [0, 1], got {w!r}")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        raise ConfigError(f"distill.temperature must be a number > 0, got {t!r}")

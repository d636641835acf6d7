"""Early exit: decide on a command before the utterance ends.

The model's streaming output at frame t is the head applied to the running mean of its
features (``all_seq``): a prediction after every prefix. An *exit policy* looks at the
posteriors ``p_t = softmax(all_seq[t])`` as they arrive and stops at the first output
where it is confident enough; the decision is ``argmax p_t``.

Look-ahead, counted honestly. With the paper's centred patch embedding the output for
frame t needs input frames up to t + D (D = ``config.lookahead``), so a decision taken on
output t has *consumed* ``t + 1 + D`` input frames. Once all N input frames of the
utterance are in, the last D outputs cost no more waiting (``flush``), so a policy that
has not fired by then takes the full-sequence output ``all_seq[N - 1]``:

    consumed(t) = t + 1 + D     for t + 1 + D < N   (an early decision on output t)
                = N             otherwise            (the full-sequence decision)

Evaluation computes everything from the parallel model's ``all_seq`` output in one pass
per batch (the step form emits the same numbers, see :func:`step_check`); a policy is an
elementwise predicate over per-output statistics (:class:`PrefixStats`), so sweeping its
parameter is a handful of tensor operations, and :class:`Recognizer` applies the very same
predicate frame by frame to the step form's outputs. The report, CSV and plot of
``lmustream eval --early-exit`` are in :mod:`lmustream.stream.early_exit_report`.

    policy = StableThreshold(frames=8, threshold=0.9)       # or PosteriorThreshold, MarginThreshold, ...
    outputs = prefix_outputs(model, [(features, targets)])  # features [n, N, n_mels], padded like the data
    point = outputs.score(policy)                           # accuracy, mean frames, frames saved, ...
    decision = Recognizer("asc40-lmuformer", policy).recognize(samples)  # decision.label, decision.frame
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from lmustream.errors import AudioError, ConfigError

DEFAULT_MAX_DROP = 0.005  # operating point: at most 0.5% absolute accuracy below the full sequence


# -- statistics of the running-mean posteriors ----------------------------------------------------
@dataclass(frozen=True)
class PrefixStats:
    """What the exit policies see: for each clip (rows) and each running-mean output t (columns).

    ``top1`` the largest softmax posterior, ``margin`` top-1 minus top-2 posterior, ``label``
    the argmax, ``run`` how many consecutive outputs up to and including t share ``label[t]``.
    All ``[n, T]`` (any leading shape works for the policies).
    """

    top1: torch.Tensor
    margin: torch.Tensor
    label: torch.Tensor
    run: torch.Tensor

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> "PrefixStats":
        """``logits [n, T, K]`` (the running-mean logits of n clips at T outputs)."""
        if logits.ndim != 3 or logits.shape[1] < 1 or logits.shape[2] < 2:
            raise ValueError(f"expected running-mean logits [clips, outputs, classes >= 2], got {list(logits.shape)}")
        p = torch.softmax(logits.double(), dim=-1)
        top = p.topk(2, dim=-1)
        label = top.indices[..., 0]
        return cls(top.values[..., 0], top.values[..., 0] - top.values[..., 1], label, run_lengths(label))

    @classmethod
    def concat(cls, parts: Sequence["PrefixStats"]) -> "PrefixStats":
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("top1", "margin", "label", "run")))

    @property
    def outputs(self) -> int:
        return self.label.shape[-1]


def run_lengths(label: torch.Tensor) -> torch.Tensor:
    """``label [n, T]`` -> ``[n, T]``: length of the run of equal labels ending at each t (>= 1)."""
    T = label.shape[-1]
    t = torch.arange(T, device=label.device).expand_as(label)
    changed = torch.ones_like(label, dtype=torch.bool)
    changed[..., 1:] = label[..., 1:] != label[..., :-1]
    run_start = torch.where(changed, t, torch.zeros_like(t)).cummax(dim=-1).values
    return t - run_start + 1


# -- exit policies --------------------------------------------------------------------------------
class ExitPolicy:
    """Decides, output by output, whether to answer now. Subclasses define :meth:`fires`."""

    name: str = "policy"

    def fires(self, stats: PrefixStats) -> torch.Tensor:
        """Elementwise: True where the policy would exit on that output."""
        raise NotImplementedError

    @property
    def params(self) -> dict:
        return {}

    def sweep_key(self):
        """``(statistic, gate, level)`` when the policy fires exactly where ``statistic >= level`` (on
        outputs passing ``gate``); lets a sweep find every level's first exit at once. None: no such form."""
        return None

    def describe(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _frames(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer (outputs), got {value!r}")
    return value


@dataclass(frozen=True)
class NeverExit(ExitPolicy):
    """Always wait for the whole utterance (the full-sequence baseline)."""

    name = "never"

    def fires(self, stats):
        return torch.zeros_like(stats.label, dtype=torch.bool)


@dataclass(frozen=True)
class PosteriorThreshold(ExitPolicy):
    """Exit once the running-mean posterior of the top class reaches ``threshold``."""

    threshold: float
    name = "threshold"

    def __post_init__(self):
        _probability("threshold", self.threshold)

    def fires(self, stats):
        return stats.top1 >= self.threshold

    def sweep_key(self):
        return ("top1", None, self.threshold)

    @property
    def params(self):
        return {"threshold": self.threshold}


@dataclass(frozen=True)
class MarginThreshold(ExitPolicy):
    """Exit once the top-1 posterior exceeds the top-2 posterior by ``margin``."""

    margin: float
    name = "margin"

    def __post_init__(self):
        _probability("margin", self.margin)

    def fires(self, stats):
        return stats.margin >= self.margin

    def sweep_key(self):
        return ("margin", None, self.margin)

    @property
    def params(self):
        return {"margin": self.margin}


@dataclass(frozen=True)
class StableArgmax(ExitPolicy):
    """Exit once the argmax has been the same for ``frames`` consecutive outputs."""

    frames: int
    name = "stable"

    def __post_init__(self):
        _frames("frames", self.frames)

    def fires(self, stats):
        return stats.run >= self.frames

    def sweep_key(self):
        return ("run", None, self.frames)

    @property
    def params(self):
        return {"frames": self.frames}


@dataclass(frozen=True)
class StableThreshold(ExitPolicy):
    """Exit once the argmax has held for ``frames`` outputs *and* its posterior reaches ``threshold``.

    Either test alone trips on a lucky early output (a confident first frame, or a wrong
    label that happens to repeat); together they need a confident answer that also persists.
    """

    frames: int
    threshold: float
    name = "combined"

    def __post_init__(self):
        _frames("frames", self.frames)
        _probability("threshold", self.threshold)

    def fires(self, stats):
        return (stats.run >= self.frames) & (stats.top1 >= self.threshold)

    def sweep_key(self):
        return ("top1", self.frames, self.threshold)

    @property
    def params(self):
        return {"frames": self.frames, "threshold": self.threshold}


POLICIES = {cls.name: cls for cls in (PosteriorThreshold, MarginThreshold, StableArgmax, StableThreshold, NeverExit)}


def make_policy(name: str, **params) -> ExitPolicy:
    """A policy by name (``threshold``, ``margin``, ``stable``, ``combined``, ``never``) and parameters."""
    if name not in POLICIES:
        raise ConfigError(f"unknown exit policy {name!r}; known: {', '.join(POLICIES)}")
    try:
        return POLICIES[name](**params)
    except TypeError as e:
        raise ConfigError(f"exit policy {name!r}: {e}") from None


def default_grid(outputs: int) -> dict[str, list[ExitPolicy]]:
    """Each policy with its parameter swept (thresholds dense near 1, where the useful ones lie)."""
    levels = sorted({round(1 - float(x), 8) for x in np.geomspace(0.7, 1e-5, 48)})
    # every k up to 16, then coarser: runs of 16+ outputs differ little from their neighbours
    ks = sorted({k for k in [*range(1, 17), *range(18, 33, 2), *range(36, 65, 4), *range(72, outputs + 1, 8)]
                 if k <= outputs})
    return {
        "threshold": [PosteriorThreshold(p) for p in levels],
        "margin": [MarginThreshold(m) for m in levels],
        "stable": [StableArgmax(k) for k in range(1, outputs + 1)],
        "combined": [StableThreshold(k, p) for k in ks for p in levels],
    }


# -- decisions over a set of clips ----------------------------------------------------------------
@dataclass(frozen=True)
class Decisions:
    """Where each clip's decision was taken: output index, input frames consumed, label."""

    output: torch.Tensor  # [n] long: running-mean output the decision used
    consumed: torch.Tensor  # [n] long: input frames consumed, look-ahead included
    label: torch.Tensor  # [n] long


def decide(policy: ExitPolicy, stats: PrefixStats, frames: int, lookahead: int) -> Decisions:
    """Apply ``policy`` to every clip: the first output where it fires while input is still arriving,
    else the full-sequence output (see the module docstring for the frame accounting)."""
    return _decide(policy.fires(stats), stats, frames, lookahead)


def last_early_output(frames: int, lookahead: int) -> int:
    """Largest output index a policy can exit on before the utterance's last input frame (-1: none)."""
    return frames - 2 - lookahead


def _decide(fires: torch.Tensor, stats: PrefixStats, frames: int, lookahead: int) -> Decisions:
    T = stats.outputs
    if T != frames:
        raise ValueError(f"statistics hold {T} outputs for {frames}-frame clips; expected one output per frame")
    last_early = last_early_output(frames, lookahead)
    window = fires[:, : max(last_early + 1, 0)]
    fired = window.any(dim=1) if window.shape[1] else torch.zeros(fires.shape[0], dtype=torch.bool)
    first = window.to(torch.uint8).argmax(dim=1) if window.shape[1] else torch.zeros(fires.shape[0], dtype=torch.long)
    output = torch.where(fired, first, torch.full_like(first, T - 1))
    consumed = torch.where(fired, output + 1 + lookahead, torch.full_like(output, frames))
    label = stats.label.gather(1, output[:, None])[:, 0]
    return Decisions(output, consumed, label)


@dataclass(frozen=True)
class OperatingPoint:
    """One policy setting measured on a set of clips."""

    policy: str
    params: dict
    accuracy: float
    mean_frames: float  # input frames consumed per clip, look-ahead included
    frames_saved: float  # 1 - mean_frames / N (N: the model's input length, as the full evaluation uses)
    audio_frames_saved: float  # the same counted against each clip's real audio frames (padding excluded)
    accuracy_drop: float  # full-sequence accuracy minus this accuracy

    def describe(self) -> str:
        return make_policy(self.policy, **self.params).describe()

    def to_dict(self) -> dict:
        return {"policy": self.policy, "params": dict(self.params), "describe": self.describe(),
                "accuracy": self.accuracy, "mean_frames": self.mean_frames, "frames_saved": self.frames_saved,
                "audio_frames_saved": self.audio_frames_saved, "accuracy_drop": self.accuracy_drop}


@dataclass
class PrefixOutputs:
    """The early-exit view of a model on a set of clips: per-output statistics and what is needed
    to score them (targets, input length N, look-ahead D, each clip's real audio frames)."""

    stats: PrefixStats
    targets: torch.Tensor  # [n] long
    frames: int  # N
    lookahead: int  # D
    audio_frames: torch.Tensor  # [n] long: frames before padding (<= N)
    frame_ms: float = 10.0

    def __post_init__(self):
        n = self.targets.shape[0]
        if self.stats.label.shape != (n, self.frames):
            raise ValueError(f"stats {list(self.stats.label.shape)} do not match {n} clips x {self.frames} frames")

    def subset(self, keep: torch.Tensor) -> "PrefixOutputs":
        """The clips selected by ``keep`` (a [n] bool mask or index tensor)."""
        s = self.stats
        return PrefixOutputs(PrefixStats(s.top1[keep], s.margin[keep], s.label[keep], s.run[keep]),
                             self.targets[keep], self.frames, self.lookahead, self.audio_frames[keep], self.frame_ms)

    @property
    def full_correct(self) -> torch.Tensor:
        return self.stats.label[:, -1] == self.targets

    @property
    def full_accuracy(self) -> float:
        return float(self.full_correct.double().mean())

    def score(self, policy: ExitPolicy) -> OperatingPoint:
        return self._score(policy, decide(policy, self.stats, self.frames, self.lookahead))

    def _score(self, policy: ExitPolicy, d: Decisions) -> OperatingPoint:
        accuracy = float((d.label == self.targets).double().mean())
        mean_frames = float(d.consumed.double().mean())
        audio = self.audio_frames.clamp(min=1)
        audio_saved = 1 - float(torch.minimum(d.consumed, audio).sum()) / float(audio.sum())
        return OperatingPoint(policy.name, policy.params, accuracy, mean_frames, 1 - mean_frames / self.frames,
                              audio_saved, self.full_accuracy - accuracy)

    def accuracy_vs_frames(self) -> list[dict]:
        """Accuracy of the streaming output after each number of input frames seen, 1..N.

        Frames seen s <= D: no output yet. D < s < N: the running-mean output for frame
        s - 1 - D. s = N: the full-sequence output (the look-ahead's last outputs come from the flush).
        """
        rows = []
        correct = (self.stats.label == self.targets[:, None]).double().mean(dim=0)  # [T]
        for seen in range(1, self.frames + 1):
            out = self.frames - 1 if seen == self.frames else seen - 1 - self.lookahead
            rows.append({"frames_seen": seen, "ms": seen * self.frame_ms,
                         "fraction": seen / self.frames, "output_frame": out if out >= 0 else None,
                         "accuracy": float(correct[out]) if out >= 0 else None})
        return rows

    def sweep(self, grid: dict[str, list[ExitPolicy]] | None = None) -> dict[str, list[OperatingPoint]]:
        """Every policy setting of ``grid`` (default :func:`default_grid`) scored on these clips.

        Equal to ``score`` of each policy; settings that differ only in a level (``sweep_key``)
        are decided together: the first output where a statistic reaches a level is where its
        running maximum does, found for all levels by one ``searchsorted`` per clip."""
        grid = default_grid(self.frames) if grid is None else grid
        return {name: self._score_many(policies) for name, policies in grid.items()}

    def _score_many(self, policies: list[ExitPolicy]) -> list[OperatingPoint]:
        points: list[OperatingPoint | None] = [None] * len(policies)
        groups: dict[tuple, list[tuple[int, float]]] = {}
        for i, policy in enumerate(policies):
            key = policy.sweep_key()
            if key is None:
                points[i] = self.score(policy)
            else:
                groups.setdefault(key[:2], []).append((i, key[2]))
        for (statistic, gate), items in groups.items():
            score = getattr(self.stats, statistic).double()
            if gate is not None:  # only outputs whose argmax has held for `gate` outputs count
                score = torch.where(self.stats.run >= gate, score, torch.full_like(score, -math.inf))
            levels = torch.tensor([level for _, level in items], dtype=torch.float64)
            d = self._first_crossings(score, levels)
            for j, (i, _) in enumerate(items):
                points[i] = self._score(policies[i], Decisions(d.output[:, j], d.consumed[:, j], d.label[:, j]))
        return points

    def _first_crossings(self, score: torch.Tensor, levels: torch.Tensor) -> Decisions:
        """Decisions ``[n, L]`` of "exit once score >= level" for every level at once."""
        n, T, D = score.shape[0], self.frames, self.lookahead
        window = max(last_early_output(T, D) + 1, 0)
        if window == 0:
            first = torch.zeros(n, len(levels), dtype=torch.long)
        else:
            peak = score[:, :window].cummax(dim=1).values.contiguous()
            first = torch.searchsorted(peak, levels.expand(n, -1).contiguous())  # window: never reached
        fired = first < window
        output = torch.where(fired, first, torch.full_like(first, T - 1))
        consumed = torch.where(fired, output + 1 + D, torch.full_like(output, T))
        return Decisions(output, consumed, self.stats.label.gather(1, output))


def pareto_front(points: Iterable[OperatingPoint]) -> list[OperatingPoint]:
    """The points no other point beats on both fewer frames and higher accuracy, by mean frames."""
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p.mean_frames, -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def best_point(points: Iterable[OperatingPoint], max_drop: float = DEFAULT_MAX_DROP) -> OperatingPoint | None:
    """The point with the fewest mean frames whose accuracy drop is at most ``max_drop`` (ties: more accurate)."""
    ok = [p for p in points if p.accuracy_drop <= max_drop + 1e-12]
    return min(ok, key=lambda p: (p.mean_frames, -p.accuracy)) if ok else None


# -- computing the outputs ------------------------------------------------------------------------
def padding_row(frontend) -> float:
    """The normalized value of the frames the data pipeline pads clips with (log-mel 0, normalized)."""
    from lmustream.audio.features import normalize

    return float(normalize(np.float64(0.0), frontend))


def audio_frames(features: torch.Tensor, pad_value: float) -> torch.Tensor:
    """``features [n, N, F]`` -> frames before the end padding (a padded row is constant at ``pad_value``)."""
    is_pad = (features - pad_value).abs().amax(dim=-1) <= 1e-3  # [n, N]
    # trailing run of padding rows: count from the end while all rows are padding
    trailing = is_pad.flip(-1).to(torch.int64).cumprod(dim=-1).sum(dim=-1)
    return features.shape[1] - trailing


@torch.no_grad()
def prefix_outputs(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, frontend=None,
                   progress: Callable | None = None) -> PrefixOutputs:
    """Run ``model`` (an LMUFormer) in ``all_seq`` mode over ``(features [b, N, F], targets [b])`` batches."""
    from lmustream.audio.features import FbankConfig

    frontend = frontend or FbankConfig()
    pad = padding_row(frontend)
    model = model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    parts, targets, audio, frames = [], [], [], None
    for x, y in (progress(batches) if progress else batches):
        x = torch.as_tensor(x)
        if frames is not None and x.shape[1] != frames:
            raise ValueError(f"every clip must have the same length, got {x.shape[1]} and {frames} frames")
        frames = x.shape[1]
        logits = model(x.to(device, dtype), mode="all_seq").transpose(0, 1).cpu()  # [b, N, K]
        parts.append(PrefixStats.from_logits(logits))
        targets.append(torch.as_tensor(y).long())
        audio.append(audio_frames(x.double(), pad))
    if not parts:
        raise ConfigError("no clips to evaluate")
    return PrefixOutputs(PrefixStats.concat(parts), torch.cat(targets), frames, model.config.lookahead,
                         torch.cat(audio), frontend.frame_shift_ms)


@torch.no_grad()
def step_check(model, features: torch.Tensor) -> dict:
    """Run the step form frame by frame over ``features [b, N, F]`` (then flush) and compare its
    running outputs with the parallel ``all_seq`` outputs the early-exit figures are computed from."""
    from lmustream.stream.step import StepLMUFormer

    model = model.eval()
    dtype = next(model.parameters()).dtype
    x = torch.as_tensor(features).to(dtype)
    step = StepLMUFormer(model)
    running, _, state = step.run(x, flush=True)  # [b, N, K]
    parallel = model(x, mode="all_seq").transpose(0, 1)
    if running.shape != parallel.shape:
        raise RuntimeError(f"step form emitted {list(running.shape)} outputs, parallel {list(parallel.shape)}")
    same_label = (running.argmax(-1) == parallel.argmax(-1)).double().mean()
    return {"clips": int(x.shape[0]), "frames": int(x.shape[1]),
            "max_abs_logit_difference": float((running - parallel).abs().max()),
            "argmax_agreement": float(same_label)}


# -- the push-to-talk recognizer ------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """A recognizer's answer.

    ``frame``: input frames consumed when it was made (look-ahead included: the decision on
    output t waited for frame t + D); ``output_frame``: the running-mean output it used;
    ``early``: taken before the utterance's input ended (False when the policy never fired).
    """

    label: str
    index: int
    frame: int
    output_frame: int
    confidence: float
    margin: float
    early: bool
    ms: float  # audio time the decision waited for (frame x the frontend's hop)
    posteriors: np.ndarray = field(repr=False)


class Recognizer:
    """Push-to-talk command recognition with early exit, frame by frame on the step form.

    The utterance starts at :meth:`start` (the button press). Push audio (:meth:`push_audio`,
    16 kHz float samples in chunks of any size) or log-mel frames (:meth:`push_frames`); each
    push returns the :class:`Decision` once ``policy`` fires, else None. :meth:`finish` (the
    button release) pads the utterance like the training data (to the model's N frames) and
    returns the full-sequence decision if none was taken (or the one taken). At most N input
    frames are used, as in evaluation; a decision taken on an output has consumed ``t + 1 + D``
    frames. Once decided, a push raises AudioError until :meth:`start` begins the next utterance.

        rec = Recognizer("asc40-lmuformer", StableThreshold(frames=8, threshold=0.9))
        rec.start()
        for chunk in microphone_chunks():
            decision = rec.push_audio(chunk)
            if decision:
                break
        decision = decision or rec.finish()
    """

    def __init__(self, model, policy: ExitPolicy | None = None, *, frames: int | None = None):
        from lmustream.audio.features import StreamingFbank
        from lmustream.models.artifact import ModelArtifact, load_model
        from lmustream.models.registry import resolve_model
        from lmustream.stream.step import StepLMUFormer

        artifact = model if isinstance(model, ModelArtifact) else load_model(resolve_model(model))
        self.labels = list(artifact.labels)
        self.frontend = artifact.frontend
        self.policy = policy if policy is not None else NeverExit()
        if not isinstance(self.policy, ExitPolicy):
            raise ConfigError(f"policy must be an ExitPolicy, got {type(self.policy).__name__}")
        config = artifact.model.config
        self.frames = _frames("frames", frames) if frames is not None else config.frames
        self.lookahead = config.lookahead
        self.n_mels = config.n_mels
        self.step_form = StepLMUFormer(artifact.model.eval())
        self._fbank = StreamingFbank(self.frontend, normalized=True)
        self._pad = padding_row(self.frontend)
        self.start()

    def start(self) -> None:
        """Begin an utterance: fresh model state, nothing consumed, no decision."""
        self._state = self.step_form.initial_state(1)
        self._fbank.reset()
        self.consumed = 0
        self._outputs = 0
        self._last_label: int | None = None
        self._run = 0
        self.decision: Decision | None = None

    def push_audio(self, samples) -> Decision | None:
        """Append 16 kHz mono samples (float, or int16); returns the decision once taken.
        After a decision, AudioError until :meth:`start` begins the next utterance."""
        self._refuse_after_decision("push_audio")
        return self.push_frames(self._fbank.push(samples))

    def push_frames(self, frames) -> Decision | None:
        """Append normalized log-mel frames ``[k, n_mels]`` (or one ``[n_mels]``).
        After a decision, AudioError until :meth:`start` begins the next utterance."""
        self._refuse_after_decision("push_frames")
        return self._push_frames(frames)

    def _refuse_after_decision(self, what: str) -> None:
        # returning the old decision again would drop the new audio without a word
        if self.decision is not None:
            raise AudioError(f"Recognizer.{what}: this utterance was already decided ({self.decision.label!r} "
                             f"after {self.decision.frame} frames); call start() for a new utterance")

    def _push_frames(self, frames) -> Decision | None:
        from lmustream.arrays import as_numpy

        array = as_numpy(frames)
        if array.dtype.kind not in "iuf":  # object or text: float() would turn None into NaN, or fail;
            # complex would lose its imaginary part, bool is no feature (the step form refuses both too)
            raise AudioError(f"Recognizer.push_frames: frames must be real numbers, got dtype {array.dtype}")
        x = torch.as_tensor(array.astype(np.float32, copy=False))
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.n_mels:
            raise AudioError(f"Recognizer.push_frames takes [frames, {self.n_mels}] log-mel frames, got "
                             f"{list(x.shape)}")
        finite = torch.isfinite(x).all(dim=1)
        if not bool(finite.all()):
            raise AudioError(f"Recognizer.push_frames: non-finite value (NaN or Inf) at frame "
                             f"{int(torch.argmin(finite.to(torch.uint8)))}")
        for frame in x:
            if self.consumed >= self.frames:
                break
            out, self._state = self.step_form.step(frame[None], self._state)
            self.consumed += 1
            if bool(out.valid[0]):
                decision = self._observe(out.running[0])
                if decision is not None:
                    return decision
            if self.consumed == self.frames:
                return self._final()
        return None

    def finish(self) -> Decision:
        """End of the utterance: pad to N frames as the training data does, flush, decide."""
        if self.decision is not None:
            return self.decision
        if self.consumed == 0:
            raise AudioError(f"Recognizer.finish() before any frame: push audio or frames first (one frame needs "
                             f"{self.frontend.window_length} samples at {self.frontend.sample_rate} Hz; "
                             f"{self._fbank.pending_samples} pushed)")
        missing = self.frames - self.consumed
        if missing > 0:
            pad = np.full((missing, self.n_mels), self._pad, np.float32)
            decision = self._push_frames(pad)
            if decision is not None:
                return decision
        return self.decision or self._final()

    def recognize(self, samples) -> Decision:
        """One whole utterance of audio: start, push, finish."""
        self.start()
        return self.push_audio(samples) or self.finish()

    def _observe(self, logits: torch.Tensor) -> Decision | None:
        """A new running-mean output: update the argmax run, ask the policy (while input still arrives)."""
        t = self._outputs
        self._outputs += 1
        stats = PrefixStats.from_logits(logits[None, None].double())
        label = int(stats.label)
        self._run = self._run + 1 if label == self._last_label else 1
        self._last_label = label
        stats = PrefixStats(stats.top1, stats.margin, stats.label, torch.full_like(stats.run, self._run))
        if t <= last_early_output(self.frames, self.lookahead) and bool(self.policy.fires(stats)):
            return self._decide(logits, t, t + 1 + self.lookahead, early=True)
        return None

    def _final(self) -> Decision:
        """All N frames are in: the look-ahead's last outputs come from the flush; decide on the last."""
        running, _, self._state = self.step_form.flush(self._state)
        self._outputs += running.shape[1]
        logits = self._state["last_running"][0]  # the last valid output (the flush's, or the last step's if D = 0)
        return self._decide(logits, self._outputs - 1, self.frames, early=False)

    def _decide(self, logits: torch.Tensor, output: int, consumed: int, early: bool) -> Decision:
        p = torch.softmax(logits.double(), dim=-1)
        top = p.topk(2)
        index = int(top.indices[0])
        self.decision = Decision(self.labels[index], index, consumed, output, float(top.values[0]),
                                 float(top.values[0] - top.values[1]), early,
                                 consumed * self.frontend.frame_shift_ms, p.numpy())
        return self.decision

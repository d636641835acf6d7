"""The step form: an LMUFormer that consumes one frame at a time with explicit state.

``StepLMUFormer(model)`` holds the same function as ``model`` with batch norms folded
into the adjacent convolution / linear where the algebra allows it, and runs it frame by
frame. Its state is a flat, ordered dict of named tensors (``state_names``) so that the
ONNX export can expose each one as a graph input and output.

Look-ahead. The reference patch embedding uses centred kernels, so its output for frame
t needs frames up to t + D (D = ``config.lookahead``, 5 for the paper's models). Each
embedding convolution keeps a ring buffer of its last k - 1 inputs and, when an input
arrives, emits the output for the frame k // 2 earlier. Worked example, one conv with
k = 3 (pad = 1), frames x0 x1 x2 then the end of the utterance:

    step x0: window [0, 0, x0]    -> output for frame -1: not a frame, masked out
    step x1: window [0, x0, x1]   -> y0  (the left zero is the parallel model's padding)
    step x2: window [x0, x1, x2]  -> y1
    flush:   window [x1, x2, 0]   -> y2  (the right zero is its padding at the end)

With L stacked convs, layer l's output index at step t is t - l * pad, valid when
0 <= index < n_real (the number of real frames so far); invalid outputs are replaced by
the next layer's padding value (0), and every stateful layer after the embedding (the
Legendre memory, LIF membranes, running mean) only advances on valid frames. ``flush``
feeds D padding steps, so the step outputs over an utterance equal the parallel model's
``all_seq`` (and its last value equals ``mean``) and its per-frame outputs, to float
rounding. Without ``flush`` / ``reset`` between utterances, the step form equals the
parallel model run on the concatenated stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmustream.errors import AudioError, ConfigError
from lmustream.models.exact import ACCUMULATOR, fold_bn, fold_into_linear
from lmustream.models.lmu import LegendreMemory, LMUMemoryState
from lmustream.models.lmuformer import LMUFormer, LMUFormerConfig
from lmustream.models.spiking import lif_update

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class _Conv:
    """A folded embedding convolution (weight [out, in*k], bias [out]) and its ring buffer's name."""

    name: str  # its folded weight and bias are the buffers {name}_W, {name}_b
    buffer: str
    in_channels: int


class StepLMUFormer(nn.Module):
    """Frame-by-frame form of an :class:`LMUFormer` (spiking or not). See the module docstring.

    Shapes (B streams): ``frame [B, n_mels]``, ``padding [B] bool`` (True for the zero frames
    ``flush`` feeds); outputs ``running [B, classes]`` (head on the running mean: the parallel
    model's ``all_seq`` at the emitted frame), ``per_frame [B, classes]`` (head on this frame's
    features: the parallel ``frames`` mode) and ``valid [B] bool`` (False while the look-ahead
    fills and after the end of an utterance: then the outputs repeat the last valid ones).
    """

    def __init__(self, model: LMUFormer):
        super().__init__()
        if not isinstance(model, LMUFormer):
            raise ConfigError(f"StepLMUFormer needs an LMUFormer, got {type(model).__name__}")
        if getattr(model, "adapter_config", None) is not None:
            # the folding below reads the base layers only: the adapter's paths would be dropped silently
            raise ConfigError("StepLMUFormer: the model has an adapter attached; merge it "
                              "(lmustream.adapters.merge) or remove it first")
        c: LMUFormerConfig = model.config
        self.config = c
        self.k = c.kernel_size
        self.pad = 0 if c.causal else c.kernel_size // 2  # frames of delay per embedding conv
        self.lookahead = c.lookahead
        self._state_shapes: dict[str, tuple[int, ...]] = {}
        self._convs: list[_Conv] = []
        self.memories = nn.ModuleList()
        self._spike_log: dict[str, list[torch.Tensor]] | None = None  # see record_spikes()
        # Spiking: every affine map before the head accumulates in float64, as the parallel model's
        # eval mode does (lmustream.models.exact); these folded weights stay float64.
        self._wide: set[str] = set()
        dtype = model.head.weight.dtype
        self._fold_embedding(model)
        self._fold_blocks(model)
        if c.spiking:
            self._affine("head_bn", model.head_bn)
            self._state("head.v", c.dim)
        self._linear("head", model.head.weight, model.head.bias, None)
        self._state("sum", c.dim)
        self._state("count")
        self._state("t")
        self._state("n_real")
        self._state("last_running", c.n_classes)
        self._state("last_frame", c.n_classes)
        self.to(dtype)

    # -- construction -------------------------------------------------------------------------
    def _state(self, name: str, *shape: int) -> None:
        self._state_shapes[name] = shape

    def _wide_dtype(self, name: str) -> torch.dtype | None:
        return ACCUMULATOR if self.config.spiking and name != "head" else None

    def _linear(self, name, weight, bias, bn) -> None:
        dtype = self._wide_dtype(name)
        W, b = fold_into_linear(weight, bias, bn, dtype)
        self.register_buffer(f"{name}_W", W)
        self.register_buffer(f"{name}_b", b)
        if dtype is not None:
            self._wide |= {f"{name}_W", f"{name}_b"}

    def _affine(self, name, bn) -> None:
        dtype = self._wide_dtype(name)
        scale, shift = fold_bn(bn, dtype)
        self.register_buffer(f"{name}_scale", scale)
        self.register_buffer(f"{name}_shift", shift)
        if dtype is not None:
            self._wide |= {f"{name}_scale", f"{name}_shift"}

    def _apply(self, fn, recurse=True):
        # .to(dtype) / .float() must not round the float64 folded weights of a spiking model
        wide = {name: getattr(self, name) for name in getattr(self, "_wide", ())}
        out = super()._apply(fn, recurse)
        for name, value in wide.items():
            setattr(self, name, value.to(device=getattr(self, name).device, dtype=ACCUMULATOR))
        return out

    def _map(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` of the folded layer ``name``, accumulated in its weights' dtype, in x's dtype."""
        W, b = getattr(self, f"{name}_W"), getattr(self, f"{name}_b")
        return (x.to(W.dtype) @ W.T + b).to(x.dtype)

    def _scale(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``scale * x + shift`` of the folded batch norm ``name``, in its dtype, returned in x's dtype."""
        scale, shift = getattr(self, f"{name}_scale"), getattr(self, f"{name}_shift")
        return (x.to(scale.dtype) * scale + shift).to(x.dtype)

    def _conv(self, name: str, conv: nn.Conv1d, bn: nn.BatchNorm1d | None) -> None:
        self._linear(name, conv.weight, None, bn)
        self._state(f"{name}.buf", conv.in_channels, self.k - 1)
        self._convs.append(_Conv(name, f"{name}.buf", conv.in_channels))

    def _fold_embedding(self, model: LMUFormer) -> None:
        c, e = self.config, model.embed
        if not c.spiking:
            # conv -> ReLU -> BN: the BN follows a ReLU, so it stays a per-channel affine.
            for i, (conv, bn) in enumerate(zip(e.convs, e.bns)):
                self._conv(f"embed{i}", conv, None)
                self._affine(f"embed{i}_bn", bn)
        else:
            # conv_i -> BN_i -> LIF: BN_i folds into conv_i, except the last, whose input is
            # also the embedding's residual output.
            for i, conv in enumerate(e.convs):
                last = i == len(e.convs) - 1
                self._conv(f"embed{i}", conv, None if last else e.bns[i])
                self._state(f"embed{i}.v", c.dim)
            self._affine(f"embed{len(e.convs) - 1}_bn", e.bns[-1])
            self._state("embed.delay", c.dim, max(self.pad, 1))
        self._conv("rpe", e.rpe, None)

    def _fold_blocks(self, model: LMUFormer) -> None:
        c = self.config
        for b, block in enumerate(model.blocks):
            lmu, ffn, p = block.lmu, block.ffn, f"block{b}"
            self.memories.append(LegendreMemory(c.memory_size, c.theta))  # A, B stay float64 in there
            self._state(f"{p}.m", c.memory_size)
            if not c.spiking:
                self._linear(f"{p}_Wu", lmu.W_u.weight, lmu.W_u.bias, None)
                self._linear(f"{p}_Wh", lmu.W_h.weight, lmu.W_h.bias, None)
                self._linear(f"{p}_proj", lmu.proj.weight, lmu.proj.bias, lmu.proj_bn)
                self._linear(f"{p}_fc1", ffn.fc1.weight, ffn.fc1.bias, ffn.fc1_bn)
                self._linear(f"{p}_fc2", ffn.fc2.weight, ffn.fc2.bias, ffn.fc2_bn)
                continue
            self._affine(f"{p}_in_bn", lmu.input_bn)
            self._linear(f"{p}_Wu", lmu.W_u.weight, lmu.W_u.bias, lmu.bn_u)
            self._affine(f"{p}_m_bn", lmu.bn_m)
            self._linear(f"{p}_Wh", lmu.W_h.weight, lmu.W_h.bias, lmu.bn_h)
            self._linear(f"{p}_proj", lmu.proj.weight, lmu.proj.bias, lmu.proj_bn)
            self._affine(f"{p}_fc1_bn", ffn.fc1_bn)
            self._linear(f"{p}_fc1", ffn.fc1.weight, ffn.fc1.bias, ffn.fc2_bn)
            self._linear(f"{p}_fc2", ffn.fc2.weight, ffn.fc2.bias, None)
            hidden = c.mlp_ratio * c.dim
            for name, size in (("v_in", c.dim), ("v_u", 1), ("v_m", c.memory_size), ("v_h", c.dim),
                               ("v_fc1", c.dim), ("v_fc2", hidden)):
                self._state(f"{p}.{name}", size)

    # -- state ----------------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        """Names of the state tensors, in the order ``forward`` takes and returns them."""
        return list(self._state_shapes)

    def initial_state(self, batch: int = 1, device=None) -> State:
        """State of ``batch`` fresh streams: zero buffers, membranes at rest, no frames seen."""
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ConfigError(f"initial_state: batch must be an integer >= 1 (streams), got {batch!r}")
        dtype = self.head_W.dtype
        state = {}
        for name, shape in self._state_shapes.items():
            state[name] = torch.zeros((int(batch), *shape), dtype=self._state_dtype(name, dtype),
                                      device=device or self.head_W.device)
        return state

    @staticmethod
    def _state_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
        # counters are integers; the Legendre memory accumulates in float64 whatever the model's dtype
        return torch.int64 if name in ("t", "n_real") else torch.float64 if name.endswith(".m") else dtype

    def _check_state(self, state: State, batch: int | None = None) -> int:
        """The number of streams of ``state``; ConfigError unless it is a state of this step form (names,
        shapes, dtypes, device) for ``batch`` streams. A state of another model would otherwise fail deep
        in torch, or not at all where only the class count differs."""
        if not isinstance(state, Mapping):
            raise ConfigError(f"state must be the dict initial_state() or step() returns, got {type(state).__name__}")
        if state.keys() != self._state_shapes.keys():
            missing = [n for n in self._state_shapes if n not in state]
            unexpected = sorted(str(n) for n in state if n not in self._state_shapes)
            raise ConfigError(f"state does not belong to this model (missing {missing}, unexpected {unexpected}): "
                              f"use initial_state({batch if batch is not None else 'batch'})")
        dtype, device = self.head_W.dtype, self.head_W.device
        if batch is None:
            t = state["t"]
            if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] < 1:
                raise ConfigError("state['t'] must be a [batch] tensor: use initial_state(batch)")
            batch = t.shape[0]
        for name, shape in self._state_shapes.items():
            v = state[name]
            if not isinstance(v, torch.Tensor):
                raise ConfigError(f"state[{name!r}] must be a tensor, got {type(v).__name__}")
            if v.ndim == len(shape) + 1 and v.shape[0] != batch:
                raise ConfigError(f"the state is for {v.shape[0]} streams, the frames for {batch}: "
                                  f"use initial_state({batch})")
            if v.shape[1:] != shape or v.ndim != len(shape) + 1:
                raise ConfigError(f"state[{name!r}] has shape {list(v.shape)}, this model's is {[batch, *shape]}: "
                                  f"the state belongs to another model")
            want = self._state_dtype(name, dtype)
            if v.dtype != want:
                raise ConfigError(f"state[{name!r}] is {v.dtype}, this step form's is {want}: use its "
                                  f"initial_state() (after any .to(dtype))")
            if v.device != device:
                raise ConfigError(f"state[{name!r}] is on {v.device}, the model on {device}")
        return batch

    def _frames(self, x, who: str, run: bool = False) -> torch.Tensor:
        """``x`` as a finite tensor in the model's dtype, or AudioError, as the C++ kernel's push_features
        judges it: floating point only (ints, bools and complex are refused, not cast), numpy arrays and
        nested lists converted. One finiteness pass per call: a NaN frame would poison the state for good."""
        n = self.config.n_mels
        dtype, device = self.head_W.dtype, self.head_W.device
        if not isinstance(x, torch.Tensor):
            try:
                array = np.asarray(x)
            except (ValueError, TypeError):  # ragged lists
                raise AudioError(f"{who}: features must be a rectangular array of numbers, got a ragged "
                                 f"{type(x).__name__}") from None
            if array.dtype.kind != "f":
                raise AudioError(f"{who}: features must be floating point, got {array.dtype}")
            # astype copies into a fresh, writable, native-endian array that torch can share
            x = torch.from_numpy(array.astype(np.float64 if array.dtype.itemsize > 4 else np.float32)).to(device)
        if not x.is_floating_point():
            raise AudioError(f"{who}: features must be floating point, got {x.dtype}")
        if run:
            if x.ndim != 3 or x.shape[2] != n or x.shape[0] < 1:
                raise AudioError(f"run() takes [batch >= 1, frames, {n}], got {list(x.shape)}")
        elif x.ndim not in (2, 3) or x.shape[-1] != n or x.shape[0] < 1:
            raise AudioError(f"{who} takes one frame per stream, [batch, {n}], or a chunk [batch, K, {n}], with "
                             f"batch >= 1; got {list(x.shape)}")
        if x.ndim == 3 and x.shape[1] == 0 and not run:
            raise AudioError(f"{who}: an empty chunk {list(x.shape)}: there is no frame to step")
        if x.device != device:
            raise AudioError(f"{who}: the features are on {x.device}, the model on {device}")
        given = x.dtype
        x = x.to(dtype)
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = [int(i) for i in (~finite.all(-1)).nonzero()[0]]
            where = f"stream {bad[0]}" + (f", frame {bad[1]}" if len(bad) > 1 else "")
            cast = f" after the cast from {given} to {dtype}" if given != dtype else ""
            raise AudioError(f"{who}: non-finite value (NaN or Inf){cast} at {where}; the state is unchanged")
        return x

    def _mask(self, mask, shape: tuple[int, ...], what: str) -> torch.Tensor:
        """``mask`` as a bool tensor of ``shape`` on the model's device (None: all False), or ConfigError."""
        device = self.head_W.device
        if mask is None:
            return torch.zeros(shape, dtype=torch.bool, device=device)
        if not isinstance(mask, torch.Tensor):
            try:
                array = np.asarray(mask)
            except (ValueError, TypeError):
                array = np.asarray(None)
            if array.dtype != np.bool_:
                raise ConfigError(f"{what} must be a bool tensor of shape {list(shape)}, got {type(mask).__name__}"
                                  f" of {array.dtype}")
            mask = torch.tensor(array, device=device)
        if mask.dtype != torch.bool:
            raise ConfigError(f"{what} must be a bool tensor of shape {list(shape)}, got {mask.dtype}")
        if tuple(mask.shape) != shape:
            raise ConfigError(f"{what} must have shape {list(shape)} (one flag per stream"
                              f"{' and frame' if len(shape) > 1 else ''}), got {list(mask.shape)}")
        if mask.device != device:
            raise ConfigError(f"{what} is on {mask.device}, the model on {device}")
        return mask

    # -- one frame ------------------------------------------------------------------------------
    def _lif(self, x, v, valid, name: str, threshold=None):
        c = self.config
        th = c.lif_threshold if threshold is None else threshold
        s, v_new, _ = lif_update(x, v, c.lif_tau, th, 0.0)
        keep = valid[:, None]
        s = torch.where(keep, s, torch.zeros_like(s))
        if self._spike_log is not None:
            self._spike_log.setdefault(name, []).append(s)
        return s, torch.where(keep, v_new, v)

    def _conv_step(self, conv: _Conv, x, state, new, valid_out):
        """Push x into the conv's ring buffer; return (output for the frame `pad` back, centre input)."""
        buf = state[conv.buffer]  # (B, Cin, k-1)
        window = torch.cat([buf, x[:, :, None]], dim=2)  # (B, Cin, k)
        new[conv.buffer] = window[:, :, 1:]
        y = self._map(conv.name, window.reshape(window.shape[0], -1))
        centre = window[:, :, self.k - 1 - self.pad]
        return torch.where(valid_out[:, None], y, torch.zeros_like(y)), centre

    def _layer_valid(self, t, n_real, delay: int):
        index = t - delay
        return (index >= 0) & (index < n_real)

    def forward(self, frame: torch.Tensor, padding: torch.Tensor, *state_tensors: torch.Tensor):
        """One step, state as positional tensors (the ONNX signature): returns
        ``(running, per_frame, valid, *new_state)``."""
        state = dict(zip(self.state_names, state_tensors))
        new: State = {}
        c = self.config
        t, n_real = state["t"], state["n_real"] + (~padding).to(torch.int64)
        x = torch.where(padding[:, None], torch.zeros_like(frame), frame)
        valid = [self._layer_valid(t, n_real, self.pad * (i + 1)) for i in range(len(self._convs))]

        # patch embedding, [B, C] per frame
        if not c.spiking:
            for i, conv in enumerate(self._convs[:-1]):
                y, _ = self._conv_step(conv, x, state, new, valid[i])
                y = F.relu(y) * getattr(self, f"embed{i}_bn_scale") + getattr(self, f"embed{i}_bn_shift")
                x = torch.where(valid[i][:, None], y, torch.zeros_like(y))
            r, centre = self._conv_step(self._convs[-1], x, state, new, valid[-1])
            z = centre + r
        else:
            last = len(self._convs) - 2
            for i, conv in enumerate(self._convs[:-1]):
                y, _ = self._conv_step(conv, x, state, new, valid[i])
                if i == last:
                    y_bn = self._scale(f"embed{i}_bn", y)
                    x, new[f"embed{i}.v"] = self._lif(y_bn, state[f"embed{i}.v"], valid[i], f"embed{i}")
                else:
                    x, new[f"embed{i}.v"] = self._lif(y, state[f"embed{i}.v"], valid[i], f"embed{i}")
            # z = y + rpe(s): y waits `pad` frames in a delay line to meet the rpe's output
            delay = torch.cat([state["embed.delay"], y[:, :, None]], dim=2)
            new["embed.delay"] = delay[:, :, 1:]
            y_delayed = delay[:, :, -1 - self.pad]
            r, _ = self._conv_step(self._convs[-1], x, state, new, valid[-1])
            z = y_delayed + r
        ok = valid[-1]

        for b in range(c.depth):
            z = self._block_step(b, z, state, new, ok)

        if c.spiking:
            z, new["head.v"] = self._lif(self._scale("head_bn", z), state["head.v"], ok, "head")
        keep = ok[:, None]
        new["sum"] = torch.where(keep, state["sum"] + z, state["sum"])
        new["count"] = torch.where(ok, state["count"] + 1, state["count"])
        running = (new["sum"] / new["count"].clamp(min=1)[:, None]) @ self.head_W.T + self.head_b
        per_frame = z @ self.head_W.T + self.head_b
        running = torch.where(keep, running, state["last_running"])
        per_frame = torch.where(keep, per_frame, state["last_frame"])
        new["last_running"], new["last_frame"] = running, per_frame
        new["t"], new["n_real"] = t + 1, n_real
        return (running, per_frame, ok, *[new[name] for name in self.state_names])

    def _block_step(self, b: int, z, state, new, ok):
        c, p = self.config, f"block{b}"
        memory = self.memories[b]
        W = lambda name: getattr(self, f"{p}_{name}_W")  # noqa: E731
        bias = lambda name: getattr(self, f"{p}_{name}_b")  # noqa: E731
        keep = ok[:, None]
        if not c.spiking:
            u = F.relu(z @ W("Wu").T + bias("Wu"))  # (B, 1)
            m, memory_state = memory.step(u[:, 0], LMUMemoryState(state[f"{p}.m"]))  # (B, M)  m_t = A m_{t-1} + B u_t
            new[f"{p}.m"] = torch.where(keep, memory_state.m, state[f"{p}.m"])
            h = F.relu(torch.cat([m, z], dim=1) @ W("Wh").T + bias("Wh"))  # (B, C)
            z = z + h @ W("proj").T + bias("proj")
            f = F.gelu(z @ W("fc1").T + bias("fc1"))  # (B, 4C)
            return z + F.relu(f @ W("fc2").T + bias("fc2"))

        s, new[f"{p}.v_in"] = self._lif(self._scale(f"{p}_in_bn", z), state[f"{p}.v_in"], ok, f"{p}.in",
                                        c.lmu_input_threshold)
        u, new[f"{p}.v_u"] = self._lif(self._map(f"{p}_Wu", s), state[f"{p}.v_u"], ok, f"{p}.u")  # (B, 1)
        m, memory_state = memory.step(u[:, 0], LMUMemoryState(state[f"{p}.m"]))  # (B, M)
        new[f"{p}.m"] = torch.where(keep, memory_state.m, state[f"{p}.m"])
        ms, new[f"{p}.v_m"] = self._lif(self._scale(f"{p}_m_bn", m), state[f"{p}.v_m"], ok, f"{p}.m")
        h, new[f"{p}.v_h"] = self._lif(self._map(f"{p}_Wh", torch.cat([ms, s], dim=1)), state[f"{p}.v_h"], ok,
                                        f"{p}.h")
        z = z + self._map(f"{p}_proj", h)
        f, new[f"{p}.v_fc1"] = self._lif(self._scale(f"{p}_fc1_bn", z), state[f"{p}.v_fc1"], ok, f"{p}.fc1")
        f, new[f"{p}.v_fc2"] = self._lif(self._map(f"{p}_fc1", f), state[f"{p}.v_fc2"], ok, f"{p}.fc2")
        return z + self._map(f"{p}_fc2", f)

    @contextlib.contextmanager
    def record_spikes(self):
        """Within the block, every LIF layer's spikes of every step are appended to the yielded dict
        (name -> list of [B, C] tensors, one per step, zeros on invalid steps). Not for export."""
        self._spike_log = {}
        try:
            yield self._spike_log
        finally:
            self._spike_log = None

    # -- convenience (Python) -------------------------------------------------------------------
    def step(self, frame: torch.Tensor, state: State, padding: torch.Tensor | None = None):
        """One frame ``[B, n_mels]`` (or a chunk ``[B, K, n_mels]``) -> ``(StepOutput, new_state)``.

        For a chunk, the outputs gain a K axis: running/per_frame ``[B, K, classes]``, valid ``[B, K]``;
        ``padding`` is then ``[B, K]``.

        ``frame`` may be a tensor, a numpy array or a nested list, of any floating dtype (cast to the
        model's); ``state=None`` starts ``B`` fresh streams. Everything is checked before any frame is
        stepped, so on an error the state is as it was: AudioError for features that are not floating
        point (ints, bools, complex), not of the shapes above with B, K >= 1, on another device, or
        not finite; ConfigError for a state of another model, dtype, device or batch size, or a
        ``padding`` that is not a bool tensor of shape ``[B]`` (``[B, K]``).
        """
        frame = self._frames(frame, "step()")
        B = frame.shape[0]
        state = self.initial_state(B) if state is None else state
        self._check_state(state, B)
        padding = self._mask(padding, tuple(frame.shape[:-1]), "padding")
        if frame.ndim == 2:
            return self._step(frame, padding, state)
        outs = []
        for k in range(frame.shape[1]):
            out, state = self._step(frame[:, k], padding[:, k], state)
            outs.append(out)
        return StepOutput(*(torch.stack([getattr(o, f) for o in outs], 1)
                            for f in ("running", "per_frame", "valid"))), state

    def _step(self, frame: torch.Tensor, padding: torch.Tensor, state: State):
        """One step of checked inputs (frame [B, n_mels] in the model's dtype, padding [B] bool)."""
        with torch.no_grad():
            running, per_frame, valid, *tensors = self(frame, padding, *[state[n] for n in self.state_names])
        return StepOutput(running, per_frame, valid), dict(zip(self.state_names, tensors))

    def run(self, frames: torch.Tensor, state: State | None = None, flush: bool = False):
        """Step over ``frames [B, K, n_mels]``; returns the valid outputs ``(running [B, n, classes],
        per_frame [B, n, classes])`` (n = frames emitted; all streams advance together) and the state.
        ``frames`` and ``state`` are checked as by :meth:`step` (K = 0 is allowed: with ``flush``, it
        ends the utterance)."""
        frames = self._frames(frames, "run()", run=True)
        B = frames.shape[0]
        state = self.initial_state(B) if state is None else state
        self._check_state(state, B)
        running, per_frame = [], []
        steps = [(frames[:, i], False) for i in range(frames.shape[1])]
        if flush:
            steps += [(frames.new_zeros(B, self.config.n_mels), True)] * self.lookahead
        with torch.no_grad():
            for frame, is_pad in steps:
                pad = torch.full((B,), is_pad, dtype=torch.bool, device=frames.device)
                out, state = self._step(frame, pad, state)
                if bool(out.valid.all()):
                    running.append(out.running)
                    per_frame.append(out.per_frame)
                elif bool(out.valid.any()):
                    raise ConfigError("streams in one run() must be in the same phase; use step() per frame")
        stack = lambda xs: torch.stack(xs, 1) if xs else frames.new_zeros(B, 0, self.config.n_classes)  # noqa
        return stack(running), stack(per_frame), state

    def flush(self, state: State):
        """End the utterance: feed the look-ahead's padding; returns the outputs it completes and the state."""
        B = self._check_state(state)
        empty = torch.zeros(B, 0, self.config.n_mels, dtype=self.head_W.dtype, device=self.head_W.device)
        return self.run(empty, state, flush=True)

    def reset(self, state: State, streams: torch.Tensor | None = None) -> State:
        """Fresh state for the streams selected by a [B] bool mask (all when None); ConfigError for a
        state that is not this step form's or a mask that is not bool [B]."""
        B = self._check_state(state)
        fresh = self.initial_state(B)
        if streams is None:
            return fresh
        streams = self._mask(streams, (B,), "reset(): streams")
        return {k: torch.where(streams.view(-1, *[1] * (v.ndim - 1)), fresh[k], v) for k, v in state.items()}


@dataclass
class StepOutput:
    running: torch.Tensor  # [B, classes]: head on the running mean of features (all_seq)
    per_frame: torch.Tensor  # [B, classes]: head on this frame's features
    valid: torch.Tensor  # [B] bool: False while the look-ahead fills / after an utterance ended

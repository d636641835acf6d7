"""Training-time augmentation on batches of normalized log-mel features (the paper's recipe).

All of it runs on the batch's device, with randomness drawn from an explicit generator so that
a resumed or distributed run draws the same numbers as an uninterrupted single-process one.

Background noise is mixed in the energy domain: a clip's mel energies E_x = exp(fbank) and a
noise segment's E_n add as E_x + g E_n, with g setting the SNR (mean energy ratio). This is
exact for the expected power of uncorrelated signals and needs no waveform at train time. The
clip's energy is measured over its own frames (``snr_reference: clip``): the frames that pad a short
clip to the model's length read log-mel 0 (energy 1 in every bin), which outweighs most speech, so
measured over the whole input (``input``, how the shipped recipes trained) the noise comes out
several dB louder than the SNR asked for (median about 7 dB for one-second Speech Commands clips).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lmustream.audio.features import HTK_MEL_BREAK_HZ, HTK_MEL_FACTOR, FbankConfig, mel_centre_hz
from lmustream.train.config import AugmentConfig

# A padding frame reads log-mel 0 in every bin; stored in float16 or a pack's 8-bit grid it comes
# back within about 0.02 of it. No frame of real audio is that flat across every bin.
PADDING_TOLERANCE = 0.05


def _uniform(g, n, low, high, device):
    return torch.rand(n, generator=g).to(device) * (high - low) + low


def _on_device(g: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` for batch-sized draws, seeded from ``g`` (``g`` itself on the CPU).

    Drawing megabytes of random numbers on the host and copying them over would take longer
    than the training step itself on a GPU; seeding from ``g`` keeps every run reproducible.
    """
    if device.type == "cpu":
        return g
    return torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))


def padding_frames(logmel: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: which frames of unnormalized ``logmel [B, N, M]`` are the zero padding of a short clip."""
    return (logmel.abs() <= PADDING_TOLERANCE).all(dim=2)


def random_windows(total: int, count: int, length: int, g: torch.Generator) -> torch.Tensor:
    """Frame indices ``[count, length]`` of ``count`` windows of ``length`` consecutive frames at random
    starts in a recording of ``total`` frames (wrapping round when it is shorter than a window)."""
    starts = torch.randint(0, max(total - length, 1), (count,), generator=g)
    return (starts[:, None] + torch.arange(length)[None, :]) % total


class FeatureAugmenter:
    """Applies the switchable augmentations of :class:`AugmentConfig` to ``(x [B, N, M], y [B, K])``."""

    def __init__(self, config: AugmentConfig, frontend: FbankConfig, noise: torch.Tensor | None = None):
        self.config = config
        self.frontend = frontend
        # noise: log-mel (unnormalized) of background recordings, concatenated over time [T, M]
        self.noise = noise
        self._noise_on: dict[torch.device, torch.Tensor] = {}  # noise copied once to each device used

    def _denormalize(self, x):
        return x * (2 * self.frontend.std) + self.frontend.mean

    def _normalize(self, logmel):
        return (logmel - self.frontend.mean) / (2 * self.frontend.std)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if not c.enabled:
            return x, y
        B, N, M = x.shape
        dev = x.device
        logmel = self._denormalize(x)
        padding = padding_frames(logmel)  # before the gain moves the padding off 0
        if c.gain_db > 0:  # gain g scales energies by g^2: adds 2 ln g to every log energy
            gain = _uniform(g, B, -c.gain_db, c.gain_db, dev) * (math.log(10) / 10)
            logmel = logmel + gain[:, None, None]
        if self.noise is not None and c.noise_prob > 0:
            logmel = self._mix_noise(logmel, g, padding)
        if c.channel_eq_db > 0:
            logmel = logmel + self._channel_curve(B, M, g).to(dev)[:, None, :]
        if c.lowpass_prob > 0:
            logmel = self._lowpass(logmel, g)
        x = self._normalize(logmel)
        if c.feature_noise > 0:
            x = x + c.feature_noise * torch.randn(x.shape, generator=_on_device(g, dev), device=dev)
        if c.time_shift > 0:
            shift = torch.randint(-c.time_shift, c.time_shift + 1, (B,), generator=g).to(dev)
            idx = (torch.arange(N, device=dev)[None, :] - shift[:, None]) % N
            x = torch.gather(x, 1, idx[:, :, None].expand(B, N, M))
        if c.freq_warp > 0 or c.time_stretch > 0:
            x = self._warp(x, g)
        x = self._mask(x, c.freq_mask, 2, g)
        x = self._mask(x, c.time_mask, 1, g)
        if c.mixup_rate > 0:
            x, y = self._mixup(x, y, g)
        return x, y

    def _mix_noise(self, logmel, g, padding):
        c, (B, N, M) = self.config, logmel.shape
        idx = random_windows(self.noise.shape[0], B, N, g)
        if logmel.device not in self._noise_on:
            self._noise_on[logmel.device] = self.noise.to(logmel.device)
        noise = self._noise_on[logmel.device][idx.to(logmel.device)]  # (B, N, M)
        snr = _uniform(g, B, c.snr_db[0], c.snr_db[1], logmel.device)
        use = (torch.rand(B, generator=g) < c.noise_prob).to(logmel.device)
        # log of mean energy per clip and of its noise, computed stably
        if c.snr_reference == "input":  # over the whole padded input
            lx = torch.logsumexp(logmel.flatten(1), 1) - math.log(logmel[0].numel())
            ln = torch.logsumexp(noise.flatten(1), 1) - math.log(noise[0].numel())
        else:  # over the clip's own frames (a clip of padding alone: over all)
            own = (~padding | padding.all(dim=1, keepdim=True))[:, :, None]  # [B, N, 1]
            count = torch.log(own.sum((1, 2)) * float(M))
            lx = torch.logsumexp(logmel.masked_fill(~own, -math.inf).flatten(1), 1) - count
            ln = torch.logsumexp(noise.masked_fill(~own, -math.inf).flatten(1), 1) - count
        log_gain = lx - ln - snr * (math.log(10) / 10)  # g = E_x / (E_n 10^(snr/10))
        mixed = torch.logaddexp(logmel, noise + log_gain[:, None, None])
        return torch.where(use[:, None, None], mixed, logmel)

    def _channel_curve(self, B, M, g):
        """Per clip, a microphone's frequency response over the mel bins, in log energy [B, M]:
        a tilt from -t to +t across the band plus a bump of height b and random centre and width,
        |t|, |b| <= channel_eq_db (real recordings differ from one another in exactly this)."""
        eq = self.config.channel_eq_db * (math.log(10) / 10)
        position = torch.linspace(-1.0, 1.0, M)[None, :]  # [1, M]
        tilt = _uniform(g, B, -eq, eq, "cpu")[:, None]
        bump = _uniform(g, B, -eq, eq, "cpu")[:, None]
        centre = _uniform(g, B, -1.0, 1.0, "cpu")[:, None]
        width = _uniform(g, B, 0.15, 0.6, "cpu")[:, None]
        return tilt * position + bump * torch.exp(-0.5 * ((position - centre) / width) ** 2)

    def _lowpass(self, logmel, g):
        """A band-limited channel: mel bins centred above a random cutoff fall to the log floor."""
        c, fe, B = self.config, self.frontend, logmel.shape[0]
        cutoff = _uniform(g, B, c.lowpass_hz[0], c.lowpass_hz[1], "cpu")
        use = torch.rand(B, generator=g) < c.lowpass_prob
        centre_hz = torch.from_numpy(mel_centre_hz(fe))
        cut = (use[:, None] & (centre_hz[None, :] > cutoff[:, None].double())).to(logmel.device)  # [B, M]
        return logmel.masked_fill(cut[:, None, :], math.log(fe.log_floor))

    def _source_mel_index(self, alpha: torch.Tensor) -> torch.Tensor:
        """For warp factors ``alpha [B]``: the (fractional) input mel bin each output bin reads, [B, M].

        A vocal tract shorter by 1/alpha scales every frequency by alpha, so output bin j, centred
        at f_j Hz, reads the input at f_j / alpha; the mel scale makes that a non-uniform shift.
        """
        fe = self.frontend
        low = HTK_MEL_FACTOR * math.log1p(fe.low_freq / HTK_MEL_BREAK_HZ)
        high = HTK_MEL_FACTOR * math.log1p(fe.upper_freq / HTK_MEL_BREAK_HZ)
        delta = (high - low) / (fe.n_mels + 1)
        centre_hz = torch.from_numpy(mel_centre_hz(fe))
        source_hz = centre_hz[None, :] / alpha.double()[:, None]
        source_mel = HTK_MEL_FACTOR * torch.log1p(source_hz / HTK_MEL_BREAK_HZ)
        return ((source_mel - low) / delta - 1).float()

    def _warp(self, x, g):
        """Vocal-tract length (frequency) and tempo (time) perturbation by resampling the feature grid."""
        c, (B, N, M), dev = self.config, x.shape, x.device
        alpha = torch.exp(_uniform(g, B, math.log(1 - c.freq_warp), math.log(1 + c.freq_warp), "cpu"))
        beta = _uniform(g, B, 1 - c.time_stretch, 1 + c.time_stretch, "cpu")
        mel = self._source_mel_index(alpha)  # [B, M] in bins
        centre = (N - 1) / 2
        frame = centre + (torch.arange(N, dtype=torch.float32)[None, :] - centre) / beta[:, None]  # [B, N]
        # grid_sample wants (x = mel, y = time) in [-1, 1] (align_corners=True: -1 and 1 are the end bins);
        # the [B, N, M, 2] grid is built where x is, from its [B, M] and [B, N] factors
        gx = (2 * mel / (M - 1) - 1).to(dev, x.dtype)[:, None, :].expand(B, N, M)
        gy = (2 * frame / (N - 1) - 1).to(dev, x.dtype)[:, :, None].expand(B, N, M)
        grid = torch.stack([gx, gy], -1)
        warped = torch.nn.functional.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border",
                                                 align_corners=True)
        return warped[:, 0]

    @staticmethod
    def _mask(x, width, dim, g):
        if width <= 0:
            return x
        B, size = x.shape[0], x.shape[dim]
        w = torch.randint(0, min(width, size) + 1, (B,), generator=g)
        start = (torch.rand(B, generator=g) * (size - w + 1)).long()
        pos = torch.arange(size)[None, :]
        masked = ((pos >= start[:, None]) & (pos < (start + w)[:, None])).to(x.device)  # (B, size)
        shape = (B, size, 1) if dim == 1 else (B, 1, size)
        return x.masked_fill(masked.view(shape), 0.0)

    def _mixup(self, x, y, g):
        c, B = self.config, x.shape[0]
        use = (torch.rand(B, generator=g) < c.mixup_rate).to(x.device)
        # torch's Beta sampler has no generator argument: draw it from a numpy stream seeded by g
        beta_rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        lam = torch.from_numpy(beta_rng.beta(c.mixup_alpha, c.mixup_alpha, B)).to(x.dtype)
        partner = torch.randperm(B, generator=g).to(x.device)
        lam = torch.where(use, lam.to(x.device), torch.ones_like(lam, device=x.device))
        x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partner]
        y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        return x, y

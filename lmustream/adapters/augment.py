"""Augmentation of enrollment clips: the trainer's augmenter, with noise mixed at a true SNR.

A clip shorter than the model's input is padded at the end with frames of log energy 0 (the
training recipe's padding). Those frames would dominate a clip's mean energy whenever the
speech is quieter than that, and the noise, scaled to an SNR against it, would drown the word.
Here the SNR is measured on the clip's own frames only and the padding stays as it is, so the
model keeps seeing the padding it was trained with.
"""

from __future__ import annotations

import math

import torch

from lmustream.train.augment import FeatureAugmenter, random_windows


class FewShotAugmenter(FeatureAugmenter):
    """:class:`~lmustream.train.augment.FeatureAugmenter` whose background noise skips the padding."""

    def __init__(self, config, frontend, noise=None, channel=None):
        super().__init__(config, frontend, noise)
        self.channel = channel  # a ChannelMatcher, or None

    def padding(self, x: torch.Tensor) -> torch.Tensor:
        """Which frames of normalized ``x [B, N, M]`` are padding, [B, N]."""
        pad_value = (0.0 - self.frontend.mean) / (2 * self.frontend.std)
        return torch.isclose(x, x.new_tensor(pad_value), rtol=0, atol=1e-6).all(dim=2)

    def channel_matcher(self, x_enroll: torch.Tensor, x_replay: torch.Tensor, prob: float):
        """A :class:`~lmustream.adapters.channel.ChannelMatcher` for normalized enrollment and replay clips."""
        from lmustream.adapters.channel import ChannelMatcher

        return ChannelMatcher(self._denormalize(x_enroll), self.padding(x_enroll), self._denormalize(x_replay),
                              self.padding(x_replay), math.log(self.frontend.log_floor), prob)

    def __call__(self, x, y, g, is_enroll=None):
        """``is_enroll [B]``: which clips are enrollment clips (for the channel matching), None: none."""
        self._padding = self.padding(x)
        if self.channel is not None and is_enroll is not None:
            x = self._normalize(self.channel(self._denormalize(x), self._padding, is_enroll, g))
        return super().__call__(x, y, g)

    def _mix_noise(self, logmel, g, padding=None):  # the padding as found before the channel matching
        c, (B, N, M) = self.config, logmel.shape
        noise = self.noise[random_windows(self.noise.shape[0], B, N, g)].to(logmel.device)  # (B, N, M)
        snr = torch.rand(B, generator=g).to(logmel.device) * (c.snr_db[1] - c.snr_db[0]) + c.snr_db[0]
        use = (torch.rand(B, generator=g) < c.noise_prob).to(logmel.device)
        audio = ~self._padding.to(logmel.device)  # (B, N)
        frames = audio.sum(1).clamp(min=1)
        # log mean energy of the clip's own frames, and of the noise segment
        lx = torch.logsumexp(logmel.masked_fill(~audio[:, :, None], -math.inf).flatten(1), 1) - torch.log(frames * M)
        ln = torch.logsumexp(noise.flatten(1), 1) - math.log(N * M)
        log_gain = lx - ln - snr * (math.log(10) / 10)  # noise energy = clip energy / 10^(snr/10)
        mixed = torch.logaddexp(logmel, noise + log_gain[:, None, None])
        return torch.where((use[:, None] & audio)[:, :, None], mixed, logmel)

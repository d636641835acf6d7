"""Hearing the enrollment clips through the replay clips' recording channel.

The few enrollment clips of a new word share one microphone, one room and one recording level;
the replay clips of the old words come from elsewhere (a synthetic corpus, another recorder),
with another level, spectral tilt and bandwidth. Fine-tuned on such clips, the new classes learn
the enrollment channel along with the words, and generalize poorly to other speakers. So each
enrollment clip is, at random, moved to the replay clips' channel: it keeps its words and its
speaker but takes the other level and tilt, and the new classes must learn the words.

A set's channel is its long-term average spectrum: the mean log-mel energy of the louder half
of each clip's frames (its speech), averaged over the clips. Moving a clip to the other channel
adds the difference of the two spectra. Mel bins the replay channel does not pass (a band-limited
corpus) are silenced; bins the enrollment microphone did not pass stay silent, since no filter
can restore them.
"""

from __future__ import annotations

import math

import torch

FLOOR_MARGIN = 0.5  # log energy within this of the floor: a bin the channel does not pass


def long_term_spectrum(logmel: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Mean log-mel [M] of the louder half of each clip's non-padding frames, averaged over clips.

    ``logmel`` [n, N, M] (unnormalized), ``padding`` [n, N] (True for padding frames)."""
    if logmel.ndim != 3 or padding.shape != logmel.shape[:2]:
        raise ValueError(f"expected log-mel [n, frames, mels] and padding [n, frames], got "
                         f"{tuple(logmel.shape)} and {tuple(padding.shape)}")
    spectra = []
    for clip, pad in zip(logmel, padding):
        frames = clip[~pad]
        if len(frames) == 0:
            continue
        energy = frames.mean(1)
        spectra.append(frames[energy >= energy.median()].mean(0))
    if not spectra:
        raise ValueError("no clip has a frame of audio")
    return torch.stack(spectra).mean(0)


class ChannelMatcher:
    """Moves enrollment clips to the replay clips' channel, each with probability ``prob``.

    Works on unnormalized log-mel ``[B, N, M]``; replay clips and padding frames are left as they are.
    """

    def __init__(self, enroll: torch.Tensor, enroll_padding: torch.Tensor, replay: torch.Tensor,
                 replay_padding: torch.Tensor, log_floor: float, prob: float = 0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f"channel matching probability must be in [0, 1], got {prob!r}")
        self.prob, self.log_floor = prob, log_floor
        self.enroll_spectrum = long_term_spectrum(enroll, enroll_padding)
        self.replay_spectrum = long_term_spectrum(replay, replay_padding)
        self.enroll_stopband = self.enroll_spectrum < log_floor + FLOOR_MARGIN  # [M]
        self.replay_stopband = self.replay_spectrum < log_floor + FLOOR_MARGIN
        self.passband = ~(self.enroll_stopband | self.replay_stopband)  # bins both channels pass
        self.curve = torch.where(self.passband, self.replay_spectrum - self.enroll_spectrum, 0.0)  # [M]

    def describe(self, centre_hz) -> str:
        """One line for the log: how the two channels differ (``centre_hz``: each mel bin's centre)."""
        if not self.passband.any():
            return "channel: the enrollment and replay clips share no frequency band"
        level_db = float((self.enroll_spectrum - self.replay_spectrum)[self.passband].mean()) * 10 / math.log(10)
        parts = [f"enrollment speech {abs(level_db):.0f} dB {'louder' if level_db >= 0 else 'quieter'} than replay"]
        silent_in_both = self.enroll_stopband & self.replay_stopband  # an empty mel filter, not a channel
        for name, stopband in (("enrollment", self.enroll_stopband), ("replay", self.replay_stopband)):
            own = (stopband & ~silent_in_both).nonzero().flatten()
            if len(own) == 0:
                continue
            passing = (~stopband).nonzero().flatten()
            if len(passing) and int(own.min()) > int(passing.max()):  # a band limit: nothing above some frequency
                parts.append(f"{name} clips silent above {float(centre_hz[int(own.min())]) / 1000:.1f} kHz")
            else:
                parts.append(f"{name} clips silent in {len(own)} mel bins")
        return f"channel: {'; '.join(parts)}; {self.prob:.0%} of the enrollment clips heard through the replay channel"

    def __call__(self, logmel: torch.Tensor, padding: torch.Tensor, is_enroll: torch.Tensor,
                 g: torch.Generator) -> torch.Tensor:
        dev = logmel.device
        use = (torch.rand(logmel.shape[0], generator=g) < self.prob).to(dev) & is_enroll.to(dev)
        moved = (logmel + self.curve.to(dev)).masked_fill(self.replay_stopband.to(dev), self.log_floor)
        moved = moved.clamp(min=self.log_floor)
        keep = ~use[:, None, None] | padding.to(dev)[:, :, None]
        return torch.where(keep, logmel, moved)

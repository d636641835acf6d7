"""False alarms per hour on a negative stream, through the keyword detector."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.adapters.evaluate import false_alarms, frame_logits
from lmustream.errors import ConfigError
from lmustream.models import LMUFormer, get_config
from lmustream.models.artifact import ModelArtifact
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.torch_stream import TorchKernel

LABELS = ["yes", "no", "_unknown_"]


@pytest.fixture(scope="module")
def artifact():
    torch.manual_seed(0)
    return ModelArtifact(randomize_batchnorm(LMUFormer(get_config("lmuformer-tiny", n_classes=3)), 0).eval(), LABELS)


def negatives(tmp_path, seconds=(3.0, 2.0)):
    rng = np.random.default_rng(0)
    paths = []
    for i, s in enumerate(seconds):
        path = tmp_path / f"neg{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32), 16000)
        paths.append(path)
    return paths


def test_frame_logits_equal_the_streaming_output(artifact):
    samples = (0.1 * np.random.default_rng(1).standard_normal(24000)).astype(np.float32)
    stream = TorchKernel(artifact).open()
    streamed = np.concatenate([stream.push(samples[:7000]), stream.push(samples[7000:]), stream.flush()])
    assert np.abs(frame_logits(artifact, samples) - streamed).max() <= 1e-4


def test_false_alarms_per_hour(artifact, tmp_path):
    files = negatives(tmp_path)
    hours = 5.0 / 3600
    anything = false_alarms(artifact, files, ["yes", "no"], threshold=0.0)  # every keyword fires
    assert anything.alarms >= 2 and anything.hours == pytest.approx(hours)
    assert anything.per_hour == pytest.approx(anything.alarms / hours)
    assert sum(anything.per_keyword.values()) == anything.alarms
    nothing = false_alarms(artifact, files, ["yes", "no"], threshold=1.0)
    assert nothing.alarms == 0 and nothing.per_hour == 0
    with pytest.raises(ConfigError, match="maybe"):
        false_alarms(artifact, files, ["maybe"])
    with pytest.raises(ConfigError, match="no negative"):
        false_alarms(artifact, [], ["yes"])

"""Voice-activity trimming and the enrollment flow, with a scripted microphone."""

import numpy as np
import pytest
import soundfile as sf

from lmustream.errors import ConfigError
from lmustream.stream import microphone
from lmustream.stream.enroll import cut_clip, enroll, speech_region
from lmustream.stream.microphone import MicrophoneError, level_dbfs, pick_input_device
from tests.detect.fakes import silence, tone


def noisy(x, rng, level=0.002):
    return (x + level * rng.standard_normal(x.size)).astype(np.float32)


def test_speech_region_finds_the_word(rng):
    x = noisy(np.concatenate([silence(0.7), tone(0.35, 300), silence(0.02), tone(0.2, 800), silence(0.9)]), rng)
    region = speech_region(x, 16000)
    start, end = region.seconds(16000)
    assert start == pytest.approx(0.7, abs=0.015) and end == pytest.approx(1.27, abs=0.015)
    assert speech_region(noisy(silence(2.0), rng), 16000) is None
    click = noisy(silence(2.0), rng)
    click[16000:16020] = 0.9  # 1 ms: not speech, but nothing else stands out either
    assert speech_region(click, 16000).end - speech_region(click, 16000).start <= 160


def test_cut_clip_centres_the_word(rng):
    x = noisy(np.concatenate([silence(0.2), tone(0.3, 300), silence(1.5)]), rng)
    region = speech_region(x, 16000)
    clip = cut_clip(x, region, 16000)
    assert clip.size == 16000
    inner = speech_region(clip, 16000)
    assert inner.start / 16000 == pytest.approx(0.2, abs=0.02)  # as close to centred as the recording allows
    long_word = noisy(np.concatenate([silence(0.3), tone(1.4, 300), silence(0.3)]), rng)
    assert cut_clip(long_word, speech_region(long_word, 16000), 16000).size == pytest.approx(1.4 * 16000, abs=200)


class ScriptedMicrophone:
    """Hands out prepared takes at 44.1 kHz."""

    sample_rate = 44100

    def __init__(self, takes):
        self.takes = list(takes)
        self.drained = 0

    def drain(self):
        self.drained += 1

    def record(self, seconds):
        take = self.takes.pop(0)
        assert take.size == int(seconds * self.sample_rate)
        return take


def take(rng, word=True, seconds=2.0, rate=44100):
    x = silence(seconds, rate)
    if word:
        x[int(0.8 * rate):int(1.2 * rate)] = tone(0.4, 440, rate)
    return noisy(x, rng)


def test_enroll_saves_trimmed_16k_clips_and_asks_again_after_silence(tmp_path, rng):
    mic = ScriptedMicrophone([take(rng), take(rng, word=False), take(rng), take(rng)])
    said = []
    saved = enroll(mic, "hello", 3, tmp_path, speaker="ann", seconds=2.0, pause=0, say=said.append)
    assert [p.name for p in saved] == ["ann_nohash_0.wav", "ann_nohash_1.wav", "ann_nohash_2.wav"]
    assert any("no speech heard" in s for s in said) and mic.drained == 4
    for path in saved:
        x, rate = sf.read(path)
        assert rate == 16000 and x.size == 16000
        region = speech_region(x, rate)
        assert region.start / rate == pytest.approx(0.3, abs=0.03)
    more = enroll(ScriptedMicrophone([take(rng)]), "hello", 1, tmp_path, speaker="ann", pause=0, say=said.append)
    assert more[0].name == "ann_nohash_3.wav"  # never overwrites


def test_enroll_gives_up_and_checks_arguments(tmp_path, rng):
    with pytest.raises(ConfigError, match="no speech heard in 2 takes"):
        enroll(ScriptedMicrophone([take(rng, word=False)] * 2), "hi", 1, tmp_path, retries=1, pause=0,
               say=lambda s: None)
    for kwargs, message in (({"word": "../x"}, "--word"), ({"speaker": "a b"}, "--speaker"),
                            ({"count": 0}, "--count"), ({"seconds": 0.1}, "--seconds")):
        args = {"word": "hi", "count": 1, **kwargs}
        with pytest.raises(ConfigError, match=message):
            enroll(ScriptedMicrophone([]), args.pop("word"), args.pop("count"), tmp_path, pause=0, **args)


def test_device_errors_are_clear(monkeypatch):
    monkeypatch.setattr(microphone, "input_devices", lambda: [])
    with pytest.raises(MicrophoneError, match="no audio input device"):
        pick_input_device(None)
    devices = [microphone.InputDevice(0, "USB mic", "ALSA", 1, 48000, False),
               microphone.InputDevice(3, "pulse", "ALSA", 32, 44100, True)]
    monkeypatch.setattr(microphone, "input_devices", lambda: devices)
    assert pick_input_device(None).index == 3 and pick_input_device("usb").index == 0
    assert pick_input_device("3").name == "pulse"
    with pytest.raises(MicrophoneError, match="no input device matches 'webcam'"):
        pick_input_device("webcam")


def test_missing_portaudio_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(MicrophoneError, match="PortAudio is missing.*libportaudio2"):
        microphone.import_sounddevice()


def test_level_meter():
    assert level_dbfs(np.zeros(100, np.float32)) == -120.0
    assert level_dbfs(np.ones(100, np.float32)) == pytest.approx(0.0, abs=1e-6)
    assert level_dbfs(tone(0.1, 440, amplitude=0.1)) == pytest.approx(-23.0, abs=0.1)

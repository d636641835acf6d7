"""``lmustream finetune`` end to end on a tiny model and generated clips."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.adapters import read_adapter_header
from lmustream.adapters.finetune import FinetuneConfig, finetune
from lmustream.audio.features import FbankConfig
from lmustream.cli import main
from lmustream.models import LMUFormer, get_config
from lmustream.models.artifact import ModelArtifact, load_model, save_model

OLD = ["hum", "hiss"]
NEW = ["beep", "chirp"]
RATE = 16000


def sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """0.8 s of a class-specific sound in a random place of a 1 s clip: easy to tell apart."""
    t = np.arange(int(0.8 * RATE)) / RATE
    f0 = rng.uniform(0.9, 1.1)
    if kind == "hum":
        x = np.sin(2 * np.pi * 150 * f0 * t) + 0.5 * np.sin(2 * np.pi * 300 * f0 * t)
    elif kind == "hiss":
        x = rng.standard_normal(t.size)
    elif kind == "beep":
        x = np.sin(2 * np.pi * 2500 * f0 * t) * (np.sin(2 * np.pi * 4 * t) > 0)
    else:  # chirp: a rising sweep
        x = np.sin(2 * np.pi * (400 + 1500 * t / t[-1]) * f0 * t)
    clip = 0.01 * rng.standard_normal(RATE)
    start = rng.integers(0, RATE - t.size)
    clip[start:start + t.size] += 0.3 * x
    return clip.astype(np.float32)


def write_words(root, words, per_word, seed):
    rng = np.random.default_rng(seed)
    for word in words:
        (root / word).mkdir(parents=True)
        for i in range(per_word):
            sf.write(root / word / f"spk{i % 2}_{i}.wav", sound(word, rng), RATE)
    return root


def pretrained_base(root):
    """A tiny model whose features tell the four sounds apart (a backbone with general features),
    deployed with the two old classes only: its head's rows for the new sounds are dropped."""
    from lmustream.adapters.data import list_clips, load_clip_set

    torch.manual_seed(0)
    model = LMUFormer(get_config("lmuformer-tiny", n_classes=4, frames=100))
    clips = load_clip_set(list_clips(write_words(root / "pretrain", OLD + NEW, 8, 0), "pretrain"), FbankConfig(),
                          100, cache_dir=False)
    x, y = clips.x, clips.targets(OLD + NEW)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(40):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(step))[:16]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    model.eval()
    old_head = torch.nn.Linear(model.head.in_features, 2)
    with torch.no_grad():
        old_head.weight.copy_(model.head.weight[:2])
        old_head.bias.copy_(model.head.bias[:2])
    model.head = old_head
    model.config = replace(model.config, n_classes=2)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    save_model(root / "base.safetensors", ModelArtifact(pretrained_base(root), OLD))
    return {"root": root, "model": root / "base.safetensors",
            "new": write_words(root / "new", NEW, 6, 1), "replay": write_words(root / "replay", OLD, 6, 2),
            "eval_new": write_words(root / "eval_new", NEW, 6, 3), "eval_old": write_words(root / "eval_old", OLD, 6, 4)}


@pytest.mark.parametrize("method", ["aflora", "lora", "vera", "head", "full"])
def test_finetune_teaches_new_words_and_writes_a_deployable_model(setup, tmp_path, method):
    out = tmp_path / "taught.safetensors"
    # No channel matching: these synthetic sounds share one channel, and moving the new sounds' spectra
    # toward the replay sounds' only blurs them (tests/adapters/test_channel.py covers the matching).
    config = FinetuneConfig(method=method, epochs=20, batch_size=4, threads=1, lr=None if method == "full" else 1e-3,
                            channel_match=0.0, precision="fp32")  # one arithmetic on every CPU
    lines = []
    result = finetune(setup["model"], setup["new"], config=config, out=out, replay=setup["replay"],
                      eval_new=setup["eval_new"], eval_old=setup["eval_old"], cache_dir=False, progress=False,
                      log=lines.append)
    assert result.labels == OLD + NEW and result.new_labels == NEW
    assert result.enrollment_clips == 12 and result.replay_clips == 12 and result.steps == 60
    assert result.new_accuracy >= 0.75, result.new_accuracy  # 2 new sounds, chance is 0.25
    assert 0 <= result.old_accuracy_before <= 1 and 0 <= result.old_accuracy_after <= 1
    assert result.seconds > 0 and result.train_seconds > 0 and result.peak_memory_mb > 50
    taught = load_model(out)
    assert taught.labels == OLD + NEW and taught.model.config.n_classes == 4
    header = read_adapter_header(tmp_path / "taught.adapter.safetensors")
    assert header["adapter"]["method"] == method and header["labels"] == OLD + NEW
    if method in ("aflora", "lora", "vera"):  # AFLoRA adapts the patch embedding by default, the others every layer
        assert list(header["adapter"]["target_modules"]) == (["embed.*"] if method == "aflora" else ["*"])
        from safetensors import safe_open
        with safe_open(str(tmp_path / "taught.adapter.safetensors"), "pt") as f:
            layers = {name.split(".")[0] for name in f.keys() if not name.startswith("head")}
        assert layers == ({"embed"} if method == "aflora" else {"embed", "blocks"}), layers
    if method == "aflora":
        assert result.freezes and all(f"froze {f['matrix']}" in " ".join(lines) for f in result.freezes)
        assert result.avg_trainable_params < result.trainable_params_start  # matrices froze along the way
    else:
        assert result.avg_trainable_params == result.trainable_params_start
    if method == "head":
        assert result.avg_trainable_adapter_params == 0
    json.dumps(result.to_dict())  # the CLI's --json


def test_finetuned_model_is_read_with_softmax_posteriors_and_without_the_base_calibration(setup, tmp_path):
    """Fine-tuning trains the logits with softmax cross-entropy: a detector must not read them as the
    per-class sigmoids of a BCE-trained base (they would fire on anything), nor with the base's thresholds."""
    from lmustream.stream.backend import model_detector_defaults, model_training_loss
    from lmustream.stream.detector import Detector

    base = load_model(setup["model"])
    base.extra = {"recipe": {"optim": {"loss": "bce"}}, "detector": {"threshold": 0.7}}
    assert model_training_loss(base) == "bce" and model_detector_defaults(base) == {"threshold": 0.7}
    out = tmp_path / "taught.safetensors"
    lines = []
    result = finetune(base, setup["new"], config=FinetuneConfig(method="head", epochs=1, threads=1), out=out,
                      cache_dir=False, progress=False, log=lines.append)
    for model in (result.artifact, str(out)):
        assert model_training_loss(model) == "ce"
        assert model_detector_defaults(model) == {}
        assert Detector(model, backend="torch").config.posterior == "softmax"
    assert load_model(out).extra["recipe"] == base.extra["recipe"]  # the base's recipe stays on record
    assert any("calibrat" in line for line in lines)
    assert any("no replay clips" in line for line in lines)


def test_enrollment_advice_warns_of_too_few_clips_and_no_replay():
    from lmustream.adapters.finetune import ADVISED_CLIPS, enrollment_advice

    assert enrollment_advice(["a"] * ADVISED_CLIPS + ["b"] * 10, has_replay=True) == []
    lines = enrollment_advice(["a"] * (ADVISED_CLIPS - 1) + ["b"] * 10 + ["c"], has_replay=True)
    assert len(lines) == 1 and f"a ({ADVISED_CLIPS - 1}), c (1)" in lines[0] and "b (" not in lines[0]
    lines = enrollment_advice(["a"] * 10, has_replay=False)
    assert len(lines) == 1 and "--replay" in lines[0]


def test_finetune_cli_json(setup, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    code = main(["finetune", "--model", str(setup["model"]), "--new-words", str(setup["new"]), "--method", "lora",
                 "--rank", "2", "--epochs", "2", "--batch-size", "6", "--out", str(out), "--eval-new",
                 str(setup["eval_new"]), "--eval-old", str(setup["eval_old"]), "--json", "--no-cache", "--threads", "1",
                 "--precision", "bf16"])
    assert code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["precision"] == "bf16"
    assert "no replay clips" in captured.err  # the advice reaches stderr when stdout is JSON
    for key in ("new_accuracy", "old_accuracy_before", "old_accuracy_after", "avg_trainable_params", "seconds"):
        assert isinstance(result[key], float), key
    assert out.is_file() and (tmp_path / "m.adapter.safetensors").is_file()


def test_bf16_trains_under_autocast_and_writes_a_float32_model(setup, tmp_path, monkeypatch):
    from lmustream.adapters import finetune as ft

    autocast_in_training = []
    add_adapter = ft.add_adapter

    def add_and_watch(model, config):  # records, for every training forward pass, whether autocast was on
        model.embed.register_forward_hook(
            lambda module, inputs, output: autocast_in_training.append(torch.is_autocast_enabled("cpu"))
            if torch.is_grad_enabled() else None)
        return add_adapter(model, config)

    monkeypatch.setattr(ft, "add_adapter", add_and_watch)
    out = tmp_path / "taught.safetensors"
    config = FinetuneConfig(epochs=20, batch_size=4, threads=1, lr=1e-3, channel_match=0.0, precision="bf16")
    result = finetune(setup["model"], setup["new"], config=config, out=out, replay=setup["replay"],
                      eval_new=setup["eval_new"], cache_dir=False, progress=False)
    assert result.precision == "bf16" and result.freezes  # AFLoRA's single products ran under autocast too
    assert len(autocast_in_training) == result.steps and all(autocast_in_training)
    assert result.new_accuracy >= 0.75, result.new_accuracy
    taught = load_model(out)
    assert all(p.dtype == torch.float32 for p in taught.model.parameters())
    assert taught.extra["finetune"]["precision"] == "bf16"  # the header records how it was trained


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from lmustream.adapters import finetune as ft
    from lmustream.errors import ConfigError

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(ft, "native_bfloat16", lambda: native)
        assert FinetuneConfig().compute_precision() == expected
        assert FinetuneConfig(precision="fp32").compute_precision() == "fp32"
        assert FinetuneConfig(precision="bf16").compute_precision() == "bf16"
    assert isinstance(ft.native_bfloat16(), bool)
    with pytest.raises(ConfigError, match="precision"):
        FinetuneConfig(precision="fp16")


def test_finetune_cli_errors(setup, tmp_path, capsys):
    assert main(["finetune", "--model", str(setup["model"]), "--new-words", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["finetune", "--model", str(tmp_path / "missing.safetensors"), "--new-words", str(setup["new"])]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert main(["finetune", "--model", str(setup["model"]), "--new-words", str(setup["new"]), "--method", "head",
                 "--rank", "4", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--rank" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "--model", str(setup["model"]), "--new-words", str(setup["new"]), "--method", "dora"])



def test_finetune_names_an_unreadable_clip_and_a_run_too_short_for_aflora(setup, tmp_path, capsys):
    import shutil

    words = shutil.copytree(setup["new"], tmp_path / "new")
    (words / NEW[0] / "broken.wav").write_bytes(b"not audio")
    # 12 clips at 16 per step for 1 epoch: one step, no room for AFLoRA's warm-ups and schedule.
    assert main(["finetune", "--model", str(setup["model"]), "--new-words", str(words), "--epochs", "1",
                 "--out", str(tmp_path / "x.safetensors"), "--no-cache", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "skipped 1 unusable audio file" in err and "broken.wav" in err  # never dropped silently
    assert "1 optimizer step(s)" in err and "raise --epochs" in err

def test_new_word_bias_lowers_only_the_new_words_logits_in_what_is_written(setup, tmp_path):
    """Two runs alike but for new_word_bias: the written models differ by exactly -B on the new words'
    logits and nowhere else; the adapter file carries it too, and the header records it."""
    from lmustream.adapters import load_adapter
    from lmustream.errors import ConfigError

    x = torch.randn(5, 40, 128, generator=torch.Generator().manual_seed(0))
    logits = {}
    for bias in (0.0, 2.5):
        config = FinetuneConfig(method="lora", rank=2, epochs=2, batch_size=4, threads=1, channel_match=0.0,
                                new_word_bias=bias)
        out = tmp_path / f"b{bias}.safetensors"
        finetune(setup["model"], setup["new"], config=config, out=out, replay=setup["replay"], cache_dir=False,
                 progress=False, log=lambda line: None)
        taught = load_model(out)
        assert taught.extra["finetune"]["new_word_bias"] == bias
        with torch.no_grad():
            logits[bias] = taught.model.eval()(x)
            unmerged = load_model(setup["model"]).model
            load_adapter(unmerged, tmp_path / f"b{bias}.adapter.safetensors")
            torch.testing.assert_close(unmerged.eval()(x), logits[bias], atol=1e-5, rtol=1e-5)
    shift = logits[2.5] - logits[0.0]
    torch.testing.assert_close(shift[:, :2], torch.zeros(5, 2), atol=1e-5, rtol=0)  # OLD
    torch.testing.assert_close(shift[:, 2:], torch.full((5, 2), -2.5), atol=1e-5, rtol=0)  # NEW
    with pytest.raises(ConfigError, match="new_word_bias"):
        FinetuneConfig(new_word_bias=float("nan"))


def test_a_run_repeats_wherever_its_clips_are_stored(setup, tmp_path):
    """The same replay clips in another folder: the same clips kept, in the same order, the same model."""
    import shutil

    from lmustream.adapters.data import list_clips, rank_clips

    moved = shutil.copytree(setup["replay"], tmp_path / "elsewhere" / "old words")
    names = [[(c.label, Path(c.path).name) for c in rank_clips(list_clips(folder, "replay"), seed=3)]
             for folder in (setup["replay"], moved)]
    assert names[0] == names[1] and len(names[0]) == 12
    assert names[0] != [(c.label, Path(c.path).name) for c in list_clips(setup["replay"], "replay")]  # ranked
    config = FinetuneConfig(method="lora", rank=2, epochs=2, batch_size=4, threads=1, channel_match=0.0,
                            replay_per_class=2)
    states = []
    for folder in (setup["replay"], moved):
        result = finetune(setup["model"], setup["new"], config=config, replay=folder, cache_dir=False,
                          progress=False, log=lambda line: None)
        states.append(result.artifact.model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_finetune_help():
    out = subprocess.run([sys.executable, "-m", "lmustream", "finetune", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--new-words", "--method", "--rank", "--out", "--eval-new", "--eval-old", "--replay", "--json"):
        assert option in out.stdout


def test_sampling_log_prior_balances_new_against_replayed_classes():
    from lmustream.adapters.finetune import sampling_log_prior

    new = torch.tensor([4, 4, 4, 5, 5, 5])  # 2 new words, 3 clips each
    replay = torch.tensor([0] * 6 + [1] * 6 + [2] * 18)  # 3 old classes; class 2 a catch-all, 18 clips
    adjustment = sampling_log_prior(new, replay, [4, 5], 6, per_step=4)
    # per step: 2 clips of each new word; of the old classes 0.8, 0.8 and 2.4 (median 0.8)
    assert torch.allclose(adjustment, torch.tensor([0, 0, 0, 0, 2 / 0.8, 2 / 0.8]).clamp(min=1).log(), atol=1e-6)


def test_vectors_train_faster_than_the_matrices():
    from lmustream.adapters.finetune import parameter_groups
    from lmustream.errors import ConfigError
    from lmustream.adapters import AFLoRAConfig, add_adapter
    from lmustream.models import LMUFormer, get_config

    model = LMUFormer(get_config("lmuformer-tiny", n_classes=4))
    add_adapter(model, AFLoRAConfig(rank=2))
    groups = parameter_groups(model, 10.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["scale"] for g in groups] == [1.0, 10.0]
    assert all(names[id(p)].split(".")[-1].startswith("lambda_") for p in groups[1]["params"])
    assert {names[id(p)].split(".")[-1] for p in groups[0]["params"]} >= {"A", "B", "weight"}  # matrices, head
    with pytest.raises(ConfigError, match="vector_lr_scale"):
        FinetuneConfig(vector_lr_scale=0)


def test_silence_clips_are_seconds_of_noise_at_random_gains_padded_like_every_clip():
    from lmustream.adapters.data import silence_clip_set
    from lmustream.audio.features import normalize

    frontend = FbankConfig()
    noise = torch.randn(500, frontend.n_mels) - 5  # unnormalized log-mel
    clips = silence_clip_set(noise, frontend, frames=128, count=6, seed=1)
    assert clips.x.shape == (6, 128, frontend.n_mels) and clips.names == ["_silence_"] * 6
    raw = clips.x * (2 * frontend.std) + frontend.mean
    torch.testing.assert_close(clips.x[:, 98:], normalize(torch.zeros(6, 30, frontend.n_mels), frontend))  # padding
    for cut in raw[:, :98]:  # one second of the noise, shifted down by 2 log(gain), gain <= 1
        start = next(s for s in range(500 - 98) if torch.allclose(cut - cut[0, 0], noise[s:s + 98] - noise[s, 0],
                                                                     atol=1e-4))
        shift = cut - noise[start:start + 98]
        assert float(shift.max()) <= 1e-4 and float(shift.max() - shift.min()) < 1e-3
    assert torch.equal(silence_clip_set(noise, frontend, 128, 6, seed=1).x, clips.x)
    assert not torch.equal(silence_clip_set(noise, frontend, 128, 6, seed=2).x, clips.x)


def test_a_replay_without_silence_gets_it_cut_from_the_noise_and_missing_classes_are_named(setup, tmp_path):
    import shutil

    base = load_model(setup["model"])
    save_model(tmp_path / "with_silence.safetensors", ModelArtifact(base.model, ["hum", "_silence_"]))
    only_hum = shutil.copytree(setup["replay"] / "hum", tmp_path / "replay" / "hum")
    config = FinetuneConfig(method="lora", rank=2, epochs=2, batch_size=4, threads=1, channel_match=0.0,
                            replay_per_class=3)
    lines = []
    result = finetune(tmp_path / "with_silence.safetensors", setup["new"], config=config, replay=only_hum.parent,
                      cache_dir=False, progress=False, log=lines.append)
    assert result.replay_clips == 3 + 3  # as many silence clips as a word's replay clips
    assert any("3 _silence_ clips cut from the background noise" in line for line in lines), lines
    assert not any(line.startswith("note: the replay holds no clips") for line in lines)

    lines = []
    finetune(setup["model"], setup["new"], config=config, replay=only_hum.parent, cache_dir=False, progress=False,
             log=lines.append)
    assert any(line.startswith("note: the replay holds no clips of hiss") for line in lines), lines


def test_a_replay_s_other_words_are_replayed_as_unknown_and_the_taught_words_left_out(setup, tmp_path):
    # A model with _unknown_ learnt every word it does not know as that class: a replay folder in the
    # Speech Commands layout (one folder per word) replays its other words so, not the words being taught.
    base = load_model(setup["model"])
    save_model(tmp_path / "kws.safetensors", ModelArtifact(base.model, ["hum", "_unknown_"]))
    replay = write_words(tmp_path / "replay", ["hum", "hiss", "beep"], 4, 5)  # hiss: unknown; beep: taught
    config = FinetuneConfig(method="lora", rank=2, epochs=2, batch_size=4, threads=1, channel_match=0.0,
                            replay_per_class=3)
    lines = []
    result = finetune(tmp_path / "kws.safetensors", setup["new"], config=config, replay=replay,
                      cache_dir=False, progress=False, log=lines.append)
    assert any("clips of hiss replayed as _unknown_" in line for line in lines), lines
    assert any("ignoring clips of beep (the words being taught)" in line for line in lines), lines
    assert result.replay_clips == 3 + 4  # hum: 3; _unknown_ (a catch-all may keep more): all 4 hiss clips
    assert not any(line.startswith("note: the replay holds no clips") for line in lines)

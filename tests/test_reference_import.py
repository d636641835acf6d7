"""Import of the LMUFormer authors' checkpoints, and conformance with their outputs."""

import pytest
import torch

from lmustream.conformance import model_checks
from lmustream.errors import CheckpointError
from lmustream.models import get_config, load_reference_checkpoint
from tests.conftest import require_shared


def reference_state_dict(spiking: bool) -> dict:
    """A state dict in the authors' naming for the paper-size model, built from our own model."""
    from lmustream.models import LMUFormer
    ours = LMUFormer(get_config("slmuformer" if spiking else "lmuformer")).state_dict()
    sd = {}
    for k, v in ours.items():
        k = (k.replace("embed.rpe.", "patch_embed.rpe_conv.")
              .replace("blocks.", "block.").replace(".lmu.proj.", ".attn.proj_conv.")
              .replace(".lmu.proj_bn.", ".attn.proj_bn.").replace(".lmu.input_bn.", ".attn.prev_bn.")
              .replace(".lmu.", ".attn.lmu.").replace(".ffn.fc1.", ".mlp.fc1_conv.")
              .replace(".ffn.fc2.", ".mlp.fc2_conv.").replace(".ffn.", ".mlp."))
        if k.startswith("embed.convs."):
            i = int(k.split(".")[2])
            k = (f"patch_embed.proj_conv{i or ''}.weight" if spiking
                 else f"patch_embed.conv_layers.{i}.0.weight")
        elif k.startswith("embed.bns."):
            i, rest = int(k.split(".")[2]), k.split(".", 3)[3]
            k = f"patch_embed.proj_bn{i or ''}.{rest}" if spiking else f"patch_embed.conv_layers.{i}.3.{rest}"
        sd[k] = v
    return sd


@pytest.mark.parametrize("spiking", [False, True])
def test_round_trip_from_authors_naming(spiking):
    sd = reference_state_dict(spiking)
    model = load_reference_checkpoint(sd, "spiking_lmuformer" if spiking else "lmuformer")
    assert not model.training
    assert model.config == get_config("slmuformer" if spiking else "lmuformer")


def test_dataparallel_prefix_is_accepted():
    sd = {f"module.{k}": v for k, v in reference_state_dict(False).items()}
    load_reference_checkpoint({"state_dict": sd}, "lmuformer")


def test_errors_list_missing_unexpected_and_misshaped():
    sd = reference_state_dict(False)
    del sd["block.0.attn.lmu.W_u.bias"]
    sd["block.0.attn.qkv.weight"] = torch.zeros(3)
    sd["block.0.mlp.fc2_bn.weight"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as e:
        load_reference_checkpoint(sd, "lmuformer")
    msg = str(e.value)
    assert "missing (1): blocks.0.lmu.W_u.bias" in msg
    assert "unexpected (1): block.0.attn.qkv.weight" in msg
    assert "blocks.0.ffn.fc2_bn.weight: checkpoint [7] vs model [256]" in msg


def test_wrong_variant_for_the_file():
    with pytest.raises(CheckpointError, match="missing"):
        load_reference_checkpoint(reference_state_dict(False), "spiking_lmuformer")
    with pytest.raises(ValueError, match="variant"):
        load_reference_checkpoint(reference_state_dict(False), "transformer")


def test_theta_is_checked_against_stored_A():
    from lmustream.models import lmu_state_space
    sd = reference_state_dict(False)
    sd["block.0.attn.lmu.A"] = lmu_state_space(256, 100.0)[0].float()
    with pytest.raises(CheckpointError, match="theta=128.0"):
        load_reference_checkpoint(sd, "lmuformer")
    load_reference_checkpoint(sd, "lmuformer", theta=100.0)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_checkpoint(tmp_path / "nope.pt", "lmuformer")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*bad.pt.*: not a PyTorch checkpoint file"):
        load_reference_checkpoint(bad, "lmuformer")
    zipped = tmp_path / "zipped.pt"
    zipped.write_bytes(b"PK\x03\x04 not a zip archive after all")
    with pytest.raises(CheckpointError, match=r"zipped.pt.*: not a PyTorch checkpoint file \(RuntimeError: [^.]*\)$"):
        load_reference_checkpoint(zipped, "lmuformer")  # torch's advice to load unsafely is left out
    with pytest.raises(CheckpointError, match="non-empty state dict"):
        load_reference_checkpoint({}, "lmuformer")


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Exploit()}, path)
    capsys.readouterr()
    with pytest.raises(CheckpointError, match="cannot read .*evil.pt.*: it holds pickled Python objects"):
        load_reference_checkpoint(path, "lmuformer")
    assert "pickled code ran" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def conformance_checks():
    return model_checks(require_shared("conformance"))


@pytest.mark.parametrize("group", ["float32 logits", "float64 logits", "float32 ", "spikes", "FFT vs recurrent"])
def test_conformance_with_authors_code(conformance_checks, group):
    """Golden vectors from the authors' code: logits, intermediates, spike trains, path parity."""
    selected = [c for c in conformance_checks if group in c.name]
    assert selected
    failed = [c.row() for c in selected if not c.passed]
    assert not failed, "\n".join(failed)


def test_every_spike_train_is_checked(conformance_checks):
    names = {c.name for c in conformance_checks if "spikes" in c.name}
    assert names == {"spiking_lmuformer spikes lmu_cell_h", "spiking_lmuformer spikes head_spikes",
                     "spiking_lmuformer spikes, all 11 LIF layers, float32 vs float64"}

"""Model files shared by the kernel tests (written once per session)."""

import pytest

from tests.kernel.helpers import make_model, save


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernel_models")


@pytest.fixture(scope="session")
def plain(model_dir):
    """(model, path) of a small non-spiking LMUFormer."""
    model = make_model(spiking=False, seed=1)
    return model, save(model, model_dir / "plain.safetensors")


@pytest.fixture(scope="session")
def spiking(model_dir):
    """(model, path) of a small spiking LMUFormer whose LIF layers all fire."""
    model = make_model(spiking=True, seed=2)
    return model, save(model, model_dir / "spiking.safetensors")

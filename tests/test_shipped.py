"""Shipped models and recipes are found by name in a source checkout and in an installed package."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmustream import shipped
from lmustream.errors import CheckpointError, ConfigError
from lmustream.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """An empty checkout and an empty installed copy, in place of the real ones."""
    checkout, installed = tmp_path / "checkout", tmp_path / "site" / "_shipped"
    for root in (checkout, installed):
        (root / "models").mkdir(parents=True)
        (root / "configs").mkdir(parents=True)
    monkeypatch.setattr(shipped, "CHECKOUT_DIR", checkout)
    monkeypatch.setattr(shipped, "INSTALLED_DIR", installed)
    return checkout, installed


def put(root: Path, name: str, text: str = "x") -> Path:
    path = root / name
    path.write_text(text)
    return path


def test_checkout_names_resolve():
    assert shipped.resolve_model("sc12-lmuformer") == ROOT / "models" / "sc12-lmuformer.safetensors"
    assert shipped.resolve_config("sc12-lmuformer") == ROOT / "configs" / "sc12-lmuformer.yaml"
    assert shipped.resolve_config("sc12-lmuformer.yaml") == ROOT / "configs" / "sc12-lmuformer.yaml"
    assert shipped.model_card("sc12-lmuformer") == ROOT / "models" / "sc12-lmuformer.md"
    assert "sc12-lmuformer" in shipped.shipped_configs()


def test_installed_copy_serves_when_there_is_no_checkout(layout):
    checkout, installed = layout
    model = put(installed / "models", "m.safetensors")
    config = put(installed / "configs", "r.yaml", "epochs: 3\n")
    assert shipped.shipped_models() == ["m"] and shipped.shipped_configs() == ["r"]
    assert shipped.resolve_model("m") == model
    assert shipped.resolve_config("r") == config
    assert load_config("r").epochs == 3


def test_checkout_wins_over_the_installed_copy(layout):
    checkout, installed = layout
    mine = put(checkout / "models", "m.safetensors")
    put(installed / "models", "m.safetensors")
    put(installed / "models", "other.safetensors")
    assert shipped.resolve_model("m") == mine
    assert shipped.shipped_models() == ["m", "other"]


def test_a_stray_models_folder_beside_the_package_does_not_hide_the_installed_copy(layout):
    checkout, installed = layout
    put(checkout / "models", "__init__.py")  # e.g. another package's top-level "models"
    model = put(installed / "models", "m.safetensors")
    assert shipped.resolve_model("m") == model


def test_unknown_names_are_clear_errors(layout, tmp_path):
    checkout, installed = layout
    with pytest.raises(CheckpointError, match="none in this installation"):
        shipped.resolve_model("m")
    put(installed / "models", "m.safetensors")
    with pytest.raises(CheckpointError, match=r"no shipped model of that name \(shipped: m\)"):
        shipped.resolve_model("n")
    put(installed / "configs", "r.yaml")
    with pytest.raises(ConfigError, match=r"no shipped recipe of that name \(shipped: r\)"):
        load_config("q")
    with pytest.raises(ConfigError, match="is a folder"):
        shipped.resolve_config(tmp_path)
    # a path is never looked up as a name
    with pytest.raises(CheckpointError, match="does not exist"):
        shipped.resolve_model(os.path.join("sub", "m"))


def test_a_built_package_carries_the_models_and_recipes(tmp_path):
    """What `pip install .` installs: setup.py's build_py copies models/ and configs/ into the package,
    and that package, away from any checkout, resolves them by name."""
    build = tmp_path / "build"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)], cwd=ROOT,
                   check=True, capture_output=True)
    for folder, patterns in (("models", ("*.safetensors", "*.md")), ("configs", ("*.yaml",))):
        sources = [p for pattern in patterns for p in (ROOT / folder).glob(pattern)]
        assert sources
        for source in sources:
            copy = build / "lmustream" / "_shipped" / folder / source.name
            assert copy.is_file() and filecmp.cmp(source, copy, shallow=False), copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = ("from lmustream import shipped; "
              "print(shipped.resolve_model('sc12-lmuformer')); print(shipped.resolve_config('asc40-lmuformer'))")
    env = {**os.environ, "PYTHONPATH": str(build)}
    out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [str(build / "lmustream" / "_shipped" / "models" / "sc12-lmuformer.safetensors"),
                   str(build / "lmustream" / "_shipped" / "configs" / "asc40-lmuformer.yaml")]

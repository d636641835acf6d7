"""The kernel's own reader of model files: every bad file is a CheckpointError naming the problem."""

import json
import struct

import numpy as np
import pytest
import torch

from lmustream import _kernel
from lmustream.errors import CheckpointError
from lmustream.models.lmu import lmu_state_space
from lmustream.stream import Kernel


def _split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _with_meta(data: bytes, edit) -> bytes:
    header, body = _split(data)
    meta = json.loads(header["__metadata__"]["lmustream"])
    edit(meta)
    header["__metadata__"]["lmustream"] = json.dumps(meta)
    return _join(header, body)


@pytest.fixture(scope="module")
def good(plain):
    with open(plain[1], "rb") as f:
        return f.read()


def test_good_file_parses(good):
    info = _kernel.parse_artifact(good)
    assert info["labels"] == [f"class{i}" for i in range(5)] and not info["spiking"]


def _tensor_edit(name, **changes):
    def edit(data):
        header, body = _split(data)
        header[name].update(changes)
        return _join(header, body)
    return edit


CASES = {
    "empty": (lambda d: b"", "fewer than the 8-byte header length"),
    "truncated header": (lambda d: d[:200], "truncated: the header claims"),
    "truncated data": (lambda d: d[:-1000], "outside the .* bytes of tensor data"),
    "oversized header length": (lambda d: struct.pack("<Q", 1 << 40) + d[8:], "oversized"),
    "not json": (lambda d: struct.pack("<Q", 5) + b"{abc}" + d[13:], "not a safetensors file"),
    "no lmustream header": (lambda d: _join({k: v for k, v in _split(d)[0].items() if k != "__metadata__"},
                                            _split(d)[1]), "not an lmustream model"),
    "newer format": (lambda d: _with_meta(d, lambda m: m.update(format_version=99)), "newer than this kernel"),
    "label count": (lambda d: _with_meta(d, lambda m: m.update(labels=["a", "b"])), "2 labels for a model with 5"),
    "duplicate labels": (lambda d: _with_meta(d, lambda m: m.update(labels=["a"] * 5)), "appears twice"),
    "unknown config key": (lambda d: _with_meta(d, lambda m: m["config"].update(colour=1)), "unknown key 'colour'"),
    "even kernel": (lambda d: _with_meta(d, lambda m: m["config"].update(kernel_size=4)), "kernel_size must be odd"),
    "config vs tensors": (lambda d: _with_meta(d, lambda m: m["config"].update(dim=48)), "the config needs"),
    "bad window": (lambda d: _with_meta(d, lambda m: m["frontend"].update(window="kaiser")), "unknown window"),
    "mel mismatch": (lambda d: _with_meta(d, lambda m: m["frontend"].update(n_mels=40)), "differs from config.n_mels"),
    "huge memory": (lambda d: _with_meta(d, lambda m: m["config"].update(memory_size=100000)), "memory_size"),
    "bad dtype": (_tensor_edit("head.bias", dtype="Q7"), "unknown dtype 'Q7'"),
    "wrong byte count": (_tensor_edit("head.bias", shape=[6]), "bytes for shape"),
    "offsets past the end": (_tensor_edit("head.bias", data_offsets=[10**9, 10**9 + 20]), "outside"),
    "unexpected tensor": (lambda d: _join({**_split(d)[0], "extra.weight": {"dtype": "F32", "shape": [0],
                                                                           "data_offsets": [0, 0]}}, _split(d)[1]),
                          "unexpected"),
    "missing tensor": (lambda d: _join({k: v for k, v in _split(d)[0].items() if k != "head.bias"}, _split(d)[1]),
                       "missing .*head.bias"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_files_are_rejected_with_a_reason(good, tmp_path, case):
    corrupt, match = CASES[case]
    data = corrupt(good)
    with pytest.raises(CheckpointError, match=match):
        _kernel.parse_artifact(data)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=match):
        Kernel(path)


def test_non_finite_weight_is_rejected(good):
    header, body = _split(good)
    start = header["head.bias"]["data_offsets"][0]
    body = body[:start] + struct.pack("<f", float("nan")) + body[start + 4:]
    with pytest.raises(CheckpointError, match="head.bias.*non-finite"):
        _kernel.parse_artifact(_join(header, body))


def test_random_corruption_never_crashes(good):
    """Byte flips in the header and the data: each file parses or raises CheckpointError."""
    rng = np.random.default_rng(0)
    n_header = struct.unpack("<Q", good[:8])[0]
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(300):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, 8 + n_header)) if rng.random() < 0.8 else int(rng.integers(0, len(data)))
            data[at] = int(rng.integers(0, 256))
        try:
            _kernel.parse_artifact(bytes(data))
            outcomes["parsed"] += 1
        except CheckpointError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100


@pytest.mark.parametrize("order, theta", [(16, 10.0), (256, 128.0)])
def test_legendre_state_space_equals_python(order, theta):
    A, B = _kernel.legendre_state_space(order, theta)
    A_ref, B_ref = lmu_state_space(order, theta)
    assert np.abs(A - A_ref.numpy()).max() < 1e-11
    assert np.abs(B - B_ref.numpy()).max() < 1e-11


def test_f16_and_f64_tensors_are_converted(plain, tmp_path):
    """Files written by other safetensors writers may use other float widths."""
    from safetensors.torch import load_file, save_file

    from lmustream.models.artifact import read_header

    model, path = plain
    tensors = load_file(path)
    header = read_header(path)
    tensors = {k: (v.double() if "fc1" in k else v) for k, v in tensors.items()}
    out = tmp_path / "f64.safetensors"
    save_file(tensors, str(out), metadata={"lmustream": json.dumps(header)})
    a, b = Kernel(path).open(), Kernel(out).open()
    x = np.random.default_rng(1).standard_normal((50, 20)).astype(np.float32)
    np.testing.assert_array_equal(a.push_features(x), b.push_features(x))
    assert torch.is_tensor(tensors["head.bias"])

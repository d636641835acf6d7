"""Feature packs: a prepared dataset (log-mel features of every split, labels, noise) in one file.

Computing the frontend over tens of thousands of clips is CPU work that a GPU training box
should not have to repeat, and the audio is several times larger than its features. A pack
is a compressed ``.npz`` (no pickled objects) holding:

  meta        JSON (as uint8 bytes): format, labels, frames, frontend settings, quantisation, summary
  SPLIT.x     uint8 [n, frames, n_mels]: normalized log-mel, quantised on a fixed grid
  SPLIT.y     int16 [n]: class index into meta.labels
  noise       float16 [T, n_mels] (optional): unnormalized log-mel of background noise

Normalized features of the Kaldi-style frontend lie in about [-0.9, 1.3]; a uniform grid of
256 levels over [QUANT_LOW, QUANT_HIGH] rounds them by at most 0.005, far below the feature
noise and masking that training adds anyway. Values outside the grid are clipped (counted).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmustream.errors import ConfigError

PACK_FORMAT = "lmustream-feature-pack"
PACK_VERSION = 1
QUANT_LOW, QUANT_HIGH = -1.5, 2.0
QUANT_STEP = (QUANT_HIGH - QUANT_LOW) / 255
SPLITS = ("train", "validation", "test")


def quantize(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Normalized features -> uint8 codes on the pack grid; also the number of values clipped."""
    codes = np.round((np.asarray(x, np.float32) - QUANT_LOW) / QUANT_STEP)
    clipped = int(np.count_nonzero((codes < 0) | (codes > 255)))
    return np.clip(codes, 0, 255).astype(np.uint8), clipped


def dequantize(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * QUANT_STEP + QUANT_LOW


@dataclass
class FeaturePack:
    """A pack in memory: per split, features ``[n, frames, n_mels]`` (uint8 codes) and labels."""

    labels: list[str]
    frames: int
    frontend: dict
    splits: dict  # name -> (codes uint8 [n, frames, M], labels int16 [n])
    noise: np.ndarray | None = None  # float16 [T, M]
    summary: str = ""
    source: dict | None = None  # the data settings it was made from (lmustream.train.data.pack_source)

    def features(self, split: str) -> np.ndarray:
        return dequantize(self.splits[split][0])

    def counts(self) -> dict:
        return {name: int(len(y)) for name, (_, y) in self.splits.items()}


# Zip member compression of a pack: "deflate" as numpy's savez_compressed, "lzma" for packs that travel.
COMPRESSIONS = {"deflate": zipfile.ZIP_DEFLATED, "lzma": zipfile.ZIP_LZMA}


def write_pack(pack: FeaturePack, path: str | Path, compression: str = "deflate") -> Path:
    """Write ``pack`` to ``path`` (atomically: a crash never leaves half a pack behind).

    ``compression``: "deflate" (as numpy's ``savez_compressed``) or "lzma" (smaller, by about a sixth
    on speech features, and slower to write; for packs that travel). Both are zip archives of
    ``.npy`` members that ``numpy.load`` reads as they are.
    """
    import io

    if compression not in COMPRESSIONS:
        raise ConfigError(f"unknown pack compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")

    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"a feature pack is a .npz file, got {str(path)!r}")
    meta = {"format": PACK_FORMAT, "version": PACK_VERSION, "labels": list(pack.labels),
            "frames": int(pack.frames), "frontend": pack.frontend, "summary": pack.summary, "source": pack.source,
            "quantization": {"low": QUANT_LOW, "high": QUANT_HIGH, "levels": 256}}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)}
    for name, (codes, y) in pack.splits.items():
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; splits are {SPLITS}")
        arrays[f"{name}.x"] = np.ascontiguousarray(codes, np.uint8)
        arrays[f"{name}.y"] = np.asarray(y, np.int16)
    if pack.noise is not None:
        arrays["noise"] = np.asarray(pack.noise, np.float16)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=COMPRESSIONS[compression]) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            archive.writestr(f"{name}.npy", member.getvalue())
    from lmustream.models.artifact import atomic_write_bytes

    atomic_write_bytes(path, buffer.getvalue())
    return path


def check_frontend(pack: FeaturePack, frontend, path, user: str) -> None:
    """Refuse a pack whose features were computed with other settings than ``frontend`` (an FbankConfig,
    ``user``'s), naming each setting that differs."""
    wanted = dataclasses.asdict(frontend)
    differ = sorted(k for k in set(pack.frontend) | set(wanted) if pack.frontend.get(k) != wanted.get(k))
    if differ:
        raise ConfigError(f"{path}: the pack was made with other frontend settings than {user}: " + ", ".join(
            f"{k} {pack.frontend.get(k)!r} (not {wanted.get(k)!r})" for k in differ))


def is_pack(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".npz" and path.is_file()


def read_pack(path: str | Path) -> FeaturePack:
    """Load a pack, checking its format and that every split's shapes and labels agree with its header."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"feature pack {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):  # numpy would call any other file "pickled data"
        raise ConfigError(f"{path}: not a feature pack (a pack is the .npz archive `lmustream data pack` writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip / npy errors come in many types
        raise ConfigError(f"{path}: not a readable feature pack ({type(e).__name__}: {e})") from e
    try:
        meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{path}: feature pack without a valid 'meta' entry") from e
    if meta.get("format") != PACK_FORMAT:
        raise ConfigError(f"{path}: not a lmustream feature pack (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > PACK_VERSION:
        raise ConfigError(f"{path}: pack version {meta['version']} is newer than this lmustream "
                          f"reads ({PACK_VERSION}); upgrade lmustream")
    lacking = [key for key in ("labels", "frames", "frontend") if key not in meta]
    if lacking:
        raise ConfigError(f"{path}: the pack's header lacks {', '.join(lacking)} (a damaged or foreign pack)")
    labels, frames = list(meta["labels"]), int(meta["frames"])
    n_mels = int(meta["frontend"].get("n_mels", 128))
    splits = {}
    for name in SPLITS:
        if f"{name}.x" not in arrays and f"{name}.y" not in arrays:
            continue
        if f"{name}.x" not in arrays or f"{name}.y" not in arrays:
            half = "features" if f"{name}.x" not in arrays else "labels"
            raise ConfigError(f"{path}: split {name!r} lacks its {half} (a damaged or truncated pack)")
        codes, y = arrays[f"{name}.x"], arrays[f"{name}.y"]
        if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[1:] != (frames, n_mels) or len(y) != len(codes):
            raise ConfigError(f"{path}: split {name!r} has features {codes.shape} {codes.dtype} and "
                              f"{len(y)} labels; expected uint8 [n, {frames}, {n_mels}] and n labels")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(labels)):
            raise ConfigError(f"{path}: split {name!r} has label indices outside 0..{len(labels) - 1}")
        splits[name] = (codes, y.astype(np.int64))
    return FeaturePack(labels, frames, meta["frontend"], splits, arrays.get("noise"), meta.get("summary", ""),
                       meta.get("source"))


def pack_from_training_data(data, frames: int) -> tuple[FeaturePack, int]:
    """A pack from prepared :class:`lmustream.train.data.TrainingData`; also the values clipped."""
    splits, clipped = {}, 0
    for name in SPLITS:
        part = getattr(data, name)
        if part is None:
            continue
        codes, c = quantize(part.features.float().numpy())
        clipped += c
        splits[name] = (codes, part.labels.numpy().astype(np.int16))
    noise = None if data.noise is None else data.noise.numpy().astype(np.float16)
    pack = FeaturePack(list(data.labels), frames, dataclasses.asdict(data.frontend), splits, noise, data.summary)
    return pack, clipped


def merge_train(base: FeaturePack, extra: FeaturePack, splits=("train",)) -> tuple[FeaturePack, dict]:
    """``base`` with the given splits of ``extra`` appended, keeping only clips whose label ``base`` has.

    Returns the merged pack and, per label of ``extra`` that ``base`` lacks, how many clips were
    dropped. The frontends and frame counts must be identical.
    """
    if extra.frames != base.frames or extra.frontend != base.frontend:
        raise ConfigError("cannot merge feature packs made with different frontends or frame counts")
    position = {label: i for i, label in enumerate(base.labels)}
    merged, dropped = dict(base.splits), {}
    for name in splits:
        if name not in extra.splits:
            continue
        codes, y = extra.splits[name]
        names = [extra.labels[i] for i in y]
        keep = np.array([n in position for n in names], bool)
        for n in names:
            if n not in position:
                dropped[n] = dropped.get(n, 0) + 1
        new_y = np.array([position[n] for n in np.array(names)[keep]], np.int64)
        if name in merged:
            old_codes, old_y = merged[name]
            merged[name] = (np.concatenate([old_codes, codes[keep]]), np.concatenate([old_y, new_y]))
        else:
            merged[name] = (codes[keep], new_y)
    noise = base.noise if base.noise is not None else extra.noise
    summary = base.summary + (f"\n+ {extra.summary}" if extra.summary else "")
    return dataclasses.replace(base, splits=merged, noise=noise, summary=summary), dropped


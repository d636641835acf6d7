"""Data layouts of the adapter experiments (benchmarks/adapters_experiment.py).

(a) Arabic Speech Commands: a backbone trained on 30 of the 40 keywords, adapted to the other 10
    with 10 clips per word from 2 enrollment speakers, tested on held-out speakers.
(b) An English model adapted to the FSDD digits: enrolled from some FSDD speakers, tested on the others.

Each experiment is materialised as labelled folders of symbolic links (one folder per word), the
layout ``lmustream finetune --new-words DIR --eval-new DIR --eval-old DIR --replay DIR`` reads.

    python benchmarks/adapters_data.py asc-manifest --out data/asc30/manifest.csv
        writes the backbone's training manifest (30 keywords; train / validation / test speakers)
        for ``lmustream train --config configs/asc30-lmuformer-small.yaml``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LMUSTREAM_SHARED", REPO.parent / "shared"))
ASC = SHARED / "data" / "arabic_speech_commands"
FSDD = SHARED / "data" / "fsdd" / "recordings"
BACKBONE_JSON = REPO.parent / "data" / "backbones" / "asc30.json"  # where a provided backbone is described
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def rank(items, seed: int = 0) -> list[str]:
    """A seeded, platform-independent shuffle (sha256 of seed and item)."""
    return sorted(set(items), key=lambda s: (hashlib.sha256(f"{seed}\0{s}".encode()).hexdigest(), s))


@dataclass
class AscSplit:
    old_words: list[str]  # the backbone's 30 keywords
    new_words: list[str]  # the 10 taught afterwards
    test_speakers: list[str]  # never trained on by the backbone: evaluation
    validation_speakers: list[str]  # the backbone's model selection (the same held-out speakers)
    enroll_speakers: list[str]  # the 2 speakers who record the new words
    rows: list[dict] = field(default_factory=list)  # file (absolute), label, speaker


def asc_rows(root: Path = ASC) -> list[dict]:
    with open(root / "train.csv", newline="") as f:
        return [{"file": str(root / r["file"]), "label": r["class"], "speaker": r["speaker"]} for r in csv.DictReader(f)]


def asc_split(backbone_json: Path | None = None, seed: int = 0) -> AscSplit:
    """The experiment's split: from the backbone's JSON (keywords, held-out speakers) when given, else seeded."""
    rows = asc_rows()
    words = sorted({r["label"] for r in rows})
    speakers = sorted({r["speaker"] for r in rows})
    info = json.loads(Path(backbone_json).read_text()) if backbone_json and Path(backbone_json).is_file() else {}
    old = _first(info, ("backbone_labels", "keywords", "labels", "old_words"))
    held = _first(info, ("held_out_speakers", "validation_speakers", "test_speakers"))
    old = sorted(old) if old else sorted(rank(words, seed)[10:])
    new = sorted(w for w in words if w not in old)
    ranked = rank(speakers, seed)
    if not held:
        # "N held-out speakers chosen by seed S": the trainer's held_out_speakers(index, N, seed=S)
        match = re.search(r"(\d+) held-out speakers chosen by seed (\d+)", str(info.get("validation", "")))
        count, by = (int(match.group(1)), int(match.group(2))) if match else (3, seed)
        held = rank(speakers, by)[:count]
    # The backbone never trained on the held-out speakers (it validated on them): they are the test
    # speakers here. The enrollment speakers are two of its training speakers, the first by rank.
    test = sorted(map(str, held))
    enroll = sorted([s for s in ranked if s not in test][:2])
    return AscSplit(old, new, test, test, enroll, rows)


def _first(info: dict, keys) -> list | None:
    for key in keys:
        if isinstance(info.get(key), list) and info[key]:
            return info[key]
    return None


def write_backbone_manifest(split: AscSplit, out: Path) -> Path:
    """CSV (file, label, speaker, split) of the 30 old keywords: validation = the held-out speakers."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "speaker", "split"])
        for r in split.rows:
            if r["label"] not in split.old_words:
                continue
            part = "validation" if r["speaker"] in split.validation_speakers else "train"
            writer.writerow([r["file"], r["label"], r["speaker"], part])
    return out


def link_folders(files_by_label: dict[str, list[str]], out: Path) -> Path:
    """``out/<label>/<file name>`` symbolic links (replacing what was there)."""
    for label, files in files_by_label.items():
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for file in files:
            link = folder / Path(file).name
            if link.exists() or link.is_symlink():  # same name in two source folders (Speech Commands)
                link = folder / f"{Path(file).parent.name}-{Path(file).name}"
            link.symlink_to(file)
    return out


def write_silence(noise_files: list[Path], out: Path, count: int, seed: int = 0, rate: int = 16000) -> Path:
    """``out/silence_<i>.wav``: ``count`` one-second ``_silence_`` clips cut as the training recipe cuts them
    (``lmustream.data.silence``: evenly spaced through the noise recordings, each at a random gain in [0, 1])."""
    import soundfile as sf

    from lmustream.data.feature_dataset import load_clip
    from lmustream.data.silence import cut_silence

    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for i, clip in enumerate(cut_silence(noise_files, count, seed=seed)):
        sf.write(out / f"silence_{i:03d}.wav", load_clip(clip, rate), rate)
    return out


def asc_folders(split: AscSplit, out: Path, clips_per_word: int = 10, replay_per_word: int = 5,
                seed: int = 0) -> dict[str, Path]:
    """new_words (enrollment), eval_new, eval_old (held-out speakers), replay (old words, other speakers) and
    eval_enrolled (the enrollment speakers' other clips of the new words)."""
    def pick(label, speakers, n):
        files = sorted(r["file"] for r in split.rows if r["label"] == label and r["speaker"] in speakers)
        return rank(files, seed)[:n] if n else files

    per_speaker = -(-clips_per_word // len(split.enroll_speakers))
    enroll = {w: sum((pick(w, [s], per_speaker) for s in split.enroll_speakers), [])[:clips_per_word]
              for w in split.new_words}
    eval_new = {w: pick(w, split.test_speakers, 0) for w in split.new_words}
    # the enrollment speakers' other clips of the new words: a device taught by its own user
    eval_enrolled = {w: sorted(set(pick(w, split.enroll_speakers, 0)) - set(enroll[w])) for w in split.new_words}
    eval_old = {w: pick(w, split.test_speakers, 0) for w in split.old_words}
    backbone_speakers = sorted({r["speaker"] for r in split.rows} - set(split.test_speakers))
    replay = {w: pick(w, backbone_speakers, replay_per_word) for w in split.old_words}
    return {name: link_folders(files, out / name) for name, files in
            (("new_words", enroll), ("eval_new", eval_new), ("eval_old", eval_old), ("replay", replay),
             ("eval_enrolled", eval_enrolled))}


def fsdd_folders(out: Path, enroll_speakers=("george", "jackson"), clips_per_word: int = 10,
                 seed: int = 0) -> dict[str, Path]:
    """FSDD digits: enrollment from ``enroll_speakers`` (clips_per_word per digit), evaluation on the others."""
    files = sorted(FSDD.glob("*.wav"))
    by = {}
    for path in files:
        digit, speaker, _ = path.stem.split("_")
        by.setdefault((DIGITS[int(digit)], speaker), []).append(str(path))
    speakers = sorted({s for _, s in by})
    test = [s for s in speakers if s not in enroll_speakers]
    per_speaker = -(-clips_per_word // len(enroll_speakers))
    enroll = {w: sum((rank(by[(w, s)], seed)[:per_speaker] for s in enroll_speakers), [])[:clips_per_word]
              for w in DIGITS}
    eval_new = {w: sorted(f for s in test for f in by[(w, s)]) for w in DIGITS}
    eval_enrolled = {w: sorted(set(f for s in enroll_speakers for f in by[(w, s)]) - set(enroll[w])) for w in DIGITS}
    return {"new_words": link_folders(enroll, out / "new_words"), "eval_new": link_folders(eval_new, out / "eval_new"),
            "eval_enrolled": link_folders(eval_enrolled, out / "eval_enrolled")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("asc-manifest", help="the backbone's training manifest (30 keywords)")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--backbone-json", type=Path, default=BACKBONE_JSON,
                   help="keywords and held-out speakers of a provided backbone (default %(default)s)")
    args = parser.parse_args()
    split = asc_split(args.backbone_json)
    path = write_backbone_manifest(split, args.out)
    print(f"wrote {path}: {len(split.old_words)} keywords; new words {split.new_words}; test speakers "
          f"{split.test_speakers}; validation {split.validation_speakers}; enrollment {split.enroll_speakers}")


if __name__ == "__main__":
    main()

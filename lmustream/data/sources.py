"""Dataset layouts on disk -> a :class:`Listing`: clips, ordered labels, any official split.

Four layouts:
  * Speech Commands: ``<root>/<word>/<speaker>_nohash_<n>.wav``, optional
    ``validation_list.txt`` / ``testing_list.txt`` and ``_background_noise_/``;
    task "35" (every word folder a class) or "12" (ten words, ``_unknown_``, ``_silence_``).
  * Labelled folders: ``<root>/<label>/**/<file>`` in any format libsndfile reads.
  * CSV manifest: columns ``file`` and ``label`` (or ``class``), optional ``speaker`` and
    ``split``; paths relative to the CSV file.
  * Filename pattern: e.g. ``{label}_{speaker}_{index}.wav`` (the FSDD layout).

Speaker ids come from a ``{speaker}`` field or a speaker column where the layout has one,
else from the Speech Commands ``<speaker>_nohash_`` prefix, else the file stem (each clip
its own speaker, see :func:`lmustream.data.clips.speaker_from_name`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import string
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from lmustream.data.clips import Clip, is_audio_file, speaker_from_name, warn_skipped
from lmustream.data.labels import SPEECH_COMMANDS_12
from lmustream.errors import ConfigError

SPLITS = ("train", "validation", "test")
TASKS = ("35", "12")
UNKNOWN_LABEL = "_unknown_"
SILENCE_LABEL = "_silence_"
SC_CORE_WORDS = SPEECH_COMMANDS_12[:10]  # yes .. go: the ten command words of the 12-class task
SC_LIST_FILES = {"validation": "validation_list.txt", "test": "testing_list.txt"}
SC_NOISE_FOLDER = "_background_noise_"

# CSV header names accepted for each manifest column (compared case-insensitively).
MANIFEST_FILE_COLUMNS = ("file", "path", "filename")
MANIFEST_LABEL_COLUMNS = ("label", "class")
MANIFEST_SPEAKER_COLUMNS = ("speaker", "speaker_id")
MANIFEST_SPLIT_COLUMNS = ("split", "set")
# Values of a manifest's split column, mapped to our split names.
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}

PATTERN_FIELDS = ("label", "speaker", "index")
_INDEX_REGEX = r"\d+"
_FIELD_REGEX = r".+?"  # non-greedy: "{label}_{speaker}" splits "0_george" at the first "_"


@dataclass
class Listing:
    """What a source found: its clips, the ordered labels, and any official split.

    ``assigned`` maps a clip's path to its split when the layout defines one (Speech
    Commands lists, a manifest's split column); None means "split by speaker".
    ``noise_files`` are the background-noise recordings ``_silence_`` clips are cut from.
    ``skipped`` holds ``(path, reason)`` for files the layout itself rejected.
    ``empty_lists`` names the splits whose official list exists but names no file: no clips wanted.
    """

    kind: str
    root: Path
    labels: list[str]
    clips: list[Clip]
    assigned: dict[Path, str] | None = None
    noise_files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    empty_lists: tuple[str, ...] = ()


def _require_dir(root, what: str) -> Path:
    path = Path(os.path.abspath(os.fspath(root)))
    if not path.exists():
        raise ConfigError(f"{what}: no such folder {str(path)!r}")
    if not path.is_dir():
        raise ConfigError(f"{what}: {str(path)!r} is not a folder")
    return path


def _audio_files(folder: Path, recursive: bool) -> list[Path]:
    """Audio files in ``folder`` (and below if ``recursive``), hidden ones excluded, sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_audio_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _subfolders(root: Path) -> list[Path]:
    """Visible subfolders of ``root``, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_task(task) -> str:
    """``task`` as "35" or "12" (ints accepted), or ConfigError."""
    text = str(task).strip()
    if text not in TASKS:
        raise ConfigError(f"task must be one of {TASKS} (Speech Commands: 35 words or 12 classes), got {task!r}")
    return text


# --------------------------------------------------------------------- Speech Commands


def speech_commands(root, task="35", *, split_lists: bool | None = None, noise_dir=None,
                    keywords=None) -> Listing:
    """List a Speech Commands folder for ``task`` "35" (labels = sorted word folders) or "12".

    Task "12" labels are exactly ``SPEECH_COMMANDS_12``: the ten command words, every other
    word as ``_unknown_``, and ``_silence_`` (clips cut from the noise files later, per
    split). ``keywords`` replaces the ten command words (e.g. a 12-class model taught more
    words: its labels are those words, ``_unknown_`` and ``_silence_``). Folders whose name
    starts with "_" or "." (``_background_noise_``) are not words.

    ``split_lists``: None uses ``validation_list.txt`` and ``testing_list.txt`` when both
    exist (ConfigError if only one does); True requires them (ConfigError naming the missing
    file); False ignores them (split by speaker). Entries are paths relative to ``root``;
    train is every clip not listed. ``noise_dir`` (default ``<root>/_background_noise_``)
    holds the noise recordings; task "12" needs at least one.
    """
    root = _require_dir(root, "Speech Commands dataset")
    task = check_task(task)
    keywords = _check_keywords(keywords, task)
    words = [d for d in _subfolders(root) if not d.name.startswith("_")]
    if not words:
        raise ConfigError(f"Speech Commands dataset {str(root)!r}: no word folders found")
    clips = []
    for folder in words:
        files = _audio_files(folder, recursive=False)
        if not files:
            raise ConfigError(f"Speech Commands dataset {str(root)!r}: word folder {folder.name!r} "
                              "holds no audio files (empty class)")
        label = folder.name if task == "35" else (folder.name if folder.name in keywords else UNKNOWN_LABEL)
        clips.extend(Clip(path, label, speaker_from_name(path)) for path in files)
    labels = sorted(d.name for d in words) if task == "35" else [*keywords, UNKNOWN_LABEL, SILENCE_LABEL]
    noise_files = _noise_files(root, noise_dir)
    if task == "12" and not noise_files:
        where = noise_dir if noise_dir is not None else root / SC_NOISE_FOLDER
        raise ConfigError(f"task 12 needs background-noise recordings to cut {SILENCE_LABEL} clips from: "
                          f"no audio files in {str(where)!r}; name a folder of noise recordings with "
                          "data.silence_dir=DIR (lmustream train, lmustream data pack) or --noise-dir DIR (lmustream eval)")
    assigned, empty_lists = _read_split_lists(root, clips, split_lists)
    return Listing("speech_commands", root, labels, clips, assigned, noise_files, empty_lists=empty_lists)


def _check_keywords(keywords, task: str) -> tuple[str, ...]:
    """The 12-class task's keywords: the ten command words unless others are given."""
    if keywords is None:
        return SC_CORE_WORDS
    if task != "12":
        raise ConfigError(f"keywords apply to the 12-class task only, not to task {task!r}")
    keywords = tuple(keywords)
    bad = [k for k in keywords if not isinstance(k, str) or not k or k.startswith("_")]
    if bad or not keywords:
        raise ConfigError(f"keywords must be word folder names (not starting with '_'), got {list(keywords)!r}")
    if len(set(keywords)) != len(keywords):
        raise ConfigError(f"keywords name a word twice: {list(keywords)!r}")
    return keywords


def _noise_files(root: Path, noise_dir) -> list[Path]:
    if noise_dir is None:
        folder = root / SC_NOISE_FOLDER
        return _audio_files(folder, recursive=False) if folder.is_dir() else []
    return _audio_files(_require_dir(noise_dir, "noise_dir"), recursive=False)


def _read_split_lists(root: Path, clips: list[Clip],
                      split_lists: bool | None) -> tuple[dict[Path, str] | None, tuple[str, ...]]:
    """Path -> split from the official lists (None when they are not used), and the splits whose list names no file."""
    if split_lists not in (None, True, False):
        raise ConfigError(f"split_lists must be True, False or None (auto), got {split_lists!r}")
    if split_lists is False:
        return None, ()
    present = {split: (root / name).is_file() for split, name in SC_LIST_FILES.items()}
    if not any(present.values()) and split_lists is None:
        return None, ()
    missing = [SC_LIST_FILES[s] for s, ok in present.items() if not ok]
    if missing:
        found = [SC_LIST_FILES[s] for s, ok in present.items() if ok]
        why = "split_lists=True requires both lists" if split_lists else f"found {found} but not the other"
        raise ConfigError(f"Speech Commands dataset {str(root)!r}: missing split list {missing} ({why}); "
                          "provide it, or split by speaker instead (data.split_lists=false; split_lists=False in Python)")
    by_relative = {clip.path.relative_to(root).as_posix(): clip.path for clip in clips}
    assigned: dict[Path, str] = {}
    empty_lists = []
    for split, name in SC_LIST_FILES.items():
        unknown, entries = [], 0
        for line_no, line in enumerate((root / name).read_text(encoding="utf-8").splitlines(), 1):
            entry = line.strip().replace("\\", "/")
            if not entry:
                continue
            entries += 1
            path = by_relative.get(entry)
            if path is None:
                unknown.append(entry)
                continue
            if path in assigned and assigned[path] != split:
                raise ConfigError(f"{name} line {line_no}: {entry!r} is also in {SC_LIST_FILES[assigned[path]]}")
            assigned[path] = split
        if unknown:
            warnings.warn(f"{name}: {len(unknown)} listed file(s) not found in the dataset, e.g. {unknown[0]!r}",
                          UserWarning, stacklevel=3)
        if not entries:
            empty_lists.append(split)
    return {clip.path: assigned.get(clip.path, "train") for clip in clips}, tuple(empty_lists)


# --------------------------------------------------------------------- labelled folders


def labelled_folders(root) -> Listing:
    """List ``<root>/<label>/**/<audio file>``: one visible folder per label (sorted), spaces allowed.

    Files below a label folder count at any depth; ``_background_noise_`` is not a label.
    Speaker: the ``_nohash_`` prefix if present, else the file stem. A label folder with
    no audio file raises ConfigError naming it.
    """
    root = _require_dir(root, "labelled-folders dataset")
    folders = [d for d in _subfolders(root) if d.name != SC_NOISE_FOLDER]
    if not folders:
        loose = len(_audio_files(root, recursive=False))
        hint = f" ({loose} audio file(s) directly in it: pass pattern= to read labels from names)" if loose else ""
        raise ConfigError(f"labelled-folders dataset {str(root)!r}: no label folders{hint}")
    clips = []
    for folder in folders:
        files = _audio_files(folder, recursive=True)
        if not files:
            raise ConfigError(f"labelled-folders dataset {str(root)!r}: label folder {folder.name!r} "
                              "holds no audio files (empty class)")
        clips.extend(Clip(path, folder.name, speaker_from_name(path)) for path in files)
    return Listing("folders", root, [d.name for d in folders], clips)


# --------------------------------------------------------------------- CSV manifest


def manifest(csv_path) -> Listing:
    """List a CSV with columns file + label/class (+ optional speaker, split), paths relative to it.

    Header names are matched case-insensitively (see ``MANIFEST_*_COLUMNS``). A ``split``
    column (train / validation / test, or val, dev, testing) is used as the official split.
    Labels are sorted. A missing column, an empty file or label cell, or an unknown split
    value raises ConfigError naming the line.
    """
    path = Path(os.path.abspath(os.fspath(csv_path)))
    if not path.is_file():
        raise ConfigError(f"CSV manifest: no such file {str(path)!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"CSV manifest {str(path)!r}: empty file")
        columns = _manifest_columns(path, header)
        rows = list(enumerate(reader, 2))
    clips, assigned = [], {}
    for line_no, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i is not None and i < len(row) else "") for name, i in columns.items()}
        where = f"CSV manifest {str(path)!r} line {line_no}"
        if not cells["file"] or not cells["label"]:
            raise ConfigError(f"{where}: empty {'file' if not cells['file'] else 'label'} cell")
        audio = Path(os.path.abspath(path.parent / cells["file"]))
        clips.append(Clip(audio, cells["label"], cells["speaker"] or speaker_from_name(audio)))
        if columns["split"] is not None:
            split = SPLIT_ALIASES.get(cells["split"].lower())
            if split is None:
                raise ConfigError(f"{where}: unknown split {cells['split']!r}; use one of {SPLITS}")
            assigned[audio] = split
    if not clips:
        raise ConfigError(f"CSV manifest {str(path)!r}: no rows")
    labels = sorted({clip.label for clip in clips})
    return Listing("manifest", path.parent, labels, clips, assigned if columns["split"] is not None else None)


def _manifest_columns(path: Path, header: list[str]) -> dict[str, int | None]:
    """Column index of file, label, speaker, split (the last two may be None)."""
    names = [h.strip().lower() for h in header]

    def find(options, required):
        for option in options:
            if option in names:
                return names.index(option)
        if required:
            raise ConfigError(f"CSV manifest {str(path)!r}: no {options[0]!r} column (accepted headers: "
                              f"{list(options)}); the header is {header}")
        return None

    return {"file": find(MANIFEST_FILE_COLUMNS, True), "label": find(MANIFEST_LABEL_COLUMNS, True),
            "speaker": find(MANIFEST_SPEAKER_COLUMNS, False), "split": find(MANIFEST_SPLIT_COLUMNS, False)}


# --------------------------------------------------------------------- filename pattern


def compile_pattern(pattern: str) -> re.Pattern:
    """A regex for a file-name ``pattern`` with ``{field}`` placeholders, or ConfigError.

    ``{index}`` matches digits, every other field (``{label}``, ``{speaker}``, any name)
    the shortest non-empty text; the rest is literal. A pattern containing "/" is matched
    against the path relative to the root, otherwise against the file name.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"pattern must be a non-empty string like '{{label}}_{{speaker}}_{{index}}.wav', "
                          f"got {pattern!r}")
    parts, seen = [], set()
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as e:
        raise ConfigError(f"pattern {pattern!r}: {e}") from e
    for literal, name, spec, conversion in parsed:
        parts.append(re.escape(literal))
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(f"pattern {pattern!r}: placeholder {{{name}}} must be a plain name like {{label}}")
        if name in seen:
            raise ConfigError(f"pattern {pattern!r}: placeholder {{{name}}} appears twice")
        seen.add(name)
        parts.append(f"(?P<{name}>{_INDEX_REGEX if name == 'index' else _FIELD_REGEX})")
    if not seen:
        raise ConfigError(f"pattern {pattern!r} has no placeholder; use fields such as {PATTERN_FIELDS}")
    return re.compile("".join(parts) + r"\Z")


def filename_pattern(root, pattern: str) -> Listing:
    """List audio files under ``root`` whose names match ``pattern``; labels sorted.

    The label is the ``{label}`` field, or, without one, the first folder below ``root``.
    The speaker is the ``{speaker}`` field, else as :func:`speaker_from_name` reads the name
    (the ``_nohash_`` prefix, else the file stem). Audio files that do not
    match are skipped with a warning; none matching raises ConfigError.
    """
    root = _require_dir(root, "filename-pattern dataset")
    regex = compile_pattern(pattern)
    by_path = "/" in pattern
    clips, skipped = [], []
    files = _audio_files(root, recursive=True)
    for path in files:
        relative = path.relative_to(root)
        match = regex.match(relative.as_posix() if by_path else path.name)
        fields = match.groupdict() if match else {}
        label = fields.get("label") or (relative.parts[0] if len(relative.parts) > 1 else None)
        if match is None or label is None:
            why = "does not match" if match is None else "has no {label} field and is not in a label folder:"
            skipped.append((str(path), f"name {why} pattern {pattern!r}"))
            continue
        clips.append(Clip(path, label, fields.get("speaker") or speaker_from_name(path)))
    if not clips:
        example = f" (e.g. {files[0].name!r})" if files else " (no audio files found)"
        raise ConfigError(f"filename-pattern dataset {str(root)!r}: no file matches {pattern!r}{example}")
    if skipped:
        warn_skipped(skipped, f"not matching the pattern under {str(root)!r}")
    labels = sorted({clip.label for clip in clips})
    return Listing("pattern", root, labels, clips, skipped=skipped)


# --------------------------------------------------------------------- label maps


def parse_label_map(value) -> dict[str, str] | None:
    """A label map as ``{raw: name}``, from a mapping, ``"0=zero,1=one"`` or a JSON object string.

    None stays None. Keys and values are stripped strings; an empty key or value, a
    duplicate key, or an entry without "=" raises ConfigError.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = [(str(k).strip(), str(v).strip()) for k, v in value.items()]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"label_map {value!r}: invalid JSON ({e})") from e
            if not isinstance(loaded, dict):
                raise ConfigError(f"label_map {value!r}: JSON must be an object like {{\"0\": \"zero\"}}")
            return parse_label_map(loaded)
        items = []
        for entry in filter(None, (e.strip() for e in text.split(","))):
            key, sep, name = entry.partition("=")
            if not sep:
                raise ConfigError(f"label_map entry {entry!r} has no '=': write it as raw=name, e.g. '0=zero'")
            items.append((key.strip(), name.strip()))
    else:
        raise ConfigError(f"label_map must be a mapping or a string like '0=zero,1=one', got {value!r}")
    mapping: dict[str, str] = {}
    for key, name in items:
        if not key or not name:
            raise ConfigError(f"label_map entry {key!r} -> {name!r}: key and name must be non-empty")
        if key in mapping:
            raise ConfigError(f"label_map: key {key!r} appears twice")
        mapping[key] = name
    if not mapping:
        raise ConfigError(f"label_map {value!r} is empty")
    return mapping


def apply_label_map(listing: Listing, label_map: dict[str, str]) -> Listing:
    """``listing`` with every label renamed through ``label_map``; labels ordered as the map's names.

    Every label found must be a key of the map (ConfigError naming the first that is not):
    a partial map usually means a typo. Names that no clip maps to stay in the label list,
    so the split check reports them as empty classes.
    """
    unmapped = sorted({clip.label for clip in listing.clips} - set(label_map))
    if unmapped:
        raise ConfigError(f"label {unmapped[0]!r} (of {len(unmapped)} unmapped: {unmapped[:5]}) is not a key of "
                          f"label_map (keys: {list(label_map)[:10]})")
    clips = [Clip(c.path, label_map[c.label], c.speaker, c.noise, c.gain) for c in listing.clips]
    labels = list(dict.fromkeys(label_map.values()))
    return replace(listing, labels=labels, clips=clips)

"""Datasets and label sets.

Opening, scanning and splitting a dataset needs no torch; ``FeatureDataset`` (torch) is
imported on first use.
"""

from lmustream.data.cache import default_cache_dir
from lmustream.data.clips import DEFAULT_FRAMES, Clip, SkippedFileWarning, scan_clips
from lmustream.data.datasets import DatasetIndex, detect_kind, open_dataset
from lmustream.data.labels import SPEECH_COMMANDS_12, SPEECH_COMMANDS_V2_WORDS
from lmustream.data.sources import parse_label_map
from lmustream.data.splits import SplitWarning, held_out_speakers, split_by_speaker

_LAZY = {"FeatureDataset", "clip_features"}

__all__ = ["DEFAULT_FRAMES", "Clip", "DatasetIndex", "SPEECH_COMMANDS_12", "SPEECH_COMMANDS_V2_WORDS",
           "SkippedFileWarning", "SplitWarning", "default_cache_dir", "detect_kind", "held_out_speakers",
           "open_dataset", "parse_label_map", "scan_clips", "split_by_speaker", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from lmustream.data import feature_dataset
        return getattr(feature_dataset, name)
    raise AttributeError(f"module 'lmustream.data' has no attribute {name!r}")

"""Settings checked where they are given: numbers against intervals written as in mathematics
("[0, 1)", "(0, inf)", "(-inf, inf)"), flags as real bools. The training recipe, the fine-tuning
settings, the adapter configs and the runtimes share these checks, so one typo (lr=-1,
grad_clip=nan, int8="no") reads the same wherever it is made.

Infinite ends are open, so NaN and infinities never pass (``nan > 0`` is False, so a bare sign
check would let NaN through). A bool is no number here: True would pass as 1.
"""

from __future__ import annotations

import numpy as np

from lmustream.errors import ConfigError


def _ends(interval: str) -> tuple[float, float]:
    low, high = interval[1:-1].split(", ")
    return float(low), float(high)


def is_number(value: object, integer: bool = False) -> bool:
    """An int (``integer``) or an int or float, never a bool."""
    return isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)


def within(value: object, interval: str, integer: bool = False) -> bool:
    """Whether ``value`` is a number (an integer, with ``integer``) in ``interval``."""
    if not is_number(value, integer):
        return False
    low, high = _ends(interval)
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return above and below


def describe(interval: str) -> str:
    """``interval`` in words: "> 0", ">= 1", "in [0, 1)", "a finite number"."""
    low, high = interval[1:-1].split(", ")
    if (low, high) == ("-inf", "inf"):
        return "a finite number"
    if high == "inf":
        return f"{'>' if interval[0] == '(' else '>='} {low}"
    return f"in {interval}"


def check_range(name: str, value: object, interval: str, integer: bool = False) -> None:
    """ConfigError naming ``name`` unless ``value`` is a number (an integer, with ``integer``) in ``interval``."""
    if within(value, interval, integer):
        return
    rule = describe(interval)
    if not is_number(value, integer) and not rule.startswith("a "):
        rule = f"{'an integer' if integer else 'a number'} {rule}"
    raise ConfigError(f"{name} must be {rule}, got {value!r}")


def check_pair(name: str, pair: object, interval: str) -> None:
    """ConfigError naming ``name`` unless ``pair`` is ``[low, high]``, each a number in ``interval``, low <= high."""
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(within(end, interval) for end in pair) \
            and pair[0] <= pair[1]:
        return
    shown = list(pair) if isinstance(pair, (list, tuple)) else repr(pair)
    raise ConfigError(f"{name} must be a pair [low, high] with low <= high, each {describe(interval)}, got {shown}")


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool, or ConfigError naming ``name``: any object is truthy, so "no" would mean yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)

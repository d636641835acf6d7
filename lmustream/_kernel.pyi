"""Type stub of lmustream._kernel, the C++ runtime (csrc/). Import it via lmustream.stream."""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

__version__: str

class BuildInfo(TypedDict):
    version: str
    simd: str
    compiler: str
    cxx_standard: str

def build_info() -> BuildInfo: ...
def lmu_memory_scan(
    A: npt.ArrayLike,
    B: npt.ArrayLike,
    u: npt.ArrayLike,
    m0: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

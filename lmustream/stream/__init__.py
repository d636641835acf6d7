"""Frame-by-frame inference: the C++ kernel's Python face, the step form and its ONNX export.

Only the kernel's functions are re-exported here, because they need neither torch nor the
extension at import time; import ``lmustream.stream.step``, ``.verify`` and ``.onnx_export``
directly.
"""

from lmustream.stream.kernel import Kernel, KernelStream, kernel_available, kernel_info, lmu_memory_scan

__all__ = ["Kernel", "KernelStream", "kernel_available", "kernel_info", "lmu_memory_scan"]

"""Builds lmustream._kernel, the C++ runtime, from csrc/.

Package metadata (name, version, dependencies) lives in pyproject.toml; this file only
describes the extension. It works for `pip install .`, `pip install -e .` (the built .so is
placed next to lmustream/__init__.py) and `python setup.py build_ext --inplace`.

A wheel also carries the shipped models (models/*.safetensors and their cards) and the training
recipes (configs/*.yaml) inside the package, in lmustream/_shipped/, where lmustream.shipped finds
them by name when no source checkout is around the package.

The build is portable by default: no -march flags, so a wheel built on one x86-64 or aarch64
machine runs on any other. LMUSTREAM_NATIVE=1 opts in to -march=native for a local build
(`lmustream info` then shows the wider SIMD level).
"""

import os
import re
from glob import glob
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def package_version() -> str:
    # Read, not imported: importing lmustream during the build would need its dependencies.
    text = (HERE / "lmustream" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ = '...' line in lmustream/__init__.py")
    return match.group(1)


def kernel_sources() -> list[str]:
    # Relative paths: setuptools wants them relative to the project root, which is the
    # working directory of every pip build.
    sources = sorted(glob("csrc/*.cc")) + sorted(glob("csrc/kernels/*.cc")) + sorted(glob("csrc/python/*.cc"))
    if not sources:
        raise RuntimeError(f"no C++ sources under csrc/ (run the build from {HERE})")
    return sources


class BuildExt(build_ext):
    """Adds optimisation flags once the compiler family is known."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2"]
        else:
            # -ffp-contract=off: no fused multiply-adds, so the kernel gives the same bits
            # whichever compiler (gcc or clang) and SIMD level built it.
            flags = ["-O3", "-ffp-contract=off"]
            if os.environ.get("LMUSTREAM_NATIVE") == "1":
                flags.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = [*ext.extra_compile_args, *flags]
        super().build_extensions()


SHIPPED = {"models": ("*.safetensors", "*.md"), "configs": ("*.yaml",)}


class BuildPy(build_py):
    """Copies the shipped models and recipes into the built package (not for editable installs,
    which find them in the checkout)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        for folder, patterns in SHIPPED.items():
            target = Path(self.build_lib) / "lmustream" / "_shipped" / folder
            self.mkpath(str(target))
            for pattern in patterns:
                for source in sorted((HERE / folder).glob(pattern)):
                    self.copy_file(str(source), str(target / source.name))


# Compile the translation units in parallel (LMUSTREAM_BUILD_JOBS=N to cap; 0 = all cores).
ParallelCompile("LMUSTREAM_BUILD_JOBS", default=0).install()

kernel = Pybind11Extension(
    "lmustream._kernel",
    sources=kernel_sources(),
    depends=sorted(glob("csrc/*.h") + glob("csrc/kernels/*.h")),  # rebuild on header edits; ships them in the sdist
    include_dirs=["csrc"],
    define_macros=[("VERSION_INFO", package_version())],
    cxx_std=17,
)

setup(ext_modules=[kernel], cmdclass={"build_ext": BuildExt, "build_py": BuildPy})

// Entry point of lmustream._kernel. Each bind_*.cc file registers one part of the C++
// runtime; this file only wires them together and reports how the module was built.
#include <pybind11/pybind11.h>

#include <string>

#include "../kernels/kernels.h"
#include "../lmu_memory.h"

namespace py = pybind11;

void bind_lmu_memory(py::module_& m);  // bind_lmu_memory.cc
void bind_kernel(py::module_& m);      // bind_kernel.cc

namespace {

#define LMUSTREAM_STRINGIFY_(x) #x
#define LMUSTREAM_STRINGIFY(x) LMUSTREAM_STRINGIFY_(x)

#ifdef VERSION_INFO
constexpr const char* kVersion = LMUSTREAM_STRINGIFY(VERSION_INFO);
#else
// Built outside setup.py (e.g. by hand while hacking on csrc/).
constexpr const char* kVersion = "unknown";
#endif

constexpr const char* kModuleDoc = R"doc(lmustream's C++ runtime (pybind11).

Use it through lmustream.stream, which also accepts torch tensors and reports a missing
build clearly. Functions: lmu_memory_scan, build_info.
)doc";

constexpr const char* kBuildInfoDoc = R"doc(build_info() -> dict

How this extension was built and what it runs: {"version": lmustream version baked in at
build time, "simd": the SIMD path the engine uses on this CPU, chosen at run time ("avx512",
"avx2", "neon" or "scalar"), "simd_levels": every path this CPU can run, best first,
"compiled_simd": the widest set the compiler could use for the baseline code ("sse2",
"neon", ...), "compiler": compiler and version, "cxx_standard": e.g. "C++17", "sparse_int8": whether
that path has the sparse int8 product (int8 layers whose input codes are mostly zero read only the
nonzero inputs' weights)}.
)doc";

std::string compiler_name() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_FULL_VER);
#else
    return "unknown";
#endif
}

std::string cxx_standard() {
    // MSVC keeps __cplusplus at 199711L unless /Zc:__cplusplus is given; _MSVC_LANG is honest.
#if defined(_MSVC_LANG)
    const long level = _MSVC_LANG;
#else
    const long level = __cplusplus;
#endif
    if (level > 202002L) return "C++23";
    if (level >= 202002L) return "C++20";
    if (level >= 201703L) return "C++17";
    if (level >= 201402L) return "C++14";
    return "C++ " + std::to_string(level);
}

}  // namespace

PYBIND11_MODULE(_kernel, m) {
    // The docstrings carry hand-written signatures with shapes, clearer than pybind11's
    // generated "A: object" ones; the real types are in lmustream/_kernel.pyi.
    py::options options;
    options.disable_function_signatures();
    m.doc() = kModuleDoc;
    m.attr("__version__") = kVersion;
    m.def(
        "build_info",
        [] {
            py::dict info;
            info["version"] = kVersion;
            info["simd"] = lmustream::kernels::select("auto")->name;
            info["simd_levels"] = lmustream::kernels::supported_levels();
            info["compiled_simd"] = lmustream::simd_level();
            info["compiler"] = compiler_name();
            info["cxx_standard"] = cxx_standard();
            info["sparse_int8"] = lmustream::kernels::select("auto")->i8_sparse != nullptr;
            return info;
        },
        kBuildInfoDoc);
    bind_lmu_memory(m);
    bind_kernel(m);
}

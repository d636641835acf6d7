// The Legendre memory update of an LMU cell, run over a block of frames:
//
//     m_t = A m_{t-1} + B u_t        (A: [M, M] row-major, B: [M], u_t a scalar per frame)
//
// Plain C++ with no Python dependency, so the same code can later back a standalone
// streaming runtime; csrc/python/ holds the pybind11 bindings.
#pragma once

namespace lmustream {

// Runs T frames of the memory update in float32.
//   A    [M * M], row-major;   B [M];   u [T]
//   m    [M]: the state before the block (m_{-1}) on entry, the state after it on return
//        (left unchanged when T == 0)
//   out  [T * M]: row t holds m_t
// Preconditions (checked by the callers, not here): M >= 1, T >= 0, out does not overlap
// A, B, u or m. The summation order is fixed in the source, so results do not depend on
// the SIMD width the compiler picked.
void f32_lmu_memory_scan(const float* A, const float* B, int M, const float* u, int T, float* m,
                         float* out);

// The widest SIMD instruction set this translation unit was compiled for: "avx512f",
// "avx2+fma", "avx2", "avx", "sse2", "neon" or "scalar". It tells what the auto-vectoriser
// could use, from the compiler's predefined macros; no run-time CPU detection.
const char* simd_level();

}  // namespace lmustream

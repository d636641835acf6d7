#include "lmu_memory.h"

#include <cstddef>
#include <cstring>

namespace lmustream {
namespace {

// Independent partial sums per dot product. Float addition is not associative, so without
// -ffast-math the compiler may not vectorise a single running sum; giving it kLanes sums
// to advance side by side lets it use one AVX-512 register, two AVX ones or four SSE/NEON
// ones, while the order of additions stays exactly what is written here. (16 measured best
// of 8/16/32 at M = 256 and 512 across SSE2, AVX2 and AVX-512 builds; 8 was ~5x slower
// with -mavx512f.)
constexpr std::size_t kLanes = 16;

// Indices are size_t, not int: CPython builds extensions with -fwrapv, under which int
// arithmetic may wrap, so GCC cannot prove that a[j + k] is contiguous and stops
// vectorising (measured 4-5x slower).
inline float dot(const float* a, const float* x, std::size_t n) {
    float acc[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
        for (std::size_t k = 0; k < kLanes; ++k) acc[k] += a[j + k] * x[j + k];
    }
    float tail = 0.0f;
    for (; j < n; ++j) tail += a[j] * x[j];
    // Pairwise fold: a fixed tree, and a shallower one than a sequential sum of the lanes.
    for (std::size_t width = kLanes / 2; width > 0; width /= 2) {
        for (std::size_t k = 0; k < width; ++k) acc[k] += acc[k + width];
    }
    return acc[0] + tail;
}

}  // namespace

void f32_lmu_memory_scan(const float* A, const float* B, int M, const float* u, int T, float* m,
                         float* out) {
    const std::size_t row = static_cast<std::size_t>(M);
    const std::size_t frames = T > 0 ? static_cast<std::size_t>(T) : 0;
    // Each frame reads the previous frame's row of `out` (or m for the first frame), so the
    // update needs no scratch buffer and m_{t-1} is still in L1 when m_t is computed.
    const float* prev = m;
    for (std::size_t t = 0; t < frames; ++t) {
        float* next = out + t * row;
        const float drive = u[t];
        // Row-major A: each output is one contiguous row of A dotted with m_{t-1}.
        for (std::size_t i = 0; i < row; ++i) next[i] = dot(A + i * row, prev, row) + B[i] * drive;
        prev = next;
    }
    if (frames > 0) std::memcpy(m, prev, row * sizeof(float));
}

const char* simd_level() {
#if defined(__AVX512F__)
    return "avx512f";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2+fma";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__AVX__)
    return "avx";
#elif defined(__SSE2__) || defined(_M_X64)
    // Baseline of every x86-64 build (what a portable wheel gets without -march).
    return "sse2";
#elif defined(__ARM_NEON) || defined(__aarch64__) || defined(_M_ARM64)
    return "neon";
#else
    return "scalar";
#endif
}

}  // namespace lmustream

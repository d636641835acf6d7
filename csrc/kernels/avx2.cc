// AVX2 + FMA (+ F16C) implementation of the primitives (see kernels.h for the contracts). Only
// compiled for x86-64, with target attributes on this file's functions alone.
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

namespace lmustream {
namespace kernels {
namespace {

// The accumulators of a block must live in registers: ask for the constant-trip loops over
// panels and streams to be unrolled completely (GCC keeps them as loops otherwise, spilling
// every accumulator to the stack on each input).
#define LMU_UNROLL _Pragma("GCC unroll 16")

constexpr int P = kPanel;  // two 8-lane registers per panel

// Stores the first `n` of 16 lanes (n < 16 only in the last panel).
inline void store16(float* y, __m256 lo, __m256 hi, int n) {
    if (n >= P) {
        _mm256_storeu_ps(y, lo);
        _mm256_storeu_ps(y + 8, hi);
        return;
    }
    alignas(32) float tmp[P];
    _mm256_store_ps(tmp, lo);
    _mm256_store_ps(tmp + 8, hi);
    for (int l = 0; l < n; ++l) y[l] = tmp[l];
}

inline int lanes_of(int panel, int out) {
    const int left = out - panel * P;
    return left < P ? left : P;
}

inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 load8(const std::uint16_t* w) {  // float16 -> float32, exact (F16C)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
}

template <int NB, int G, typename Matrix>
inline void f32_block(const Matrix& m, int p0, const float* const* x, float* const* y) {
    __m256 lo[NB][G], hi[NB][G];
    decltype(m.w) w[G];  // const float* or const std::uint16_t* (float16 bits)
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in, p0 + g, 0) * P;
        stride[g] = panel_run(m.panels, p0 + g) * P;
        const __m256 b_lo = _mm256_loadu_ps(m.bias + (p0 + g) * P);
        const __m256 b_hi = _mm256_loadu_ps(m.bias + (p0 + g) * P + 8);
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) {
            lo[b][g] = b_lo;
            hi[b][g] = b_hi;
        }
    }
    for (int i = 0; i < m.in; ++i) {
        __m256 xi[NB];
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) xi[b] = _mm256_set1_ps(x[b][i]);
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            const __m256 w_lo = load8(w[g] + i * stride[g]);
            const __m256 w_hi = load8(w[g] + i * stride[g] + 8);
            LMU_UNROLL
            for (int b = 0; b < NB; ++b) {
                lo[b][g] = _mm256_fmadd_ps(w_lo, xi[b], lo[b][g]);
                hi[b][g] = _mm256_fmadd_ps(w_hi, xi[b], hi[b][g]);
            }
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) store16(y[b] + (p0 + g) * P, lo[b][g], hi[b][g], lanes_of(p0 + g, m.out));
    }
}

// The panels left after the blocks of G (left < G) as one block of independent accumulator
// chains, not one panel at a time (each chain would wait on the FMA latency).
template <int NB, int R, typename Matrix>
inline void f32_rest(const Matrix& m, int p, int left, const float* const* x, float* const* y) {
    if constexpr (R > 0) {
        if (left == R) f32_block<NB, R>(m, p, x, y);
        else f32_rest<NB, R - 1>(m, p, left, x, y);
    }
}

template <int NB, int G, typename Matrix>
void f32_panels(const Matrix& m, const float* const* x, float* const* y) {
    int p = 0;
    for (; p + G <= m.panels; p += G) f32_block<NB, G>(m, p, x, y);
    f32_rest<NB, G - 1>(m, p, m.panels - p, x, y);
}

template <typename Matrix>
void dense(const Matrix& m, const float* const* x, int batch, float* const* y) {
    int b = 0;
    for (; b + 2 <= batch; b += 2) f32_panels<2, 3>(m, x + b, y + b);
    if (b < batch) f32_panels<1, 4>(m, x + b, y + b);
}

void f32_dense(const F32Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }
void f16_dense(const F16Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }

template <int G>
inline void f32_columns_block(const F32Matrix& m, int p0, const std::int32_t* active, int n_active, float* y) {
    __m256 lo[G], hi[G];
    const float* w[G];
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in, p0 + g, 0) * P;
        stride[g] = panel_run(m.panels, p0 + g) * P;
        lo[g] = _mm256_loadu_ps(m.bias + (p0 + g) * P);
        hi[g] = _mm256_loadu_ps(m.bias + (p0 + g) * P + 8);
    }
    for (int a = 0; a < n_active; ++a) {
        const long column = active[a];
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            lo[g] = _mm256_add_ps(lo[g], _mm256_loadu_ps(w[g] + column * stride[g]));
            hi[g] = _mm256_add_ps(hi[g], _mm256_loadu_ps(w[g] + column * stride[g] + 8));
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) store16(y + (p0 + g) * P, lo[g], hi[g], lanes_of(p0 + g, m.out));
}

void f32_columns(const F32Matrix& m, const std::int32_t* active, int n_active, float* y) {
    int p = 0;
    for (; p + 4 <= m.panels; p += 4) f32_columns_block<4>(m, p, active, n_active, y);
    for (; p < m.panels; ++p) f32_columns_block<1>(m, p, active, n_active, y);
}

// float(acc) * (x_scale * scale) + bias, lane by lane, for 8 outputs starting at o.
inline __m256 i8_finish(__m256i acc, float x_scale, const float* scale, const float* bias) {
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(x_scale), _mm256_loadu_ps(scale));
    return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), s), _mm256_loadu_ps(bias));
}

// The same for inputs that stand for xq + x_zero: acc + x_zero * rowsum first, exact in int32.
inline __m256 i8_finish(__m256i acc, float x_scale, std::int32_t x_zero, const std::int32_t* rowsum,
                        const float* scale, const float* bias) {
    const __m256i offset = _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rowsum)),
                                              _mm256_set1_epi32(x_zero));
    return i8_finish(_mm256_add_epi32(acc, offset), x_scale, scale, bias);
}

// Without VNNI: |x| (unsigned) times w * sign(x) with maddubs gives exact int16 pair sums
// (|x|, |w| <= 127, so no saturation), and madd with ones adds the pairs into int32.
template <int G>
inline void i8_block(const I8Matrix& m, int p0, const std::int8_t* xq, float x_scale, std::int32_t x_zero,
                     float* y) {
    const int groups = m.in4 / 4;
    __m256i lo[G], hi[G];
    const std::int8_t* w[G];
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in4 / 4, p0 + g, 0) * P * 4;
        stride[g] = panel_run(m.panels, p0 + g) * P * 4;
        lo[g] = _mm256_setzero_si256();
        hi[g] = _mm256_setzero_si256();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int k = 0; k < groups; ++k) {
        std::int32_t packed;
        __builtin_memcpy(&packed, xq + 4 * k, 4);
        const __m256i x4 = _mm256_set1_epi32(packed);
        const __m256i ax = _mm256_abs_epi8(x4);
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            const __m256i* src = reinterpret_cast<const __m256i*>(w[g] + k * stride[g]);
            const __m256i w_lo = _mm256_sign_epi8(_mm256_loadu_si256(src), x4);
            const __m256i w_hi = _mm256_sign_epi8(_mm256_loadu_si256(src + 1), x4);
            lo[g] = _mm256_add_epi32(lo[g], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, w_lo), ones));
            hi[g] = _mm256_add_epi32(hi[g], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, w_hi), ones));
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        const int p = p0 + g;
        store16(y + p * P, i8_finish(lo[g], x_scale, x_zero, m.rowsum + p * P, m.scale + p * P, m.bias + p * P),
                i8_finish(hi[g], x_scale, x_zero, m.rowsum + p * P + 8, m.scale + p * P + 8, m.bias + p * P + 8),
                lanes_of(p, m.out));
    }
}

void i8_dense(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale, const std::int32_t* x_zero,
              int batch, float* const* y) {
    for (int b = 0; b < batch; ++b) {
        int p = 0;
        for (; p + 4 <= m.panels; p += 4) i8_block<4>(m, p, xq[b], x_scale[b], x_zero[b], y[b]);
        switch (m.panels - p) {  // the rest as one block of independent chains (see f32_rest)
            case 3: i8_block<3>(m, p, xq[b], x_scale[b], x_zero[b], y[b]); break;
            case 2: i8_block<2>(m, p, xq[b], x_scale[b], x_zero[b], y[b]); break;
            case 1: i8_block<1>(m, p, xq[b], x_scale[b], x_zero[b], y[b]); break;
            default: break;
        }
    }
}

void i8_columns(const I8Columns& m, const std::int32_t* active, int n_active, float* y) {
    for (int p = 0; p < m.panels; ++p) {
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        const std::int8_t* w = m.w + static_cast<long>(p) * m.in * P;
        for (int a = 0; a < n_active; ++a) {
            const __m128i col = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + static_cast<long>(active[a]) * P));
            lo = _mm256_add_epi32(lo, _mm256_cvtepi8_epi32(col));
            hi = _mm256_add_epi32(hi, _mm256_cvtepi8_epi32(_mm_srli_si128(col, 8)));
        }
        store16(y + p * P, i8_finish(lo, 1.0f, m.scale + p * P, m.bias + p * P),
                i8_finish(hi, 1.0f, m.scale + p * P + 8, m.bias + p * P + 8), lanes_of(p, m.out));
    }
}

inline __m256 gelu8(__m256 v) {
    __m256 a = _mm256_mul_ps(v, _mm256_set1_ps(kInvSqrt2));
    a = _mm256_min_ps(_mm256_max_ps(a, _mm256_set1_ps(-4.0f)), _mm256_set1_ps(4.0f));
    const __m256 z = _mm256_mul_ps(a, a);
    __m256 p = _mm256_set1_ps(kErfP[0]), q = _mm256_set1_ps(kErfQ[0]);
    LMU_UNROLL
    for (int t = 1; t < kErfTerms; ++t) {  // separate multiply and add: the scalar path's roundings
        p = _mm256_add_ps(_mm256_mul_ps(p, z), _mm256_set1_ps(kErfP[t]));
        q = _mm256_add_ps(_mm256_mul_ps(q, z), _mm256_set1_ps(kErfQ[t]));
    }
    __m256 erf = _mm256_div_ps(_mm256_mul_ps(a, p), q);
    erf = _mm256_min_ps(_mm256_max_ps(erf, _mm256_set1_ps(-1.0f)), _mm256_set1_ps(1.0f));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1.0f), erf));
}

void gelu(float* x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {  // the tail through a padded copy
        alignas(32) float tail[8] = {};
        __builtin_memcpy(tail, x + i, sizeof(float) * static_cast<unsigned>(n - i));
        _mm256_store_ps(tail, gelu8(_mm256_load_ps(tail)));
        __builtin_memcpy(x + i, tail, sizeof(float) * static_cast<unsigned>(n - i));
    }
}

void f64_dense(const F64Matrix& m, const double* const* x, int batch, double* const* y) {
    constexpr int Q = kPanel64;
    constexpr int G = 4;
    for (int b = 0; b < batch; ++b) {
        for (int p0 = 0; p0 < m.panels; p0 += G) {
            const int n_panels = m.panels - p0 < G ? m.panels - p0 : G;
            __m256d lo[G], hi[G];
            LMU_UNROLL
            for (int g = 0; g < G; ++g) lo[g] = hi[g] = _mm256_setzero_pd();
            for (int i = 0; i < m.in; ++i) {
                const __m256d xi = _mm256_set1_pd(x[b][i]);
                for (int g = 0; g < n_panels; ++g) {
                    const double* w = m.w + (static_cast<long>(p0 + g) * m.in + i) * Q;
                    lo[g] = _mm256_fmadd_pd(_mm256_loadu_pd(w), xi, lo[g]);
                    hi[g] = _mm256_fmadd_pd(_mm256_loadu_pd(w + 4), xi, hi[g]);
                }
            }
            for (int g = 0; g < n_panels; ++g) {
                alignas(32) double tmp[Q];
                _mm256_store_pd(tmp, lo[g]);
                _mm256_store_pd(tmp + 4, hi[g]);
                const int left = m.out - (p0 + g) * Q;
                const int n = left < Q ? left : Q;
                for (int l = 0; l < n; ++l) y[b][(p0 + g) * Q + l] = tmp[l];
            }
        }
    }
}

void minmax(const float* x, int n, float* lo, float* hi) {
    __m256 a = _mm256_set1_ps(x[0]), b = a;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        a = _mm256_min_ps(a, v);
        b = _mm256_max_ps(b, v);
    }
    alignas(32) float la[8], lb[8];
    _mm256_store_ps(la, a);
    _mm256_store_ps(lb, b);
    float low = la[0], high = lb[0];
    for (int l = 1; l < 8; ++l) {
        low = la[l] < low ? la[l] : low;
        high = lb[l] > high ? lb[l] : high;
    }
    for (; i < n; ++i) {
        low = x[i] < low ? x[i] : low;
        high = x[i] > high ? x[i] : high;
    }
    *lo = low;
    *hi = high;
}

void quantize(const float* x, int n, float inv, std::int32_t zero, std::int8_t* q) {
    const __m256 scale = _mm256_set1_ps(inv);
    const __m256i z = _mm256_set1_epi32(zero);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_sub_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale)), z);  // nearest, ties even
        alignas(32) std::int32_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
        for (int l = 0; l < 8; ++l) q[i + l] = static_cast<std::int8_t>(lanes[l]);
    }
    constexpr float kRound = 12582912.0f;
    for (; i < n; ++i) {
        const float scaled = x[i] * inv;
        const float shifted = scaled + kRound;
        q[i] = static_cast<std::int8_t>(static_cast<int>(shifted - kRound) - zero);
    }
}

double fma_loop(long iterations, float* sink) {
    constexpr int K = 12;
    __m256 acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = _mm256_set1_ps(float(k));
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    }
    __m256 total = acc[0];
    for (int k = 1; k < K; ++k) total = _mm256_add_ps(total, acc[k]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, total);
    *sink = lanes[0] + lanes[7];
    return double(iterations) * K * 8;
}

double dot_i8_loop(long iterations, std::int32_t* sink) {
    constexpr int K = 12;
    __m256i acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = _mm256_set1_epi32(k);
    const __m256i a = _mm256_set1_epi32(0x01020304), b = _mm256_set1_epi32(0x05060708);
    const __m256i ones = _mm256_set1_epi16(1);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) {
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a)), ones));
        }
    }
    __m256i total = acc[0];
    for (int k = 1; k < K; ++k) total = _mm256_add_epi32(total, acc[k]);
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), total);
    *sink = lanes[0] + lanes[7];
    return double(iterations) * K * 32;
}

float read_sum(const float* data, long n) {
    __m256 acc[8];
    LMU_UNROLL
    for (int s = 0; s < 8; ++s) acc[s] = _mm256_setzero_ps();
    for (long i = 0; i < n; i += 128) {
        LMU_UNROLL
        for (int s = 0; s < 8; ++s) {
            acc[s] = _mm256_add_ps(acc[s], _mm256_add_ps(_mm256_loadu_ps(data + i + 16 * s),
                                                         _mm256_loadu_ps(data + i + 16 * s + 8)));
        }
    }
    __m256 total = acc[0];
    for (int s = 1; s < 8; ++s) total = _mm256_add_ps(total, acc[s]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, total);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

const Table kTable = {"avx2", f32_dense, f16_dense, f32_columns, i8_dense, i8_columns, f64_dense, minmax,
                      quantize, gelu, fma_loop, dot_i8_loop, read_sum, nullptr};

}  // namespace

const Table* avx2_table() { return &kTable; }

}  // namespace kernels
}  // namespace lmustream

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else  // not x86-64

namespace lmustream {
namespace kernels {
const Table* avx2_table() { return nullptr; }
}  // namespace kernels
}  // namespace lmustream

#endif

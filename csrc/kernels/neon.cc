// aarch64 Advanced SIMD (NEON) implementation of the primitives (see kernels.h for the
// contracts). NEON is part of the aarch64 baseline, so no flags are needed.
#include "kernels.h"

#if defined(__aarch64__) || defined(_M_ARM64)

#include <arm_neon.h>

namespace lmustream {
namespace kernels {
namespace {

// The accumulators of a block must live in registers: ask for the constant-trip loops over
// panels and streams to be unrolled completely (GCC keeps them as loops otherwise, spilling
// every accumulator to the stack on each input).
#define LMU_UNROLL _Pragma("GCC unroll 16")

constexpr int P = kPanel;  // four 4-lane registers per panel

inline int lanes_of(int panel, int out) {
    const int left = out - panel * P;
    return left < P ? left : P;
}

inline void store16(float* y, const float32x4_t* v, int n) {
    if (n >= P) {
        LMU_UNROLL
        for (int q = 0; q < 4; ++q) vst1q_f32(y + 4 * q, v[q]);
        return;
    }
    float tmp[P];
    LMU_UNROLL
    for (int q = 0; q < 4; ++q) vst1q_f32(tmp + 4 * q, v[q]);
    for (int l = 0; l < n; ++l) y[l] = tmp[l];
}

inline float32x4_t load4(const float* w) { return vld1q_f32(w); }
inline float32x4_t load4(const std::uint16_t* w) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w))); }  // exact

template <int G, typename Matrix>
inline void f32_block(const Matrix& m, int p0, const float* x, float* y) {
    float32x4_t acc[G][4];
    decltype(m.w) w[G];  // const float* or const std::uint16_t* (float16 bits)
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in, p0 + g, 0) * P;
        stride[g] = panel_run(m.panels, p0 + g) * P;
        LMU_UNROLL
        for (int q = 0; q < 4; ++q) acc[g][q] = vld1q_f32(m.bias + (p0 + g) * P + 4 * q);
    }
    for (int i = 0; i < m.in; ++i) {
        const float32x4_t xi = vdupq_n_f32(x[i]);
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            LMU_UNROLL
            for (int q = 0; q < 4; ++q) acc[g][q] = vfmaq_f32(acc[g][q], load4(w[g] + i * stride[g] + 4 * q), xi);
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) store16(y + (p0 + g) * P, acc[g], lanes_of(p0 + g, m.out));
}

template <typename Matrix>
void dense(const Matrix& m, const float* const* x, int batch, float* const* y) {
    for (int b = 0; b < batch; ++b) {
        int p = 0;
        for (; p + 2 <= m.panels; p += 2) f32_block<2>(m, p, x[b], y[b]);
        for (; p < m.panels; ++p) f32_block<1>(m, p, x[b], y[b]);
    }
}

void f32_dense(const F32Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }
void f16_dense(const F16Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }

void f32_columns(const F32Matrix& m, const std::int32_t* active, int n_active, float* y) {
    for (int p = 0; p < m.panels; ++p) {
        float32x4_t acc[4];
        LMU_UNROLL
        for (int q = 0; q < 4; ++q) acc[q] = vld1q_f32(m.bias + p * P + 4 * q);
        const float* w = m.w + panel_vector(m.panels, m.in, p, 0) * P;
        const long stride = panel_run(m.panels, p) * P;
        for (int a = 0; a < n_active; ++a) {
            const float* col = w + active[a] * stride;
            LMU_UNROLL
            for (int q = 0; q < 4; ++q) acc[q] = vaddq_f32(acc[q], vld1q_f32(col + 4 * q));
        }
        store16(y + p * P, acc, lanes_of(p, m.out));
    }
}

inline void i8_finish(const int32x4_t* acc, float x_scale, std::int32_t x_zero, const I8Matrix& m, int p, float* y) {
    float32x4_t out[4];
    LMU_UNROLL
    for (int q = 0; q < 4; ++q) {
        // inputs that stand for xq + x_zero: acc + x_zero * rowsum, exact in int32
        const int32x4_t total = vmlaq_s32(acc[q], vld1q_s32(m.rowsum + p * P + 4 * q), vdupq_n_s32(x_zero));
        const float32x4_t s = vmulq_f32(vdupq_n_f32(x_scale), vld1q_f32(m.scale + p * P + 4 * q));
        out[q] = vaddq_f32(vmulq_f32(vcvtq_f32_s32(total), s), vld1q_f32(m.bias + p * P + 4 * q));
    }
    store16(y + p * P, out, lanes_of(p, m.out));
}

// Products of int8 pairs fit in int16 (|x|, |w| <= 127); pairwise widening adds finish each
// output's group of four in int32: exact, as every other table.
void i8_dense(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale, const std::int32_t* x_zero,
              int batch, float* const* y) {
    const int groups = m.in4 / 4;
    for (int b = 0; b < batch; ++b) {
        for (int p = 0; p < m.panels; ++p) {
            int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            const std::int8_t* w = m.w + panel_vector(m.panels, m.in4 / 4, p, 0) * P * 4;
            const long stride = panel_run(m.panels, p) * P * 4;
            for (int k = 0; k < groups; ++k) {
                std::uint32_t packed;
                __builtin_memcpy(&packed, xq[b] + 4 * k, 4);
                const int8x16_t x4 = vreinterpretq_s8_u32(vdupq_n_u32(packed));
                LMU_UNROLL
                for (int q = 0; q < 4; ++q) {
                    const int8x16_t wv = vld1q_s8(w + k * stride + 4 * q * 4);
                    const int16x8_t lo = vmull_s8(vget_low_s8(wv), vget_low_s8(x4));  // outputs 4q, 4q+1
                    const int16x8_t hi = vmull_high_s8(wv, x4);                         // outputs 4q+2, 4q+3
                    acc[q] = vaddq_s32(acc[q], vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
                }
            }
            i8_finish(acc, x_scale[b], x_zero[b], m, p, y[b]);
        }
    }
}

void i8_columns(const I8Columns& m, const std::int32_t* active, int n_active, float* y) {
    for (int p = 0; p < m.panels; ++p) {
        int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        const std::int8_t* w = m.w + static_cast<long>(p) * m.in * P;
        for (int a = 0; a < n_active; ++a) {
            const int8x16_t col = vld1q_s8(w + static_cast<long>(active[a]) * P);
            const int16x8_t lo = vmovl_s8(vget_low_s8(col)), hi = vmovl_high_s8(col);
            acc[0] = vaddw_s16(acc[0], vget_low_s16(lo));
            acc[1] = vaddw_high_s16(acc[1], lo);
            acc[2] = vaddw_s16(acc[2], vget_low_s16(hi));
            acc[3] = vaddw_high_s16(acc[3], hi);
        }
        float32x4_t out[4];
        LMU_UNROLL
        for (int q = 0; q < 4; ++q) {
            const float32x4_t s = vmulq_f32(vdupq_n_f32(1.0f), vld1q_f32(m.scale + p * P + 4 * q));
            out[q] = vaddq_f32(vmulq_f32(vcvtq_f32_s32(acc[q]), s), vld1q_f32(m.bias + p * P + 4 * q));
        }
        store16(y + p * P, out, lanes_of(p, m.out));
    }
}

void f64_dense(const F64Matrix& m, const double* const* x, int batch, double* const* y) {
    constexpr int Q = kPanel64;
    for (int b = 0; b < batch; ++b) {
        for (int p = 0; p < m.panels; ++p) {
            float64x2_t acc[4] = {vdupq_n_f64(0), vdupq_n_f64(0), vdupq_n_f64(0), vdupq_n_f64(0)};
            const double* w = m.w + static_cast<long>(p) * m.in * Q;
            for (int i = 0; i < m.in; ++i) {
                const float64x2_t xi = vdupq_n_f64(x[b][i]);
                LMU_UNROLL
                for (int q = 0; q < 4; ++q) acc[q] = vfmaq_f64(acc[q], vld1q_f64(w + i * Q + 2 * q), xi);
            }
            double tmp[Q];
            LMU_UNROLL
            for (int q = 0; q < 4; ++q) vst1q_f64(tmp + 2 * q, acc[q]);
            const int left = m.out - p * Q;
            const int n = left < Q ? left : Q;
            for (int l = 0; l < n; ++l) y[b][p * Q + l] = tmp[l];
        }
    }
}

void minmax(const float* x, int n, float* lo, float* hi) {
    float32x4_t a = vdupq_n_f32(x[0]), b = a;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        a = vminq_f32(a, v);
        b = vmaxq_f32(b, v);
    }
    float low = vminvq_f32(a), high = vmaxvq_f32(b);
    for (; i < n; ++i) {
        low = x[i] < low ? x[i] : low;
        high = x[i] > high ? x[i] : high;
    }
    *lo = low;
    *hi = high;
}

void quantize(const float* x, int n, float inv, std::int32_t zero, std::int8_t* q) {
    const int32x4_t z = vdupq_n_s32(zero);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32x4_t v = vsubq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i), inv)), z);  // nearest, ties even
        q[i] = static_cast<std::int8_t>(vgetq_lane_s32(v, 0));
        q[i + 1] = static_cast<std::int8_t>(vgetq_lane_s32(v, 1));
        q[i + 2] = static_cast<std::int8_t>(vgetq_lane_s32(v, 2));
        q[i + 3] = static_cast<std::int8_t>(vgetq_lane_s32(v, 3));
    }
    constexpr float kRound = 12582912.0f;
    for (; i < n; ++i) {
        const float scaled = x[i] * inv;
        const float shifted = scaled + kRound;
        q[i] = static_cast<std::int8_t>(static_cast<int>(shifted - kRound) - zero);
    }
}

double fma_loop(long iterations, float* sink) {
    constexpr int K = 16;
    float32x4_t acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = vdupq_n_f32(float(k));
    const float32x4_t a = vdupq_n_f32(0.999f), b = vdupq_n_f32(0.001f);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) acc[k] = vfmaq_f32(b, acc[k], a);
    }
    float32x4_t total = acc[0];
    for (int k = 1; k < K; ++k) total = vaddq_f32(total, acc[k]);
    *sink = vaddvq_f32(total);
    return double(iterations) * K * 4;
}

double dot_i8_loop(long iterations, std::int32_t* sink) {
    constexpr int K = 8;
    int32x4_t acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = vdupq_n_s32(k);
    const int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-2);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) {
            acc[k] = vaddq_s32(acc[k], vpaddq_s32(vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b))),
                                                  vpaddlq_s16(vmull_high_s8(a, b))));
        }
    }
    int32x4_t total = acc[0];
    for (int k = 1; k < K; ++k) total = vaddq_s32(total, acc[k]);
    *sink = vaddvq_s32(total);
    return double(iterations) * K * 16;
}

float read_sum(const float* data, long n) {
    float32x4_t acc[8];
    for (int s = 0; s < 8; ++s) acc[s] = vdupq_n_f32(0.0f);
    for (long i = 0; i < n; i += 32) {
        LMU_UNROLL
        for (int s = 0; s < 8; ++s) acc[s] = vaddq_f32(acc[s], vld1q_f32(data + i + 4 * s));
    }
    float32x4_t total = acc[0];
    for (int s = 1; s < 8; ++s) total = vaddq_f32(total, acc[s]);
    return vaddvq_f32(total);
}

inline float32x4_t gelu4(float32x4_t v) {
    float32x4_t a = vmulq_f32(v, vdupq_n_f32(kInvSqrt2));
    a = vminq_f32(vmaxq_f32(a, vdupq_n_f32(-4.0f)), vdupq_n_f32(4.0f));
    const float32x4_t z = vmulq_f32(a, a);
    float32x4_t p = vdupq_n_f32(kErfP[0]), q = vdupq_n_f32(kErfQ[0]);
    LMU_UNROLL
    for (int t = 1; t < kErfTerms; ++t) {  // separate multiply and add: the scalar path's roundings
        p = vaddq_f32(vmulq_f32(p, z), vdupq_n_f32(kErfP[t]));
        q = vaddq_f32(vmulq_f32(q, z), vdupq_n_f32(kErfQ[t]));
    }
    float32x4_t erf = vdivq_f32(vmulq_f32(a, p), q);
    erf = vminq_f32(vmaxq_f32(erf, vdupq_n_f32(-1.0f)), vdupq_n_f32(1.0f));
    return vmulq_f32(vmulq_f32(vdupq_n_f32(0.5f), v), vaddq_f32(vdupq_n_f32(1.0f), erf));
}

void gelu(float* x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, gelu4(vld1q_f32(x + i)));
    if (i < n) {  // the tail through a padded copy
        float tail[4] = {};
        __builtin_memcpy(tail, x + i, sizeof(float) * static_cast<unsigned>(n - i));
        vst1q_f32(tail, gelu4(vld1q_f32(tail)));
        __builtin_memcpy(x + i, tail, sizeof(float) * static_cast<unsigned>(n - i));
    }
}

const Table kTable = {"neon", f32_dense, f16_dense, f32_columns, i8_dense, i8_columns, f64_dense, minmax,
                      quantize, gelu, fma_loop, dot_i8_loop, read_sum, nullptr};

}  // namespace

const Table* neon_table() { return &kTable; }

}  // namespace kernels
}  // namespace lmustream

#else  // not aarch64

namespace lmustream {
namespace kernels {
const Table* neon_table() { return nullptr; }
}  // namespace kernels
}  // namespace lmustream

#endif

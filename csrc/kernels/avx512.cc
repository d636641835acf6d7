// AVX-512 (F, BW, VL, VNNI) implementation of the primitives (see kernels.h for the contracts).
// Only compiled for x86-64; the target attributes enable the instructions for this file's
// functions alone, and dispatch.cc calls them only on CPUs that report these features.
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma")
// GCC's own intrinsic headers trip these (an intentionally undefined register in them).
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

constexpr int P = kPanel;

inline __mmask16 tail_mask(int panel, int out) {
    const int left = out - panel * P;
    return left >= P ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
}

inline __m512 load16(const float* w) { return _mm512_loadu_ps(w); }
inline __m512 load16(const std::uint16_t* w) {  // float16 -> float32, exact
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
}

// G panels (16 G outputs) for NB streams at once: NB * G accumulators stay in registers and
// each weight vector loaded serves all NB streams.
template <int NB, int G, typename Matrix>
inline void f32_block(const Matrix& m, int p0, const float* const* x, float* const* y) {
    __m512 acc[NB][G];
    decltype(m.w) w[G];  // const float* or const std::uint16_t* (float16 bits)
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in, p0 + g, 0) * P;
        stride[g] = panel_run(m.panels, p0 + g) * P;
        const __m512 bias = _mm512_loadu_ps(m.bias + (p0 + g) * P);
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) acc[b][g] = bias;
    }
    for (int i = 0; i < m.in; ++i) {
        __m512 xi[NB];
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) xi[b] = _mm512_set1_ps(x[b][i]);
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            // No software prefetch: a run of panels is one stream the hardware prefetchers follow.
            const __m512 wv = load16(w[g] + i * stride[g]);
            LMU_UNROLL
            for (int b = 0; b < NB; ++b) acc[b][g] = _mm512_fmadd_ps(wv, xi[b], acc[b][g]);
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        const __mmask16 mask = tail_mask(p0 + g, m.out);
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) _mm512_mask_storeu_ps(y[b] + (p0 + g) * P, mask, acc[b][g]);
    }
}

// The panels left after the blocks of G (left < G) as one block of independent accumulator
// chains: one panel at a time, each output's chain would wait on the FMA latency (a 3-panel
// head took three times as long).
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
    for (; b + 4 <= batch; b += 4) f32_panels<4, 4>(m, x + b, y + b);
    switch (batch - b) {
        case 3: f32_panels<3, 4>(m, x + b, y + b); break;
        case 2: f32_panels<2, 6>(m, x + b, y + b); break;
        case 1: f32_panels<1, 8>(m, x + b, y + b); break;
        default: break;
    }
}

void f32_dense(const F32Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }
void f16_dense(const F16Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }

template <int G>
inline void f32_columns_block(const F32Matrix& m, int p0, const std::int32_t* active, int n_active, float* y) {
    __m512 acc[G];
    const float* w[G];
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in, p0 + g, 0) * P;
        stride[g] = panel_run(m.panels, p0 + g) * P;
        acc[g] = _mm512_loadu_ps(m.bias + (p0 + g) * P);
    }
    for (int a = 0; a < n_active; ++a) {
        const long column = active[a];
        LMU_UNROLL
        for (int g = 0; g < G; ++g) acc[g] = _mm512_add_ps(acc[g], _mm512_loadu_ps(w[g] + column * stride[g]));
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) _mm512_mask_storeu_ps(y + (p0 + g) * P, tail_mask(p0 + g, m.out), acc[g]);
}

void f32_columns(const F32Matrix& m, const std::int32_t* active, int n_active, float* y) {
    int p = 0;
    for (; p + 8 <= m.panels; p += 8) f32_columns_block<8>(m, p, active, n_active, y);
    for (; p < m.panels; ++p) f32_columns_block<1>(m, p, active, n_active, y);
}

inline void i8_epilogue(const I8Matrix& m, int p, __m512i acc, float x_scale, std::int32_t x_zero, float* y) {
    // Inputs went in as x + 128 (unsigned) and stand for x + x_zero: acc - (128 - x_zero) * rowsum,
    // exact in int32.
    const __mmask16 mask = tail_mask(p, m.out);
    const __m512i rowsum = _mm512_maskz_loadu_epi32(mask, m.rowsum + p * P);
    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(rowsum, _mm512_set1_epi32(128 - x_zero)));
    const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_maskz_loadu_ps(mask, m.scale + p * P));
    const __m512 out = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale),
                                     _mm512_maskz_loadu_ps(mask, m.bias + p * P));
    _mm512_mask_storeu_ps(y + p * P, mask, out);
}

template <int NB, int G>
inline void i8_block(const I8Matrix& m, int p0, const std::int8_t* const* xq, const float* x_scale,
                     const std::int32_t* x_zero, float* const* y) {
    const int groups = m.in4 / 4;
    __m512i acc[NB][G];
    const std::int8_t* w[G];
    long stride[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + panel_vector(m.panels, m.in4 / 4, p0 + g, 0) * P * 4;
        stride[g] = panel_run(m.panels, p0 + g) * P * 4;
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) acc[b][g] = _mm512_setzero_si512();
    }
    const __m512i flip = _mm512_set1_epi32(static_cast<int>(0x80808080u));
    for (int k = 0; k < groups; ++k) {
        __m512i x4[NB];
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) {
            std::int32_t packed;
            __builtin_memcpy(&packed, xq[b] + 4 * k, 4);
            x4[b] = _mm512_xor_si512(_mm512_set1_epi32(packed), flip);  // int8 x -> uint8 x + 128
        }
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            // No software prefetch: a run of panels is one contiguous stream, which the hardware
            // prefetchers already follow (prefetching by hand measured slower).
            const __m512i wv = _mm512_loadu_si512(w[g] + k * stride[g]);
            LMU_UNROLL
            for (int b = 0; b < NB; ++b) acc[b][g] = _mm512_dpbusd_epi32(acc[b][g], x4[b], wv);
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) i8_epilogue(m, p0 + g, acc[b][g], x_scale[b], x_zero[b], y[b]);
    }
}

// Four columns' 64-byte blocks -> the four 32-bit-word vectors of (w_a, w_b, w_c, w_d) per output
// that a VNNI product with the broadcast codes (v_a, v_b, v_c, v_d) needs (layout: I8Sparse).
inline void interleave4(const std::int8_t* a, const std::int8_t* b, const std::int8_t* c, const std::int8_t* d,
                        __m512i q[4]) {
    const __m512i A = _mm512_loadu_si512(a), B = _mm512_loadu_si512(b);
    const __m512i C = _mm512_loadu_si512(c), D = _mm512_loadu_si512(d);
    const __m512i ab_lo = _mm512_unpacklo_epi8(A, B), ab_hi = _mm512_unpackhi_epi8(A, B);
    const __m512i cd_lo = _mm512_unpacklo_epi8(C, D), cd_hi = _mm512_unpackhi_epi8(C, D);
    q[0] = _mm512_unpacklo_epi16(ab_lo, cd_lo);
    q[1] = _mm512_unpackhi_epi16(ab_lo, cd_lo);
    q[2] = _mm512_unpacklo_epi16(ab_hi, cd_hi);
    q[3] = _mm512_unpackhi_epi16(ab_hi, cd_hi);
}

// acc += (or -=, with Negate) the listed columns times their codes, for NB blocks from block b0.
template <int NB, bool Negate>
inline void sparse_sum(const I8Sparse& m, int b0, const std::int32_t* index, const std::uint8_t* value, int n,
                       __m512i (&acc)[4 * NB]) {
    const long column = long(m.blocks) * 64;
    const std::int8_t* w = m.w + long(b0) * 64;
    for (int a = 0; a < n; a += 4) {
        std::uint32_t packed;
        __builtin_memcpy(&packed, value + a, 4);
        const __m512i x4 = _mm512_set1_epi32(static_cast<int>(packed));
        const std::int8_t* c0 = w + index[a] * column;
        const std::int8_t* c1 = w + index[a + 1] * column;
        const std::int8_t* c2 = w + index[a + 2] * column;
        const std::int8_t* c3 = w + index[a + 3] * column;
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) {
            __m512i q[4];
            interleave4(c0 + 64 * b, c1 + 64 * b, c2 + 64 * b, c3 + 64 * b, q);
            LMU_UNROLL
            for (int i = 0; i < 4; ++i) {
                // |w| <= 127, so -w is exact in int8
                const __m512i wv = Negate ? _mm512_sub_epi8(_mm512_setzero_si512(), q[i]) : q[i];
                acc[4 * b + i] = _mm512_dpbusd_epi32(acc[4 * b + i], x4, wv);
            }
        }
    }
}

template <int NB>
inline void sparse_blocks(const I8Sparse& m, int b0, const std::int32_t* pos_index, const std::uint8_t* pos_value,
                          int n_pos, const std::int32_t* neg_index, const std::uint8_t* neg_value, int n_neg,
                          float x_scale, float* y) {
    __m512i acc[4 * NB];
    LMU_UNROLL
    for (int i = 0; i < 4 * NB; ++i) acc[i] = _mm512_setzero_si512();
    sparse_sum<NB, false>(m, b0, pos_index, pos_value, n_pos, acc);
    sparse_sum<NB, true>(m, b0, neg_index, neg_value, n_neg, acc);
    LMU_UNROLL
    for (int i = 0; i < 4 * NB; ++i) {  // the epilogue of i8_dense (x_zero is already in the codes)
        const int o = b0 * 64 + 16 * i;
        const __mmask16 mask = o >= m.out ? __mmask16(0) : tail_mask(o / P, m.out);
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_loadu_ps(m.scale + o));
        const __m512 out = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[i]), scale), _mm512_loadu_ps(m.bias + o));
        _mm512_mask_storeu_ps(y + o, mask, out);
    }
}

// The inputs with a nonzero code, split by sign: (index, |v|) lists, each padded with zero
// values to a multiple of 4. False when more than max_active are nonzero or some |v| > 255.
inline bool nonzero_codes(const std::int8_t* xq, int n, std::int32_t x_zero, int max_active, std::int32_t* pos_index,
                          std::uint8_t* pos_value, int* n_pos, std::int32_t* neg_index, std::uint8_t* neg_value,
                          int* n_neg) {
    const __m512i zero = _mm512_set1_epi32(x_zero), limit = _mm512_set1_epi32(255);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int np = 0, nn = 0;
    for (int i = 0; i < n; i += 16) {
        const __mmask16 in = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
        const __m512i v = _mm512_add_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(in, xq + i)), zero);
        const __m512i magnitude = _mm512_abs_epi32(v);
        const __mmask16 pos = _mm512_mask_cmpgt_epi32_mask(in, v, _mm512_setzero_si512());
        const __mmask16 neg = _mm512_mask_cmplt_epi32_mask(in, v, _mm512_setzero_si512());
        if (_mm512_mask_cmpgt_epi32_mask(in, magnitude, limit)) return false;
        const int cp = __builtin_popcount(pos), cn = __builtin_popcount(neg);
        if (np + nn + cp + cn > max_active) return false;
        // Compress in registers, then plain stores (the lists have 16 entries of slack): Zen 4
        // runs a compressing store to memory as slow microcode.
        _mm512_storeu_si512(pos_index + np, _mm512_maskz_compress_epi32(pos, at));
        _mm512_storeu_si512(neg_index + nn, _mm512_maskz_compress_epi32(neg, at));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(pos_value + np),
                         _mm512_cvtepi32_epi8(_mm512_maskz_compress_epi32(pos, magnitude)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(neg_value + nn),
                         _mm512_cvtepi32_epi8(_mm512_maskz_compress_epi32(neg, magnitude)));
        np += cp;
        nn += cn;
        at = _mm512_add_epi32(at, step);
    }
    for (; np % 4; ++np) pos_index[np] = 0, pos_value[np] = 0;  // value 0: adds nothing
    for (; nn % 4; ++nn) neg_index[nn] = 0, neg_value[nn] = 0;
    *n_pos = np;
    *n_neg = nn;
    return true;
}

bool i8_sparse(const I8Sparse& m, const std::int8_t* xq, std::int32_t x_zero, float x_scale, int max_active,
               std::int32_t* index, std::uint8_t* value, float* y) {
    std::int32_t* pos_index = index;
    std::int32_t* neg_index = index + m.in + 16;
    std::uint8_t* pos_value = value;
    std::uint8_t* neg_value = value + m.in + 16;
    int n_pos, n_neg;
    if (!nonzero_codes(xq, m.in, x_zero, max_active, pos_index, pos_value, &n_pos, neg_index, neg_value, &n_neg)) {
        return false;
    }
    // Up to four blocks (256 outputs, 16 accumulators) per pass over the lists.
    int b = 0;
    for (; b + 4 <= m.blocks; b += 4) {
        sparse_blocks<4>(m, b, pos_index, pos_value, n_pos, neg_index, neg_value, n_neg, x_scale, y);
    }
    switch (m.blocks - b) {
        case 3: sparse_blocks<3>(m, b, pos_index, pos_value, n_pos, neg_index, neg_value, n_neg, x_scale, y); break;
        case 2: sparse_blocks<2>(m, b, pos_index, pos_value, n_pos, neg_index, neg_value, n_neg, x_scale, y); break;
        case 1: sparse_blocks<1>(m, b, pos_index, pos_value, n_pos, neg_index, neg_value, n_neg, x_scale, y); break;
        default: break;
    }
    return true;
}

template <int NB, int R>
inline void i8_rest(const I8Matrix& m, int p, int left, const std::int8_t* const* xq, const float* x_scale,
                    const std::int32_t* x_zero, float* const* y) {
    if constexpr (R > 0) {
        if (left == R) i8_block<NB, R>(m, p, xq, x_scale, x_zero, y);
        else i8_rest<NB, R - 1>(m, p, left, xq, x_scale, x_zero, y);
    }
}

template <int NB, int G>
void i8_panels(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale, const std::int32_t* x_zero,
               float* const* y) {
    int p = 0;
    for (; p + G <= m.panels; p += G) i8_block<NB, G>(m, p, xq, x_scale, x_zero, y);
    i8_rest<NB, G - 1>(m, p, m.panels - p, xq, x_scale, x_zero, y);  // as f32_rest
}

void i8_dense(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale, const std::int32_t* x_zero,
              int batch, float* const* y) {
    int b = 0;
    for (; b + 4 <= batch; b += 4) i8_panels<4, 4>(m, xq + b, x_scale + b, x_zero + b, y + b);
    switch (batch - b) {
        case 3: i8_panels<3, 4>(m, xq + b, x_scale + b, x_zero + b, y + b); break;
        case 2: i8_panels<2, 6>(m, xq + b, x_scale + b, x_zero + b, y + b); break;
        case 1: i8_panels<1, 8>(m, xq + b, x_scale + b, x_zero + b, y + b); break;
        default: break;
    }
}

template <int G>
inline void i8_columns_block(const I8Columns& m, int p0, const std::int32_t* active, int n_active, float* y) {
    __m512i acc[G];
    const std::int8_t* w[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + static_cast<long>(p0 + g) * m.in * P;
        acc[g] = _mm512_setzero_si512();
    }
    for (int a = 0; a < n_active; ++a) {
        const long offset = static_cast<long>(active[a]) * P;
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            const __m128i col = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[g] + offset));
            acc[g] = _mm512_add_epi32(acc[g], _mm512_cvtepi8_epi32(col));
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        const int p = p0 + g;
        const __mmask16 mask = tail_mask(p, m.out);
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(1.0f), _mm512_maskz_loadu_ps(mask, m.scale + p * P));
        const __m512 out = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[g]), scale),
                                         _mm512_maskz_loadu_ps(mask, m.bias + p * P));
        _mm512_mask_storeu_ps(y + p * P, mask, out);
    }
}

void i8_columns(const I8Columns& m, const std::int32_t* active, int n_active, float* y) {
    int p = 0;
    for (; p + 8 <= m.panels; p += 8) i8_columns_block<8>(m, p, active, n_active, y);
    for (; p < m.panels; ++p) i8_columns_block<1>(m, p, active, n_active, y);
}

template <int NB, int G>
inline void f64_block(const F64Matrix& m, int p0, const double* const* x, double* const* y) {
    constexpr int Q = kPanel64;
    __m512d acc[NB][G];
    const double* w[G];
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        w[g] = m.w + static_cast<long>(p0 + g) * m.in * Q;
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) acc[b][g] = _mm512_setzero_pd();
    }
    for (int i = 0; i < m.in; ++i) {
        __m512d xi[NB];
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) xi[b] = _mm512_set1_pd(x[b][i]);
        LMU_UNROLL
        for (int g = 0; g < G; ++g) {
            const __m512d wv = _mm512_loadu_pd(w[g] + static_cast<long>(i) * Q);
            LMU_UNROLL
            for (int b = 0; b < NB; ++b) acc[b][g] = _mm512_fmadd_pd(wv, xi[b], acc[b][g]);
        }
    }
    LMU_UNROLL
    for (int g = 0; g < G; ++g) {
        const int left = m.out - (p0 + g) * Q;
        const __mmask8 mask = left >= Q ? __mmask8(0xFF) : __mmask8((1u << left) - 1u);
        LMU_UNROLL
        for (int b = 0; b < NB; ++b) _mm512_mask_storeu_pd(y[b] + (p0 + g) * Q, mask, acc[b][g]);
    }
}

template <int NB, int G>
void f64_panels(const F64Matrix& m, const double* const* x, double* const* y) {
    int p = 0;
    for (; p + G <= m.panels; p += G) f64_block<NB, G>(m, p, x, y);
    for (; p < m.panels; ++p) f64_block<NB, 1>(m, p, x, y);
}

void f64_dense(const F64Matrix& m, const double* const* x, int batch, double* const* y) {
    int b = 0;
    for (; b + 4 <= batch; b += 4) f64_panels<4, 4>(m, x + b, y + b);
    switch (batch - b) {
        case 3: f64_panels<3, 4>(m, x + b, y + b); break;
        case 2: f64_panels<2, 6>(m, x + b, y + b); break;
        case 1: f64_panels<1, 8>(m, x + b, y + b); break;
        default: break;
    }
}

void minmax(const float* x, int n, float* lo, float* hi) {
    __m512 a = _mm512_set1_ps(x[0]), b = a;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        a = _mm512_min_ps(a, v);
        b = _mm512_max_ps(b, v);
    }
    if (i < n) {  // masked-off lanes keep x[0]
        const __mmask16 mask = __mmask16((1u << (n - i)) - 1u);
        a = _mm512_mask_min_ps(a, mask, a, _mm512_maskz_loadu_ps(mask, x + i));
        b = _mm512_mask_max_ps(b, mask, b, _mm512_maskz_loadu_ps(mask, x + i));
    }
    *lo = _mm512_reduce_min_ps(a);
    *hi = _mm512_reduce_max_ps(b);
}

void quantize(const float* x, int n, float inv, std::int32_t zero, std::int8_t* q) {
    const __m512 scale = _mm512_set1_ps(inv);
    const __m512i z = _mm512_set1_epi32(zero);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i v = _mm512_sub_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), scale)), z);  // nearest, ties even
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtsepi32_epi8(v));
    }
    if (i < n) {
        const __mmask16 mask = __mmask16((1u << (n - i)) - 1u);
        const __m512i v = _mm512_sub_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), scale)), z);
        _mm_mask_storeu_epi8(q + i, mask, _mm512_cvtsepi32_epi8(v));
    }
}

inline __m512 gelu16(__m512 v) {
    __m512 a = _mm512_mul_ps(v, _mm512_set1_ps(kInvSqrt2));
    a = _mm512_min_ps(_mm512_max_ps(a, _mm512_set1_ps(-4.0f)), _mm512_set1_ps(4.0f));
    const __m512 z = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(kErfP[0]), q = _mm512_set1_ps(kErfQ[0]);
    LMU_UNROLL
    for (int t = 1; t < kErfTerms; ++t) {  // separate multiply and add: the scalar path's roundings
        p = _mm512_add_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(kErfP[t]));
        q = _mm512_add_ps(_mm512_mul_ps(q, z), _mm512_set1_ps(kErfQ[t]));
    }
    __m512 erf = _mm512_div_ps(_mm512_mul_ps(a, p), q);
    erf = _mm512_min_ps(_mm512_max_ps(erf, _mm512_set1_ps(-1.0f)), _mm512_set1_ps(1.0f));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.0f), erf));
}

void gelu(float* x, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 mask = __mmask16((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, mask, gelu16(_mm512_maskz_loadu_ps(mask, x + i)));
    }
}

double fma_loop(long iterations, float* sink) {
    constexpr int K = 16;  // 4-cycle latency x 2 ports x 2 for headroom
    __m512 acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = _mm512_set1_ps(float(k));
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    }
    __m512 total = acc[0];
    for (int k = 1; k < K; ++k) total = _mm512_add_ps(total, acc[k]);
    *sink = _mm512_reduce_add_ps(total);
    return double(iterations) * K * 16;
}

double dot_i8_loop(long iterations, std::int32_t* sink) {
    constexpr int K = 16;
    __m512i acc[K];
    LMU_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = _mm512_set1_epi32(k);
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
    for (long r = 0; r < iterations; ++r) {
        LMU_UNROLL
        for (int k = 0; k < K; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
    }
    __m512i total = acc[0];
    for (int k = 1; k < K; ++k) total = _mm512_add_epi32(total, acc[k]);
    *sink = _mm512_reduce_add_epi32(total);
    return double(iterations) * K * 64;
}

float read_sum(const float* data, long n) {
    __m512 acc[8];
    LMU_UNROLL
    for (int s = 0; s < 8; ++s) acc[s] = _mm512_setzero_ps();
    for (long i = 0; i < n; i += 128) {
        LMU_UNROLL
        for (int s = 0; s < 8; ++s) acc[s] = _mm512_add_ps(acc[s], _mm512_loadu_ps(data + i + 16 * s));
    }
    __m512 total = acc[0];
    for (int s = 1; s < 8; ++s) total = _mm512_add_ps(total, acc[s]);
    return _mm512_reduce_add_ps(total);
}

const Table kTable = {"avx512", f32_dense, f16_dense, f32_columns, i8_dense, i8_columns, f64_dense, minmax,
                      quantize, gelu, fma_loop, dot_i8_loop, read_sum, i8_sparse};

}  // namespace

const Table* avx512_table() { return &kTable; }

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
const Table* avx512_table() { return nullptr; }
}  // namespace kernels
}  // namespace lmustream

#endif

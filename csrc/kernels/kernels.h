// The compute primitives of the kernel, one implementation per instruction set:
//   scalar.cc  portable C++ (the reference, always built)
//   avx2.cc    x86-64 AVX2 + FMA            (compiled with function-level target attributes,
//   avx512.cc  x86-64 AVX-512 F/BW/VL/VNNI   so the rest of the build stays baseline)
//   neon.cc    aarch64 Advanced SIMD
// dispatch.cc picks one table at load time from what the CPU supports.
//
// Weights are packed in panels of output channels so that every primitive streams its
// weights contiguously, never needs a horizontal sum, and reads each weight once per call
// however many streams the batch holds. Summation over inputs is sequential per output
// (one accumulator chain per output), so a spiking layer's dense product with 0/1 inputs
// and its add-only sum of active columns give the same bits.
//
// These files hold plain data and functions only (no templates from the standard library),
// so that nothing compiled for a wide instruction set can be shared with baseline code.
#pragma once

#include <cstdint>

namespace lmustream {
namespace kernels {

constexpr int kPanel = 16;   // float32 / int8 output channels per panel
constexpr int kPanel64 = 8;  // float64 output channels per panel

// Dense weights are packed in panels of 16 output channels, and the panels interleaved in runs
// of kPanelRun: w[runs][input steps][run size][panel vector]. A product over one run's panels
// then reads a single contiguous stream, which the hardware prefetchers follow at full read
// bandwidth (eight separate panel streams got about 80% of it). The last run may be shorter.
constexpr int kPanelRun = 8;

inline int panel_run(int panels, int p) {
    const int first = p / kPanelRun * kPanelRun;
    return panels - first < kPanelRun ? panels - first : kPanelRun;
}

// Index (in panel vectors) of panel p's vector for input step i; step i + 1 lies
// panel_run(panels, p) vectors further on.
inline long panel_vector(int panels, int steps, int p, int i) {
    const int first = p / kPanelRun * kPanelRun;
    return static_cast<long>(first) * steps + static_cast<long>(i) * panel_run(panels, p) + (p - first);
}

// float32 weights: panel vectors of 16 floats, one input per step (see above); bias[panels * 16]
// (zero past `out`).
struct F32Matrix {
    const float* w;
    const float* bias;
    int in, out, panels;
};

// int8 weights with per-output-channel scales, for dense products: panel vectors of [16][4]
// (16 outputs by a group of 4 inputs: the VNNI layout), one group per step (see above), in4 = in
// rounded up to 4 (padding is zero); rowsum[o] = sum_i w[o][i] (for the inputs' zero points).
struct I8Matrix {
    const std::int8_t* w;
    const float* scale;
    const float* bias;
    const std::int32_t* rowsum;
    int in, in4, out, panels;
};

// int8 weights by column, for the add-only product with spikes: w[panels][in][16].
struct I8Columns {
    const std::int8_t* w;
    const float* scale;
    const float* bias;
    int in, out, panels;
};

// int8 weights by input, for products with sparse real inputs (most codes mean exactly zero after
// a ReLU or a GELU): w[in][blocks][64], out rounded up to blocks * 64 (padding zero), scale and
// bias [blocks * 64]. Within a 64-output block, byte 16 L + 4 i + e holds output 16 i + 4 L + e
// (L, i, e < 4): the order in which interleaving the bytes of four columns (two unpack rounds per
// 128-bit lane) leaves each output's four weights in one 32-bit word, ready for a VNNI product.
struct I8Sparse {
    const std::int8_t* w;
    const float* scale;
    const float* bias;
    int in, out, blocks;
};

// Position of output o's weight in a column of I8Sparse (see above).
inline int sparse_slot(int o) {
    const int within = o % 64, i = within / 16, lane = within % 16 / 4, e = within % 4;
    return o / 64 * 64 + 16 * lane + 4 * i + e;
}

// float32 products with weights stored as IEEE 754 half floats (the int8 mode's Legendre matrix):
// the same layout as F32Matrix, each weight widened exactly to float32 as it is read, so the
// product is f32_dense's on those values with half the bytes to read.
struct F16Matrix {
    const std::uint16_t* w;
    const float* bias;
    int in, out, panels;
};

// Exact float16 -> float32, and float32 -> the nearest float16 (ties to even; overflow to
// infinity; NaN stays NaN). Portable bit arithmetic, defined in scalar.cc.
float half_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);

// float64 matrix without bias: w[panels][in][8].
struct F64Matrix {
    const double* w;
    int in, out, panels;
};

// erf(a) ~ a P(a^2) / Q(a^2) for a = clamp(x, -4, 4) (erf(4) = 1 - 1.5e-8), the result clamped
// to [-1, 1]: a rational least-squares fit made for this kernel, within 3.4e-7 of erf in float32
// arithmetic and free of library calls. P and Q by Horner's rule from the highest power.
constexpr int kErfTerms = 6;
constexpr float kErfP[kErfTerms] = {1.985685230465606e-06f, 2.858951047528535e-04f, 3.921344876289368e-03f,
                                    5.3214624524116516e-02f, 1.9436807930469513e-01f, 1.1283791065216064f};
constexpr float kErfQ[kErfTerms] = {3.7480513128684834e-05f, 1.1958053801208735e-03f, 1.5280695632100105e-02f,
                                    1.1569470912218094e-01f, 5.055861473083496e-01f, 1.0f};
constexpr float kInvSqrt2 = 0.70710678118654752440f;

struct Table {
    const char* name;
    // y[b] = bias + W x[b] for b < batch (x[b]: in floats, y[b]: out floats).
    void (*f32_dense)(const F32Matrix& m, const float* const* x, int batch, float* const* y);
    // y[b] = bias + W x[b] with float16 weights, accumulated in float32 as f32_dense.
    void (*f16_dense)(const F16Matrix& m, const float* const* x, int batch, float* const* y);
    // y = bias + sum of the columns W[:, i] for i in active[0 .. n_active): W s for spikes s.
    void (*f32_columns)(const F32Matrix& m, const std::int32_t* active, int n_active, float* y);
    // y[b] = bias + scale * x_scale[b] * (W_q (xq[b] + x_zero[b])), integer accumulation (exact):
    // acc = W_q xq[b] + x_zero[b] * rowsum in int32, xq[b]: in4 int8 values with zeros past `in`.
    // The float epilogue is float(acc) * (x_scale[b] * scale[o]) + bias[o], rounded step by step,
    // so every table gives the same bits.
    void (*i8_dense)(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale,
                     const std::int32_t* x_zero, int batch, float* const* y);
    // y = bias + scale * (sum of the int8 columns in active): the spiking add-only form (x_scale = 1).
    void (*i8_columns)(const I8Columns& m, const std::int32_t* active, int n_active, float* y);
    // y[b] = W x[b] in float64.
    void (*f64_dense)(const F64Matrix& m, const double* const* x, int batch, double* const* y);
    // *lo = min x[i], *hi = max x[i] over n >= 1 floats.
    void (*minmax)(const float* x, int n, float* lo, float* hi);
    // q[i] = (x[i] * inv rounded to the nearest integer, ties to even) - zero, for callers that
    // keep |x[i] * inv| < 2^22 and every q[i] within [-127, 127].
    void (*quantize)(const float* x, int n, float inv, std::int32_t zero, std::int8_t* q);
    // x[i] = GELU(x[i]) in place, with erf from the rational fit below; every table rounds the
    // same operations in the same order (no fused multiply-adds), so all give the same bits.
    void (*gelu)(float* x, int n);

    // Micro-benchmarks of the machine (benchmarks/kernel_speed.py derives the speed floor):
    // `iterations` rounds of independent float32 FMA chains; returns the multiply-adds done.
    double (*fma_loop)(long iterations, float* sink);
    // the same with int8 dot products (VNNI where the path has it); returns the multiply-adds.
    double (*dot_i8_loop)(long iterations, std::int32_t* sink);
    // reads n floats (n a multiple of 128) front to back, one contiguous stream with 8 independent
    // sums: the best read rate one core gets (the floor must not be set by a slower access pattern).
    float (*read_sum)(const float* data, long n);
    // i8_dense for one input whose codes are mostly zero, reading only the weights of the inputs
    // with a nonzero code v = xq[i] + x_zero: y = bias + scale * x_scale * (sum over those i of
    // v * W[:, i]), the same integer sum and float epilogue as i8_dense, so the same bits. Returns
    // false, computing nothing, when more than max_active inputs are nonzero or some |v| > 255 (the
    // caller then uses i8_dense). index and value: scratch for 2 * (in + 32) entries each.
    // nullptr where a path has no such product.
    bool (*i8_sparse)(const I8Sparse& m, const std::int8_t* xq, std::int32_t x_zero, float x_scale, int max_active,
                      std::int32_t* index, std::uint8_t* value, float* y);
};

const Table& scalar_table();
const Table* avx2_table();    // nullptr where not built (non-x86)
const Table* avx512_table();  // nullptr where not built (non-x86)
const Table* neon_table();    // nullptr where not built (non-aarch64)

// What this CPU can run: e.g. "avx512 avx2 scalar" (best first).
const char* supported_levels();

// The table for `request`: "auto" (the best the CPU supports), "scalar", "avx2", "avx512" or
// "neon". Returns nullptr when the request is unknown or the CPU / build cannot run it.
const Table* select(const char* request);

}  // namespace kernels
}  // namespace lmustream

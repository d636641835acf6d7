// Portable reference implementation of the primitives (see kernels.h for the contracts).
#include "kernels.h"

#include <cstring>

namespace lmustream {
namespace kernels {
namespace {

constexpr int P = kPanel;

int lanes_of(int panel, int out) {
    const int left = out - panel * P;
    return left < P ? left : P;
}

inline float widen(float w) { return w; }
inline float widen(std::uint16_t w) { return half_to_float(w); }

template <typename Matrix>
void dense(const Matrix& m, const float* const* x, int batch, float* const* y) {
    for (int b = 0; b < batch; ++b) {
        const float* xb = x[b];
        for (int p = 0; p < m.panels; ++p) {
            float acc[P];
            for (int l = 0; l < P; ++l) acc[l] = m.bias[p * P + l];
            const auto* w = m.w + panel_vector(m.panels, m.in, p, 0) * P;  // float or float16 bits
            const long stride = panel_run(m.panels, p) * P;
            for (int i = 0; i < m.in; ++i) {
                const float xi = xb[i];
                for (int l = 0; l < P; ++l) acc[l] += widen(w[i * stride + l]) * xi;
            }
            const int n = lanes_of(p, m.out);
            for (int l = 0; l < n; ++l) y[b][p * P + l] = acc[l];
        }
    }
}

void f32_dense(const F32Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }
void f16_dense(const F16Matrix& m, const float* const* x, int batch, float* const* y) { dense(m, x, batch, y); }

void f32_columns(const F32Matrix& m, const std::int32_t* active, int n_active, float* y) {
    for (int p = 0; p < m.panels; ++p) {
        float acc[P];
        for (int l = 0; l < P; ++l) acc[l] = m.bias[p * P + l];
        const float* w = m.w + panel_vector(m.panels, m.in, p, 0) * P;
        const long stride = panel_run(m.panels, p) * P;
        for (int a = 0; a < n_active; ++a) {
            const float* col = w + active[a] * stride;
            for (int l = 0; l < P; ++l) acc[l] += col[l];
        }
        const int n = lanes_of(p, m.out);
        for (int l = 0; l < n; ++l) y[p * P + l] = acc[l];
    }
}

void i8_dense(const I8Matrix& m, const std::int8_t* const* xq, const float* x_scale, const std::int32_t* x_zero,
              int batch, float* const* y) {
    const int groups = m.in4 / 4;
    for (int b = 0; b < batch; ++b) {
        for (int p = 0; p < m.panels; ++p) {
            std::int32_t acc[P] = {};
            const std::int8_t* w = m.w + panel_vector(m.panels, m.in4 / 4, p, 0) * P * 4;
            const long stride = panel_run(m.panels, p) * P * 4;
            for (int g = 0; g < groups; ++g) {
                const std::int8_t* x4 = xq[b] + g * 4;
                const std::int8_t* wg = w + g * stride;
                for (int l = 0; l < P; ++l) {
                    acc[l] += wg[l * 4 + 0] * x4[0] + wg[l * 4 + 1] * x4[1] + wg[l * 4 + 2] * x4[2] +
                              wg[l * 4 + 3] * x4[3];
                }
            }
            const int n = lanes_of(p, m.out);
            for (int l = 0; l < n; ++l) {
                const int o = p * P + l;
                const float s = x_scale[b] * m.scale[o];
                y[b][o] = static_cast<float>(acc[l] + x_zero[b] * m.rowsum[o]) * s + m.bias[o];
            }
        }
    }
}

void i8_columns(const I8Columns& m, const std::int32_t* active, int n_active, float* y) {
    for (int p = 0; p < m.panels; ++p) {
        std::int32_t acc[P] = {};
        const std::int8_t* w = m.w + static_cast<long>(p) * m.in * P;
        for (int a = 0; a < n_active; ++a) {
            const std::int8_t* col = w + static_cast<long>(active[a]) * P;
            for (int l = 0; l < P; ++l) acc[l] += col[l];
        }
        const int n = lanes_of(p, m.out);
        for (int l = 0; l < n; ++l) {
            const int o = p * P + l;
            const float s = 1.0f * m.scale[o];
            y[o] = static_cast<float>(acc[l]) * s + m.bias[o];
        }
    }
}

void f64_dense(const F64Matrix& m, const double* const* x, int batch, double* const* y) {
    constexpr int Q = kPanel64;
    for (int b = 0; b < batch; ++b) {
        for (int p = 0; p < m.panels; ++p) {
            double acc[Q] = {};
            const double* w = m.w + static_cast<long>(p) * m.in * Q;
            for (int i = 0; i < m.in; ++i) {
                const double xi = x[b][i];
                for (int l = 0; l < Q; ++l) acc[l] += w[i * Q + l] * xi;
            }
            const int left = m.out - p * Q;
            const int n = left < Q ? left : Q;
            for (int l = 0; l < n; ++l) y[b][p * Q + l] = acc[l];
        }
    }
}

void minmax(const float* x, int n, float* lo, float* hi) {
    float a = x[0], b = x[0];
    for (int i = 1; i < n; ++i) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

void quantize(const float* x, int n, float inv, std::int32_t zero, std::int8_t* q) {
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer (ties to even) in the
    // default rounding mode, exactly as the SIMD conversions do.
    constexpr float kRound = 12582912.0f;
    for (int i = 0; i < n; ++i) {
        const float scaled = x[i] * inv;
        const float shifted = scaled + kRound;
        q[i] = static_cast<std::int8_t>(static_cast<int>(shifted - kRound) - zero);
    }
}

double fma_loop(long iterations, float* sink) {
    float acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = float(l);
    for (long r = 0; r < iterations; ++r) {
        for (int l = 0; l < 16; ++l) acc[l] = acc[l] * 0.999f + 0.001f;
    }
    float total = 0.0f;
    for (float v : acc) total += v;
    *sink = total;
    return double(iterations) * 16;
}

double dot_i8_loop(long iterations, std::int32_t* sink) {
    std::int32_t acc[16] = {};
    std::int8_t a[64], b[64];
    for (int l = 0; l < 64; ++l) {
        a[l] = std::int8_t(l - 32);
        b[l] = std::int8_t(3 - l % 7);
    }
    for (long r = 0; r < iterations; ++r) {
        for (int l = 0; l < 16; ++l) {
            acc[l] += a[4 * l] * b[4 * l] + a[4 * l + 1] * b[4 * l + 1] + a[4 * l + 2] * b[4 * l + 2] +
                      a[4 * l + 3] * b[4 * l + 3];
        }
        a[r % 64] ^= 1;
    }
    std::int32_t total = 0;
    for (std::int32_t v : acc) total += v;
    *sink = total;
    return double(iterations) * 64;
}

// The reference the vector paths repeat lane by lane: clamp, Horner, divide, clamp, GELU.
void gelu(float* x, int n) {
    for (int i = 0; i < n; ++i) {
        const float v = x[i];
        float a = v * kInvSqrt2;
        a = a < -4.0f ? -4.0f : a;
        a = a > 4.0f ? 4.0f : a;
        const float z = a * a;
        float p = kErfP[0], q = kErfQ[0];
        for (int t = 1; t < kErfTerms; ++t) {
            p = p * z + kErfP[t];
            q = q * z + kErfQ[t];
        }
        float erf = a * p / q;
        erf = erf < -1.0f ? -1.0f : erf;
        erf = erf > 1.0f ? 1.0f : erf;
        x[i] = 0.5f * v * (1.0f + erf);
    }
}

float read_sum(const float* data, long n) {
    float acc[8] = {};
    for (long i = 0; i < n; i += 8) {
        for (int s = 0; s < 8; ++s) acc[s] += data[i + s];
    }
    float total = 0.0f;
    for (float v : acc) total += v;
    return total;
}

const Table kTable = {"scalar", f32_dense, f16_dense, f32_columns, i8_dense, i8_columns, f64_dense, minmax,
                      quantize, gelu, fma_loop, dot_i8_loop, read_sum, nullptr};

}  // namespace

const Table& scalar_table() { return kTable; }

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
        const float magnitude = float(mantissa) * 5.9604644775390625e-08f;
        std::memcpy(&bits, &magnitude, sizeof(bits));
        bits |= sign;
    } else if (exponent == 31) {  // infinity, NaN
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
}

std::uint16_t float_to_half(float f) {
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof(x));
    const std::uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return std::uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // >= 65520 rounds past the largest half
    // drop the low `drop` bits of the 24-bit significand, rounding to nearest, ties to even
    std::uint32_t significand, drop, base;
    if (ax >= 0x38800000u) {  // normal half
        significand = ax & 0x7fffffu;
        drop = 13;
        base = ((ax >> 23) - 112u) << 10;
    } else {  // subnormal half (units of 2^-24) or zero
        if (ax < 0x33000000u) return std::uint16_t(sign);  // <= 2^-25 rounds to zero
        significand = (ax & 0x7fffffu) | 0x800000u;
        drop = 126u - (ax >> 23);
        base = 0;
    }
    std::uint32_t h = base + (significand >> drop);
    const std::uint32_t rest = significand & ((1u << drop) - 1u), half = 1u << (drop - 1);
    if (rest > half || (rest == half && (h & 1u))) ++h;  // a carry moves into the exponent, as it should
    return std::uint16_t(sign | h);
}

}  // namespace kernels
}  // namespace lmustream

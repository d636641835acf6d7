// The kernel's C++ test program (no Python): unit tests of the parser, the primitives of every
// SIMD path this CPU runs, the frontend and the engine; and the golden-file runner that checks a
// build (e.g. aarch64 under qemu) against outputs exported from another (x86-64).
//
//   kernel_test unit [MODEL.safetensors ...]   unit tests (models: parser and engine tests)
//   kernel_test golden DIR                     DIR/cases.txt, one case a line:
//        MODEL INT8(0|1) CHUNK INPUT.f32 EXPECTED.f32 TOLERANCE
//     (paths relative to DIR; raw little-endian float32 files: samples, and the per-frame
//     logits [frames, classes] of pushing INPUT in chunks of CHUNK samples, then flush)
//
// Prints one line per check and ends with "N passed, M failed"; exits non-zero on a failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "artifact.h"
#include "engine.h"
#include "frontend.h"
#include "json.h"
#include "kernels/kernels.h"
#include "legendre.h"

using namespace lmustream;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string& what) {
    (ok ? passed : failed) += 1;
    std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

template <class E, class F>
bool throws(F&& f) {
    try {
        f();
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
    return false;
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<float> read_f32(const std::string& path) {
    const auto bytes = read_file(path);
    std::vector<float> v(bytes.size() / 4);
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

// --- JSON ---------------------------------------------------------------------------------
void test_json() {
    const std::string doc = R"( {"a": [1, -2.5e3, true, null, "x\u00e9\ud83d\ude00"], "b": {}} )";
    const Json j = parse_json(doc.data(), doc.size());
    check(j.is_object() && j.find("a")->items.size() == 5 && j.find("a")->items[1].number == -2500.0 &&
              j.find("a")->items[4].text == "x\xc3\xa9\xf0\x9f\x98\x80",
          "json: a valid document parses (numbers, literals, escapes, surrogate pairs)");
    const char* bad[] = {"", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "nan", "Infinity", "\"\\x\"",
                         "\"a", "{\"a\" 1}", "[1 2]", "tru", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "1e999",
                         "[1]x", "\"\x01\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\""};
    int rejected = 0;
    for (const char* text : bad) rejected += throws<JsonError>([&] { parse_json(text, std::strlen(text)); });
    check(rejected == int(sizeof(bad) / sizeof(bad[0])), "json: " + std::to_string(rejected) + " malformed documents rejected");
    const std::string deep(100000, '[');
    check(throws<JsonError>([&] { parse_json(deep.data(), deep.size()); }), "json: 100000 nested arrays rejected (depth limit)");
}

// --- the Legendre state space ---------------------------------------------------------------
void test_legendre() {
    const std::vector<double> diag = {1.0, 0.0, 0.0, 2.0};
    const auto e = matrix_exp(diag, 2);
    check(std::fabs(e[0] - std::exp(1.0)) < 1e-14 && std::fabs(e[3] - std::exp(2.0)) < 1e-13 && e[1] == 0.0,
          "matrix_exp: diagonal matrix");
    const std::vector<double> big = {0.0, 30.0, -30.0, 0.0};  // rotation by 30 rad: needs scaling and squaring
    const auto r = matrix_exp(big, 2);
    check(std::fabs(r[0] - std::cos(30.0)) < 1e-12 && std::fabs(r[1] - std::sin(30.0)) < 1e-12,
          "matrix_exp: rotation by 30 rad (scaling and squaring)");
    const StateSpace& s = *legendre_state_space(64, 64.0);
    double row = 0.0;
    for (double v : s.B) row += std::fabs(v);
    check(s.A.size() == 64 * 64 && std::isfinite(row) && row > 0.0, "legendre_state_space(64): finite A and B");
}

// --- int8 input codes ---------------------------------------------------------------------
void test_int8_codes() {
    const kernels::Table& ref = kernels::scalar_table();
    std::mt19937 gen(11);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    // ranges: one-sided, two-sided, far from zero, tiny, constant, huge
    const std::pair<float, float> ranges[] = {{0.0f, 3.0f}, {-1.0f, 2.0f}, {-12.0f, -4.0f}, {100.0f, 100.5f},
                                               {-1e-20f, 1e-20f}, {5.0f, 5.0f}, {-3e30f, 1e30f}, {0.0f, 0.0f}};
    bool codes_in_range = true, close = true;
    for (auto [lo, hi] : ranges) {
        std::vector<float> x(257);
        for (float& v : x) v = lo + (hi - lo) * uni(gen);
        x[0] = lo;
        x[1] = hi;
        float a, b;
        ref.minmax(x.data(), int(x.size()), &a, &b);
        const InputCode c = input_code(a, b, 260);
        std::vector<std::int8_t> q(x.size(), 0);
        if (c.inv > 0.0f) ref.quantize(x.data(), int(x.size()), c.inv, c.zero, q.data());
        for (std::size_t i = 0; i < x.size(); ++i) {
            codes_in_range = codes_in_range && q[i] >= -127;  // (never -128)
            const double back = (double(q[i]) + c.zero) * c.scale;
            close = close && std::fabs(back - x[i]) <= 0.51 * c.scale + 1e-6 * std::fabs(x[i]);
        }
    }
    check(codes_in_range, "int8 input codes stay within [-127, 127] for every range");
    check(close, "int8 input codes: (q + zero) * scale within half a step of x");
    const InputCode one_sided = input_code(0.0f, 3.0f, 260);
    check(std::fabs(one_sided.scale - 3.0f / 252.0f) < 1e-7f, "a one-sided range gets a step of range / 252 (not 2 * peak / 254)");
    const InputCode far = input_code(1000.0f, 1000.001f, 260);
    check(far.zero == 0 && std::fabs(far.scale - 1000.001f / 127.0f) < 1e-3f,
          "a zero point too large for exact int32 sums falls back to the symmetric scale");
}

// --- primitives: every SIMD path against the scalar reference ---------------------------------
void test_panel_layout() {
    bool bijective = true;  // every (panel, step) gets its own vector, and the runs tile the buffer
    for (int panels : {1, 3, 8, 9, 13, 16, 64}) {
        for (int steps : {1, 4, 7}) {
            std::vector<int> hits(std::size_t(panels) * steps, 0);
            for (int p = 0; p < panels; ++p) {
                for (int i = 0; i < steps; ++i) {
                    const long v = kernels::panel_vector(panels, steps, p, i);
                    if (v < 0 || v >= long(hits.size())) bijective = false;
                    else ++hits[std::size_t(v)];
                    if (i > 0 && v - kernels::panel_vector(panels, steps, p, i - 1) != kernels::panel_run(panels, p))
                        bijective = false;
                }
            }
            for (int h : hits) bijective = bijective && h == 1;
        }
    }
    check(bijective, "panel layout: runs of 8 panels interleaved per step, one vector per (panel, step)");
}

void test_primitives() {
    std::mt19937 gen(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const kernels::Table& ref = kernels::scalar_table();
    for (const char* name : {"scalar", "avx2", "avx512", "neon"}) {
        const kernels::Table* t = kernels::select(name);
        if (!t) continue;
        // 13 and 9 panels: a full run of 8 and a shorter one
        for (auto [in, out] : {std::pair<int, int>{1, 1}, {7, 3}, {33, 17}, {384, 64}, {130, 35}, {40, 200}, {24, 130}}) {
            std::vector<float> w(std::size_t(in) * out), b(out);
            for (float& v : w) v = normal(gen);
            for (float& v : b) v = normal(gen);
            const Layer L = make_layer(in, out, w, b, false, false, false);
            const Layer Q = make_layer(in, out, w, b, true, false, false);
            const Layer QC = make_layer(in, out, w, b, true, true, true);
            const kernels::F32Matrix m{L.w32.data(), L.bias.data(), in, out, L.panels};
            const kernels::I8Matrix qm{Q.w8.data(), Q.scale.data(), Q.bias.data(), Q.rowsum.data(), in, Q.in4, out, Q.panels};
            const kernels::I8Columns qc{QC.w8.data(), QC.scale.data(), QC.bias.data(), in, out, QC.panels};
            constexpr int B = 5;
            std::vector<std::vector<float>> x(B, std::vector<float>(in)), spikes(B, std::vector<float>(in));
            std::vector<std::vector<std::int8_t>> xq(B, std::vector<std::int8_t>(Q.in4, 0));
            for (int bi = 0; bi < B; ++bi) {
                for (int i = 0; i < in; ++i) {
                    x[bi][i] = normal(gen);
                    spikes[bi][i] = normal(gen) > 0.8f ? 1.0f : 0.0f;
                    xq[bi][i] = std::int8_t(std::max(-127, std::min(127, int(std::lround(40 * x[bi][i])))));
                }
            }
            const float* xp[B];
            const float* sp[B];
            const std::int8_t* qp[B];
            float xs[B];
            std::vector<std::vector<float>> y(B, std::vector<float>(out)), yr(B, std::vector<float>(out));
            float* yp[B];
            float* yrp[B];
            for (int bi = 0; bi < B; ++bi) {
                xp[bi] = x[bi].data();
                sp[bi] = spikes[bi].data();
                qp[bi] = xq[bi].data();
                xs[bi] = 0.025f + 0.001f * bi;
                yp[bi] = y[bi].data();
                yrp[bi] = yr[bi].data();
            }
            const std::string tag = std::string(name) + " " + std::to_string(out) + "x" + std::to_string(in);
            // float32 dense: FMA or not, the sums agree to float rounding
            t->f32_dense(m, xp, B, yp);
            ref.f32_dense(m, xp, B, yrp);
            double err = 0.0, scale = 1e-30;
            for (int bi = 0; bi < B; ++bi) {
                for (int o = 0; o < out; ++o) {
                    err = std::max(err, double(std::fabs(y[bi][o] - yr[bi][o])));
                    scale = std::max(scale, double(std::fabs(yr[bi][o])));
                }
            }
            check(err <= 1e-5 * scale * std::sqrt(double(in)), tag + " f32_dense vs scalar");
            // a batch gives the same bits as its streams one at a time
            bool same = true;
            for (int bi = 0; bi < B; ++bi) {
                std::vector<float> one(out);
                float* op = one.data();
                t->f32_dense(m, &xp[bi], 1, &op);
                same = same && one == y[bi];
            }
            check(same, tag + " f32_dense batch == one stream at a time (bitwise)");
            // float16 weights: the float32 product of the widened values, bit for bit
            std::vector<std::uint16_t> w16(L.w32.size());
            std::vector<float> widened(L.w32.size());
            for (std::size_t i = 0; i < w16.size(); ++i) {
                w16[i] = kernels::float_to_half(L.w32[i]);
                widened[i] = kernels::half_to_float(w16[i]);
            }
            const kernels::F16Matrix m16{w16.data(), L.bias.data(), in, out, L.panels};
            const kernels::F32Matrix mw{widened.data(), L.bias.data(), in, out, L.panels};
            t->f16_dense(m16, xp, B, yp);
            t->f32_dense(mw, xp, B, yrp);
            check(y == yr, tag + " f16_dense == f32_dense on the widened weights (bitwise)");
            // spikes: add-only columns == dense product with 0/1 inputs, bit for bit
            t->f32_dense(m, sp, B, yp);
            same = true;
            for (int bi = 0; bi < B; ++bi) {
                std::vector<std::int32_t> active;
                for (int i = 0; i < in; ++i) {
                    if (spikes[bi][i] != 0.0f) active.push_back(i);
                }
                std::vector<float> cols(out);
                t->f32_columns(m, active.data(), int(active.size()), cols.data());
                same = same && cols == y[bi];
                std::vector<std::int8_t> sq(Q.in4, 0);
                for (int i = 0; i < in; ++i) sq[i] = std::int8_t(spikes[bi][i]);
                const std::int8_t* sqp = sq.data();
                const float one = 1.0f;
                const std::int32_t no_zero = 0;
                std::vector<float> dense8(out), cols8(out);
                float* d8 = dense8.data();
                t->i8_dense(qm, &sqp, &one, &no_zero, 1, &d8);
                t->i8_columns(qc, active.data(), int(active.size()), cols8.data());
                same = same && dense8 == cols8;
            }
            check(same, tag + " spikes: add-only == dense (float32 and int8, bitwise)");
            // int8: integer accumulation, so every path gives the same bits, with the inputs'
            // zero points too (each lane its own)
            const std::int32_t zeros[B] = {0, 0, 0, 0, 0}, shifted[B] = {0, 37, -200, 1000, -16000};
            t->i8_dense(qm, qp, xs, zeros, B, yp);
            ref.i8_dense(qm, qp, xs, zeros, B, yrp);
            check(y == yr, tag + " i8_dense == scalar (bitwise)");
            t->i8_dense(qm, qp, xs, shifted, B, yp);
            ref.i8_dense(qm, qp, xs, shifted, B, yrp);
            bool exact = y == yr;
            for (int bi = 0; bi < B; ++bi) {  // against the integer sum written out
                for (int o = 0; o < out; ++o) {
                    long long acc = 0;
                    for (int i = 0; i < in; ++i) {
                        const long vector = kernels::panel_vector(Q.panels, Q.in4 / 4, o / 16, i / 4);
                        const std::int8_t wq = Q.w8[std::size_t(vector * 64) + std::size_t(o % 16) * 4 + i % 4];
                        acc += (long long)wq * (xq[bi][i] + shifted[bi]);
                    }
                    exact = exact && y[bi][o] == float(acc) * (xs[bi] * Q.scale[o]) + Q.bias[o];
                }
            }
            check(exact, tag + " i8_dense with zero points == scalar == the integer sum (bitwise)");
            // the input codes: range and quantization give the same bits on every path
            bool codes = true;
            for (int bi = 0; bi < B; ++bi) {
                float lo, hi, rlo, rhi;
                t->minmax(x[bi].data(), in, &lo, &hi);
                ref.minmax(x[bi].data(), in, &rlo, &rhi);
                codes = codes && lo == rlo && hi == rhi && lo == *std::min_element(x[bi].begin(), x[bi].end()) &&
                        hi == *std::max_element(x[bi].begin(), x[bi].end());
                std::vector<std::int8_t> a(in), r(in);
                const float inv = 252.0f / (hi - lo + 1e-3f);
                const std::int32_t zero = std::int32_t(std::nearbyint(0.5f * (lo * inv + hi * inv)));
                t->quantize(x[bi].data(), in, inv, zero, a.data());
                ref.quantize(x[bi].data(), in, inv, zero, r.data());
                codes = codes && a == r;
                for (int i = 0; i < in; ++i) codes = codes && int(r[i]) == int(std::nearbyint(x[bi][i] * inv)) - zero;
            }
            check(codes, tag + " minmax and quantize with a zero point == scalar (bitwise)");
            // float64
            std::vector<double> A(std::size_t(in) * in);
            for (double& v : A) v = normal(gen);
            std::vector<double> packed(std::size_t((in + 7) / 8) * in * 8, 0.0);
            for (int i = 0; i < in; ++i) {
                for (int j = 0; j < in; ++j) packed[(std::size_t(i / 8) * in + j) * 8 + i % 8] = A[std::size_t(i) * in + j];
            }
            std::vector<double> v(in), r1(in), r2(in);
            for (double& e : v) e = normal(gen);
            const double* vp = v.data();
            double* p1 = r1.data();
            double* p2 = r2.data();
            const kernels::F64Matrix fm{packed.data(), in, in, (in + 7) / 8};
            t->f64_dense(fm, &vp, 1, &p1);
            ref.f64_dense(fm, &vp, 1, &p2);
            double e64 = 0.0;
            for (int i = 0; i < in; ++i) e64 = std::max(e64, std::fabs(r1[i] - r2[i]));
            check(e64 < 1e-12 * in, tag + " f64_dense vs scalar");
        }
        // GELU: the same bits on every path (lengths that leave every kind of tail), and near
        // the exact 0.5 x (1 + erf(x / sqrt 2))
        for (int n : {1, 3, 16, 21, 1024}) {
            std::vector<float> x(n);
            for (float& v : x) v = 3.0f * normal(gen);
            x[0] = n > 1 ? 9.0f : -9.0f;  // past the clamp
            std::vector<float> got = x, want = x;
            t->gelu(got.data(), n);
            ref.gelu(want.data(), n);
            double err = 0.0;
            for (int i = 0; i < n; ++i) {
                const double exact = 0.5 * double(x[i]) * (1.0 + std::erf(double(x[i]) / std::sqrt(2.0)));
                err = std::max(err, std::fabs(double(want[i]) - exact) / std::max(1.0, std::fabs(double(x[i]))));
            }
            check(got == want, std::string(name) + " gelu == scalar (bitwise), n = " + std::to_string(n));
            check(err < 1e-6, std::string(name) + " gelu near the exact GELU, n = " + std::to_string(n));
        }
    }
}

// float16 <-> float32: every half survives the round trip; rounding is to nearest, ties to even
// The sparse int8 product (where a path has one) against the dense one: the same bits, inputs
// of either sign; and its refusals (too many nonzero codes, a code beyond 255).
void test_sparse_product() {
    std::mt19937 gen(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    const kernels::Table& ref = kernels::scalar_table();
    for (const char* name : {"scalar", "avx2", "avx512", "neon"}) {
        const kernels::Table* t = kernels::select(name);
        if (!t || !t->i8_sparse) continue;
        for (auto [in, out] : {std::pair<int, int>{768, 256}, {1024, 256}, {37, 70}, {5, 130}, {64, 1}}) {
            std::vector<float> w(std::size_t(in) * out), b(out);
            for (float& v : w) v = normal(gen);
            for (float& v : b) v = normal(gen);
            Layer Q = make_layer(in, out, w, b, true, false, false);
            add_sparse_columns(Q);
            const kernels::I8Matrix dense{Q.w8.data(), Q.scale.data(), Q.bias.data(), Q.rowsum.data(), in, Q.in4, out,
                                          Q.panels};
            const kernels::I8Sparse sparse{Q.w_sparse.data(), Q.sparse_scale.data(), Q.sparse_bias.data(), in, out,
                                           Q.blocks};
            const std::string tag = std::string(name) + " " + std::to_string(out) + "x" + std::to_string(in);
            std::vector<std::int32_t> index(2 * (std::size_t(in) + 32));
            std::vector<std::uint8_t> value(2 * (std::size_t(in) + 32));
            for (float density : {0.0f, 0.1f, 0.3f, 0.5f}) {
                const std::int32_t zero = 30;  // codes v = q + 30 in [-97, 157]: both signs
                std::vector<std::int8_t> q(std::size_t(Q.in4) + 4, 0);
                int nonzero = 0;
                for (int i = 0; i < in; ++i) {
                    const int v = uniform(gen) < density ? int(uniform(gen) * 254.0f) - 97 : 0;
                    q[i] = std::int8_t(v - zero);
                    nonzero += v != 0;
                }
                std::vector<float> ys(out + 64, -1.0f), yd(out, 0.0f);
                const std::int8_t* qp = q.data();
                const float x_scale = 0.0173f;
                float* ydp = yd.data();
                ref.i8_dense(dense, &qp, &x_scale, &zero, 1, &ydp);
                const bool ok = t->i8_sparse(sparse, q.data(), zero, x_scale, in, index.data(), value.data(), ys.data());
                check(ok && std::equal(yd.begin(), yd.end(), ys.begin()),
                      tag + " i8_sparse == i8_dense, bitwise (density " + std::to_string(density) + ")");
                check(ys[out] == -1.0f, tag + " i8_sparse writes nothing past out");
                if (nonzero > 0) {
                    check(!t->i8_sparse(sparse, q.data(), zero, x_scale, nonzero - 1, index.data(), value.data(), ys.data()),
                          tag + " i8_sparse refuses more nonzero codes than max_active");
                }
            }
            std::vector<std::int8_t> big(std::size_t(Q.in4) + 4, 0);
            big[0] = 100;  // v = 100 + 200 > 255
            std::vector<float> y(out + 64);
            check(!t->i8_sparse(sparse, big.data(), 200, 1.0f, in, index.data(), value.data(), y.data()),
                  tag + " i8_sparse refuses a code beyond 255");
        }
    }
}

void test_half() {
    bool round_trip = true;
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
        const float f = kernels::half_to_float(std::uint16_t(h));
        round_trip = round_trip && (nan ? std::isnan(f) : kernels::float_to_half(f) == h);
    }
    check(round_trip, "half: every float16 -> float32 -> float16 is exact");
    struct Case { float f; std::uint16_t h; };
    const Case cases[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
        {1e9f, 0x7c00}, {0.0f, 0x0000}, {-0.0f, 0x8000}, {std::ldexp(1.0f, -14), 0x0400},
        {std::ldexp(1.0f, -24), 0x0001}, {std::ldexp(1.0f, -25), 0x0000}, {std::ldexp(1.5f, -25), 0x0001},
        {std::ldexp(3.0f, -25), 0x0002},                    // 1.5 quanta: tie, to even
        {1.0f + std::ldexp(1.0f, -11), 0x3c00},             // tie, to even (down)
        {1.0f + std::ldexp(3.0f, -11), 0x3c02},             // tie, to even (up)
        {1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20), 0x3c01},
        {std::ldexp(1023.5f, -24), 0x0400},                 // the largest subnormal rounds up to normal
        {0.99951171875f, 0x3bff}, {std::numeric_limits<float>::infinity(), 0x7c00},
    };
    bool rounding = true;
    for (const Case& c : cases) rounding = rounding && kernels::float_to_half(c.f) == c.h;
    check(rounding, "half: float32 -> float16 rounds to nearest, ties to even, overflow to infinity");
    check(std::isnan(kernels::half_to_float(kernels::float_to_half(std::nanf("")))), "half: NaN stays NaN");
}

// --- frontend --------------------------------------------------------------------------------
void test_frontend() {
    FrontendConfig config;
    Fbank fbank(config);
    std::vector<float> wave(16000);
    for (std::size_t i = 0; i < wave.size(); ++i) wave[i] = 0.3f * std::sin(2.0f * 3.14159265f * 1000.0f * float(i) / 16000.0f);
    FbankStream whole, bits;
    std::vector<float> a, b;
    whole.push(fbank, wave.data(), wave.size(), a);
    for (std::size_t i = 0; i < wave.size(); i += 7) bits.push(fbank, wave.data() + i, std::min<std::size_t>(7, wave.size() - i), b);
    check(a.size() == std::size_t(98 * 128) && a == b, "frontend: 98 frames from 1 s, chunks of 7 samples == one push (bitwise)");
    int peak = 0;
    for (int m = 1; m < 128; ++m) {
        if (a[m] > a[peak]) peak = m;
    }
    const double mel_1k = 1127.0 * std::log1p(1000.0 / 700.0), lo = 1127.0 * std::log1p(20.0 / 700.0),
                 hi = 1127.0 * std::log1p(8000.0 / 700.0);
    const int expected = int(std::lround((mel_1k - lo) / ((hi - lo) / 129.0))) - 1;
    check(std::abs(peak - expected) <= 1, "frontend: a 1 kHz tone peaks in mel bin " + std::to_string(peak) +
                                              " (expected " + std::to_string(expected) + ")");
    FrontendConfig odd = config;
    odd.round_to_power_of_two = false;  // direct DFT of 400 points; same spectrum, finer bins
    Fbank direct(odd);
    FbankStream s;
    std::vector<float> c;
    s.push(direct, wave.data(), wave.size(), c);
    check(c.size() == a.size() && std::all_of(c.begin(), c.end(), [](float v) { return std::isfinite(v); }),
          "frontend: non-power-of-two FFT size runs");
}

// --- artifact parser on real files -----------------------------------------------------------
void test_artifact(const std::string& path) {
    const auto bytes = read_file(path);
    const Artifact art = parse_artifact(bytes.data(), bytes.size(), path);
    check(!art.tensors.empty() && int(art.labels.size()) == art.config.n_classes, "artifact: " + path + " parses");
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | bytes[i];
    int rejected = 0, tried = 0;
    // every truncation inside the header, and a spread of them through the tensor data
    std::vector<std::size_t> cuts;
    for (std::size_t n = 0; n < std::min<std::size_t>(bytes.size(), 8 + header + 16); ++n) cuts.push_back(n);
    for (std::size_t n = 8 + header; n < bytes.size(); n += std::max<std::size_t>(1, bytes.size() / 97)) cuts.push_back(n);
    cuts.push_back(bytes.size() - 1);
    for (std::size_t n : cuts) {
        ++tried;
        rejected += throws<ArtifactError>([&] { parse_artifact(bytes.data(), n, "cut"); });
    }
    check(rejected == tried, "artifact: " + std::to_string(rejected) + "/" + std::to_string(tried) + " truncations rejected");
    std::mt19937 gen(3);
    int crashes_avoided = 0;
    for (int trial = 0; trial < 300; ++trial) {
        std::vector<std::uint8_t> copy(bytes.begin(), bytes.begin() + std::min<std::size_t>(bytes.size(), 8 + header + 4096));
        copy.resize(bytes.size());
        std::memcpy(copy.data(), bytes.data(), bytes.size());
        const std::size_t at = gen() % (8 + header);
        copy[at] = std::uint8_t(gen());
        try {
            parse_artifact(copy.data(), copy.size(), "flip");
        } catch (const ArtifactError&) {
        }
        ++crashes_avoided;
    }
    check(crashes_avoided == 300, "artifact: 300 corrupted headers parse or raise ArtifactError");
}

// --- engine on real files --------------------------------------------------------------------
std::vector<float> run_stream(const Engine& e, const std::vector<float>& wave, std::size_t chunk) {
    Stream s(e);
    std::vector<float> out;
    for (std::size_t i = 0; i < wave.size(); i += chunk) s.push(wave.data() + i, std::min(chunk, wave.size() - i), out);
    s.flush(out);
    return out;
}

void test_engine(const std::string& path) {
    const Artifact art = read_artifact(path);
    std::mt19937 gen(11);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    std::vector<float> wave(16000 * 2);
    for (std::size_t i = 0; i < wave.size(); ++i) wave[i] = 0.3f * std::sin(0.05f * float(i) * (1.0f + float(i) / 40000.0f)) + normal(gen);
    EngineOptions scalar_opts;
    scalar_opts.simd = "scalar";
    const Engine scalar(art, scalar_opts), best(art, EngineOptions{});
    const auto a = run_stream(scalar, wave, 16000), b = run_stream(best, wave, 16000);
    double err = a.size() == b.size() ? 0.0 : 1e9;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) err = std::max(err, double(std::fabs(a[i] - b[i])));
    const int frames = int(a.size()) / art.config.n_classes;
    check(frames == 198 && err < 1e-4, "engine " + path + ": " + std::string(best.simd()) + " vs scalar over " +
                                           std::to_string(frames) + " frames, max |diff| " + std::to_string(err));
    check(run_stream(best, wave, 1) == b, "engine: pushing 1 sample at a time == 1 s chunks (bitwise)");
    Stream s(best);
    std::vector<float> junk;
    s.push(wave.data(), 5000, junk);
    s.reset();
    std::vector<float> again;
    s.push(wave.data(), wave.size(), again);
    s.flush(again);
    check(again == b, "engine: reset() gives a fresh stream");
    EngineOptions q;
    q.int8 = true;
    const Engine int8(art, q);
    const auto c = run_stream(int8, wave, 4000);
    check(c.size() == b.size() && std::all_of(c.begin(), c.end(), [](float v) { return std::isfinite(v); }),
          "engine: int8 weights run");
}

// --- golden files ----------------------------------------------------------------------------
int golden(const std::string& dir) {
    std::ifstream cases(dir + "/cases.txt");
    if (!cases) {
        std::printf("FAIL  no %s/cases.txt\n", dir.c_str());
        return 1;
    }
    std::string line;
    while (std::getline(cases, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream in(line);
        std::string model, input, expected;
        int int8 = 0;
        std::size_t chunk = 0;
        double tolerance = 0.0;
        in >> model >> int8 >> chunk >> input >> expected >> tolerance;
        EngineOptions options;
        options.int8 = int8 != 0;
        const Engine engine(read_artifact(dir + "/" + model), options);
        const auto wave = read_f32(dir + "/" + input);
        const auto want = read_f32(dir + "/" + expected);
        const auto got = run_stream(engine, wave, chunk == 0 ? 1 : chunk);
        double err = got.size() == want.size() ? 0.0 : INFINITY;
        for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) err = std::max(err, double(std::fabs(got[i] - want[i])));
        char text[512];
        std::snprintf(text, sizeof text, "golden %s int8=%d chunk=%zu (%s): %zu logits, max |diff| %.3g <= %.3g", model.c_str(),
                      int8, chunk, engine.simd(), got.size(), err, tolerance);
        check(err <= tolerance, text);
    }
    return 0;
}

// --- timing from C++ (no Python in the loop) ---------------------------------------------------
// Frontend + model per 10 ms of audio when a C++ caller pushes `push_ms` blocks of 16 kHz audio
// into one stream: the best of `rounds` passes over 30 s of a chirp in noise.
int time_pushes(const std::string& path, bool int8, int push_ms, int rounds) {
    const Artifact art = read_artifact(path);
    EngineOptions options;
    options.int8 = int8;
    const Engine engine(art, options);
    Stream stream(engine);
    const int rate = 16000, n = 30 * rate, block = rate / 1000 * push_ms;
    std::vector<float> audio(static_cast<std::size_t>(n));
    std::mt19937 gen(0);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    for (int i = 0; i < n; ++i) {
        const double t = double(i) / rate;
        audio[std::size_t(i)] = float(0.3 * std::sin(2.0 * M_PI * (300.0 + 200.0 * std::sin(0.5 * t)) * t)) + noise(gen);
    }
    // The best of `rounds` passes of `push` over the audio in `block`-sample pushes, in seconds.
    auto best_pass = [&](auto&& reset, auto&& push) {
        double best = 1e30;
        for (int r = 0; r < rounds; ++r) {
            reset();
            const auto start = std::chrono::steady_clock::now();
            for (int i = 0; i < n; i += block) push(audio.data() + i, std::size_t(std::min(block, n - i)));
            best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return best;
    };
    std::vector<float> out;
    const double best = best_pass([&] { stream.reset(); }, [&](const float* x, std::size_t k) {
        stream.push(x, k, out);
        out.clear();
    });
    // the frontend's share: the same pushes into the log-mel stream alone
    FbankStream features;
    const double frontend = best_pass([&] { features.reset(); }, [&](const float* x, std::size_t k) {
        features.push(engine.fbank(), x, k, out);
        out.clear();
    });
    const double per_10ms = best / (n / double(rate) * 100.0), frontend_10ms = frontend / (n / double(rate) * 100.0);
    std::printf("%s weights, %d ms pushes (%s): %.1f us per 10 ms of audio (frontend %.1f us), real-time factor %.4f\n",
                int8 ? "int8" : "float32", push_ms, engine.simd(), per_10ms * 1e6, frontend_10ms * 1e6, per_10ms / 0.01);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "unit";
    try {
        if (mode == "unit") {
            std::printf("SIMD paths on this CPU: %s\n", kernels::supported_levels());
            test_json();
            test_legendre();
            test_panel_layout();
            test_primitives();
            test_sparse_product();
            test_half();
            test_int8_codes();
            test_frontend();
            for (int i = 2; i < argc; ++i) {
                test_artifact(argv[i]);
                test_engine(argv[i]);
            }
        } else if (mode == "golden" && argc == 3) {
            golden(argv[2]);
        } else if (mode == "time" && argc >= 3) {
            const bool int8 = argc > 3 && std::string(argv[3]) == "int8";
            const int push_ms = argc > 4 ? std::atoi(argv[4]) : 10;
            if (push_ms < 1 || push_ms > 10000) throw std::invalid_argument("push_ms must be 1..10000");
            return time_pushes(argv[2], int8, push_ms, argc > 5 ? std::atoi(argv[5]) : 5);
        } else {
            std::fprintf(stderr,
                         "usage: kernel_test unit [MODEL ...] | kernel_test golden DIR | "
                         "kernel_test time MODEL [int8|float32] [PUSH_MS] [ROUNDS]\n");
            return 2;
        }
    } catch (const std::exception& e) {
        check(false, std::string("uncaught exception: ") + e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

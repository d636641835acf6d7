#include "engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "legendre.h"

namespace lmustream {
namespace {

using kernels::kPanel;
using kernels::kPanel64;

constexpr float kBatchNormEps = 1e-5f;  // torch.nn.BatchNorm1d's default, not stored in the file
constexpr double kBatchNormEpsDouble = 1e-5;  // the same (a Python float) where the fold is in float64

int panels_for(int out, int width) { return (out + width - 1) / width; }

const std::vector<float>& tensor(const Artifact& art, const std::string& name) {
    auto it = art.tensors.find(name);
    if (it == art.tensors.end()) throw ArtifactError("tensor '" + name + "' is missing");
    return it->second.values;
}

// Eval-mode batch norm as y = scale * x + shift, in float32 step by step as step.py's fold_bn;
// with `wide` also in float64 (exact.fold_bn with dtype float64: scale64 = weight / sqrt(var + eps),
// shift64 = bias - mean * scale64, each operation rounded in float64 as torch does it).
Affine fold_bn(const Artifact& art, const std::string& prefix, bool wide = false) {
    const auto& weight = tensor(art, prefix + ".weight");
    const auto& bias = tensor(art, prefix + ".bias");
    const auto& mean = tensor(art, prefix + ".running_mean");
    const auto& var = tensor(art, prefix + ".running_var");
    Affine a;
    a.wide = wide;
    a.scale.resize(weight.size());
    a.shift.resize(weight.size());
    if (wide) {
        a.scale64.resize(weight.size());
        a.shift64.resize(weight.size());
    }
    for (std::size_t c = 0; c < weight.size(); ++c) {
        const float denom = std::sqrt(var[c] + kBatchNormEps);
        if (!(denom > 0.0f) || !std::isfinite(denom)) {
            throw ArtifactError("batch norm '" + prefix + "' has a non-positive running_var + eps at channel " +
                                std::to_string(c));
        }
        a.scale[c] = weight[c] / denom;
        const float moved = mean[c] * a.scale[c];
        a.shift[c] = bias[c] - moved;
        if (wide) {
            a.scale64[c] = double(weight[c]) / std::sqrt(double(var[c]) + kBatchNormEpsDouble);
            const double moved64 = double(mean[c]) * a.scale64[c];
            a.shift64[c] = double(bias[c]) - moved64;
        }
    }
    return a;
}

// Dense [out][in] float32 weights and bias (BN folded when given), before packing.
struct Dense {
    int in = 0, out = 0;
    std::vector<float> w, b;
    std::vector<double> w64, b64;  // the float64 fold (wide layers), filled by fold_into64
};

// BN(W x + b) as W' x + b' in float64 (exact.fold_into_linear with dtype float64).
void fold_into64(Dense& d, const Affine* bn) {
    d.w64.assign(d.w.begin(), d.w.end());
    d.b64.assign(d.b.begin(), d.b.end());
    if (!bn) return;
    for (int o = 0; o < d.out; ++o) {
        for (int i = 0; i < d.in; ++i) d.w64[std::size_t(o) * d.in + i] *= bn->scale64[o];
        const double scaled = d.b64[o] * bn->scale64[o];
        d.b64[o] = scaled + bn->shift64[o];
    }
}

// A float64 layer in the f64_dense panel layout (columns of a panel are contiguous too).
Layer pack64(const Dense& d, bool spike_input) {
    Layer L;
    L.in = d.in;
    L.out = d.out;
    L.spike_input = spike_input;
    L.wide = true;
    L.panels64 = panels_for(d.out, kPanel64);
    L.bias64.assign(std::size_t(L.panels64) * kPanel64, 0.0);
    std::copy(d.b64.begin(), d.b64.end(), L.bias64.begin());
    L.w64.assign(std::size_t(L.panels64) * d.in * kPanel64, 0.0);
    for (int o = 0; o < d.out; ++o) {
        for (int i = 0; i < d.in; ++i) {
            L.w64[(std::size_t(o / kPanel64) * d.in + i) * kPanel64 + o % kPanel64] = d.w64[std::size_t(o) * d.in + i];
        }
    }
    return L;
}

void fold_into(Dense& d, const Affine* bn) {
    if (!bn) return;
    for (int o = 0; o < d.out; ++o) {
        for (int i = 0; i < d.in; ++i) d.w[std::size_t(o) * d.in + i] = d.w[std::size_t(o) * d.in + i] * bn->scale[o];
        const float scaled = d.b[o] * bn->scale[o];
        d.b[o] = scaled + bn->shift[o];
    }
}

// A convolution [out, in, k] as a map of the window [k][in] (oldest frame first).
Dense conv_dense(const Artifact& art, const std::string& name, int k) {
    const Tensor& t = art.tensors.at(name);
    Dense d;
    d.out = int(t.shape[0]);
    const int cin = int(t.shape[1]);
    d.in = cin * k;
    d.w.resize(std::size_t(d.out) * d.in);
    d.b.assign(d.out, 0.0f);
    for (int o = 0; o < d.out; ++o) {
        for (int c = 0; c < cin; ++c) {
            for (int j = 0; j < k; ++j) {
                d.w[std::size_t(o) * d.in + std::size_t(j) * cin + c] = t.values[(std::size_t(o) * cin + c) * k + j];
            }
        }
    }
    return d;
}

// W (x + shift) + b = W x + (b + W shift): the shift of the batch norm before a convolution (over
// its window [k][cin]) folded into the bias, its products summed in float64.
void fold_input_shift(Dense& d, const Affine& bn, int cin) {
    for (int o = 0; o < d.out; ++o) {
        const float* row = &d.w[std::size_t(o) * d.in];
        double shifted = d.b[o];
        for (int i = 0; i < d.in; ++i) shifted += double(row[i]) * double(bn.shift[i % cin]);
        d.b[o] = float(shifted);
    }
}

Dense linear_dense(const Artifact& art, const std::string& prefix) {
    const Tensor& t = art.tensors.at(prefix + ".weight");
    Dense d;
    d.out = int(t.shape[0]);
    d.in = int(t.shape[1]);  // [out, in] or [out, in, 1]
    d.w = t.values;
    d.b = tensor(art, prefix + ".bias");
    return d;
}

// w / step rounded to the nearest integer (ties to even) in [-127, 127].
inline float quantized(float w, float step) { return std::max(-127.0f, std::min(127.0f, std::nearbyint(w / step))); }

Layer pack(const Dense& d, bool int8, bool spike_input, bool add_only) {
    Layer L;
    L.in = d.in;
    L.out = d.out;
    L.spike_input = spike_input;
    L.panels = panels_for(d.out, kPanel);
    L.bias.assign(std::size_t(L.panels) * kPanel, 0.0f);
    std::copy(d.b.begin(), d.b.end(), L.bias.begin());
    L.int8 = int8;
    if (!int8) {
        L.w32.assign(std::size_t(L.panels) * d.in * kPanel, 0.0f);
        for (int o = 0; o < d.out; ++o) {
            const int p = o / kPanel, l = o % kPanel;
            for (int i = 0; i < d.in; ++i) {
                L.w32[std::size_t(kernels::panel_vector(L.panels, d.in, p, i)) * kPanel + l] =
                    d.w[std::size_t(o) * d.in + i];
            }
        }
        return L;
    }
    // Symmetric per-output-channel quantization to [-127, 127] (never -128, which the AVX2
    // sign trick and the exact int16 products rely on).
    L.scale.assign(std::size_t(L.panels) * kPanel, 0.0f);
    std::vector<std::int8_t> q(std::size_t(d.out) * d.in);
    for (int o = 0; o < d.out; ++o) {
        const float* row = d.w.data() + std::size_t(o) * d.in;
        float peak = 0.0f;
        for (int i = 0; i < d.in; ++i) peak = std::max(peak, std::fabs(row[i]));
        // The step that minimises the row's squared rounding error, clipping its largest weights
        // when that helps the rest: scales from peak / 127 down to 0.6 peak / 127.
        float s = peak > 0.0f ? peak / 127.0f : 1.0f;
        double best = -1.0;
        for (int c = 0; peak > 0.0f && c <= 20; ++c) {
            const float step = peak * (1.0f - 0.02f * float(c)) / 127.0f;
            double err = 0.0;
            for (int i = 0; i < d.in; ++i) {
                const double e = double(row[i]) - double(quantized(row[i], step)) * step;
                err += e * e;
            }
            if (best < 0.0 || err < best) {
                best = err;
                s = step;
            }
        }
        L.scale[o] = s;
        for (int i = 0; i < d.in; ++i) q[std::size_t(o) * d.in + i] = std::int8_t(quantized(row[i], s));
    }
    L.columns = spike_input && add_only;
    if (L.columns) {
        L.w8.assign(std::size_t(L.panels) * d.in * kPanel, 0);
        for (int o = 0; o < d.out; ++o) {
            for (int i = 0; i < d.in; ++i) {
                L.w8[(std::size_t(o / kPanel) * d.in + i) * kPanel + o % kPanel] = q[std::size_t(o) * d.in + i];
            }
        }
        return L;
    }
    L.in4 = (d.in + 3) / 4 * 4;
    L.w8.assign(std::size_t(L.panels) * L.in4 * kPanel, 0);
    L.rowsum.assign(std::size_t(L.panels) * kPanel, 0);
    for (int o = 0; o < d.out; ++o) {
        const int p = o / kPanel, l = o % kPanel;
        for (int i = 0; i < d.in; ++i) {
            const std::int8_t v = q[std::size_t(o) * d.in + i];
            const long vector = kernels::panel_vector(L.panels, L.in4 / 4, p, i / 4);  // of kPanel x 4 weights
            L.w8[std::size_t(vector * kPanel * 4) + std::size_t(l) * 4 + i % 4] = v;
            L.rowsum[o] += v;
        }
    }
    return L;
}

}  // namespace

// The input's range [lo, hi] spread over 253 codes (252 steps: a step of slack keeps every code
// within [-127, 127] whatever the roundings). Asymmetric, because most inputs are one-sided (a
// log-mel frame; the outputs of ReLU and GELU): a symmetric scale would leave half the codes
// unused. Falls back to a symmetric scale when the zero point would be too large for exact
// int32 sums (zero * rowsum, over in4 inputs), i.e. for a constant or nearly constant input.
InputCode input_code(float lo, float hi, int in4) {
    const long long limit = std::min<long long>(1LL << 16, std::numeric_limits<std::int32_t>::max() / (127LL * in4) - 128);
    const float span = hi - lo;
    if (std::isfinite(span) && span > 1e-30f) {
        const float inv = 252.0f / span;
        const float zero = std::nearbyint(0.5f * (lo * inv + hi * inv));
        if (std::fabs(zero) <= float(limit)) return {inv, span / 252.0f, std::int32_t(zero)};  // (NaN fails too)
    }
    const float peak = std::max(-lo, hi);
    if (peak > 1e-30f) return {127.0f / peak, peak / 127.0f, 0};  // |x * (127 / peak)| rounds to <= 127
    return {0.0f, 1.0f, 0};                                        // all zero
}

Layer make_layer(int in, int out, const std::vector<float>& w, const std::vector<float>& b, bool int8,
                 bool spike_input, bool add_only) {
    if (in < 1 || out < 1 || w.size() != std::size_t(in) * out || b.size() != std::size_t(out)) {
        throw std::invalid_argument("make_layer: sizes do not match");
    }
    Dense d;
    d.in = in;
    d.out = out;
    d.w = w;
    d.b = b;
    return pack(d, int8, spike_input, add_only);
}

void add_sparse_columns(Layer& L) {
    L.blocks = (L.out + 63) / 64;
    const std::size_t column = std::size_t(L.blocks) * 64;
    const int steps = L.in4 / 4;
    L.w_sparse.assign(std::size_t(L.in) * column, 0);
    for (int o = 0; o < L.out; ++o) {
        for (int i = 0; i < L.in; ++i) {
            const long vector = kernels::panel_vector(L.panels, steps, o / kernels::kPanel, i / 4);
            L.w_sparse[std::size_t(i) * column + std::size_t(kernels::sparse_slot(o))] =
                L.w8[std::size_t(vector) * kernels::kPanel * 4 + std::size_t(o % kernels::kPanel) * 4 + i % 4];
        }
    }
    L.sparse_scale.assign(column, 0.0f);
    L.sparse_bias.assign(column, 0.0f);
    std::copy(L.scale.begin(), L.scale.begin() + L.out, L.sparse_scale.begin());
    std::copy(L.bias.begin(), L.bias.begin() + L.out, L.sparse_bias.begin());
}

namespace {

kernels::F32Matrix f32_view(const Layer& L) { return {L.w32.data(), L.bias.data(), L.in, L.out, L.panels}; }
kernels::I8Matrix i8_view(const Layer& L) {
    return {L.w8.data(), L.scale.data(), L.bias.data(), L.rowsum.data(), L.in, L.in4, L.out, L.panels};
}

LMU_ALWAYS_INLINE float relu(float x) { return x > 0.0f ? x : 0.0f; }

}  // namespace

std::size_t Layer::weight_bytes() const {
    if (wide) return std::size_t(in) * out * sizeof(double);
    if (!int8) return std::size_t(in) * out * sizeof(float);
    return std::size_t(in) * out;
}

Engine::Engine(const Artifact& art, const EngineOptions& options)
    : config_(art.config),
      frontend_config_(art.frontend),
      options_(options),
      labels_(art.labels),
      fbank_(art.frontend),
      table_(kernels::select(options.simd.c_str())) {
    if (!table_) {
        throw std::invalid_argument("SIMD path '" + options.simd + "' is not available here (this CPU and build support: " +
                                    kernels::supported_levels() + ")");
    }
    if (options.frame_lanes < 1 || options.frame_lanes > kMaxLanes) {
        throw std::invalid_argument("frame_lanes must be between 1 and " + std::to_string(kMaxLanes) + ", got " +
                                    std::to_string(options.frame_lanes));
    }
    const ModelConfig& c = config_;
    const bool q = options.int8, spk = c.spiking, add = options.add_only;
    const int E = c.embed_convs;
    // A spiking model with float32 weights folds and sums in float64 (see engine.h).
    const bool wide = spk && !q;
    auto bn_of = [&](const std::string& prefix) { return fold_bn(art, prefix, wide); };
    // int8 weights everywhere except, in a spiking model, the four convolutions of the patch
    // embedding (the rpe convolution stays int8): their four LIF stages turn weight rounding into
    // spike flips that every later layer inherits (measured with benchmarks/kernel_int8_accuracy.py:
    // asc40-slmuformer -0.7 accuracy points with it in int8, -0.2 without). A non-spiking model's
    // first convolution had a second int8 plane (its rounding residual) until the batch-norm
    // shifts below moved into the biases: without it every shipped model stays within 0.05
    // accuracy points of float32 (benchmarks/kernel_int8_accuracy.py), for 0.1 MB less a frame.
    auto finish = [&](Dense d, const Affine* bn, bool spike_input, bool keep_float = false) {
        if (wide) {
            fold_into64(d, bn);
            return pack64(d, spike_input);
        }
        fold_into(d, bn);
        return pack(d, q && !keep_float, spike_input, add);
    };
    // int8, non-spiking: BN_i = scale * x + shift follows a ReLU. Its shift folds into the next
    // convolution's bias, so the window holds scale * ReLU(y): zero wherever the ReLU is (a
    // quarter to two thirds of the channels in trained models; the sparse product skips their
    // weights), with the per-channel scale the int8 codes were made for. A frame before the
    // stream's start must still give BN output 0: its window holds -shift (window_fill).
    fold_embed_bn_ = q && !spk;
    window_fill_.assign(E + 1, {});
    for (int i = 1; i <= E; ++i) window_fill_[i].assign(c.dim, 0.0f);
    for (int i = 0; i < E; ++i) {
        const std::string p = "embed.convs." + std::to_string(i);
        Dense d = conv_dense(art, p + ".weight", c.kernel_size);
        Affine bn = bn_of("embed.bns." + std::to_string(i));
        const bool keep_float = spk;
        if (spk && i < E - 1) {
            embed_.push_back(finish(d, &bn, i > 0, keep_float));  // conv_i -> BN_i -> LIF: the BN folds in
        } else {
            if (fold_embed_bn_ && i > 0) fold_input_shift(d, embed_bn_[i - 1], c.dim);
            embed_bn_.push_back(bn);  // after a ReLU, or feeding the residual too
            embed_.push_back(finish(d, nullptr, spk && i > 0, keep_float));
        }
    }
    Dense rpe = conv_dense(art, "embed.rpe.weight", c.kernel_size);
    if (fold_embed_bn_) {
        fold_input_shift(rpe, embed_bn_[E - 1], c.dim);
        for (int i = 1; i <= E; ++i) {
            for (int o = 0; o < c.dim; ++o) window_fill_[i][o] = -embed_bn_[i - 1].shift[o];
        }
    }
    embed_.push_back(finish(rpe, nullptr, spk));
    for (int b = 0; b < c.depth; ++b) {
        const std::string p = "blocks." + std::to_string(b) + ".";
        BlockWeights w;
        Dense Wu = linear_dense(art, p + "lmu.W_u"), Wh = linear_dense(art, p + "lmu.W_h");
        Dense proj = linear_dense(art, p + "lmu.proj"), fc1 = linear_dense(art, p + "ffn.fc1");
        Dense fc2 = linear_dense(art, p + "ffn.fc2");
        Affine proj_bn = bn_of(p + "lmu.proj_bn");
        if (wide) {  // spiking, float32 weights: everything in float64 (no int8 split below)
            w.in_bn = bn_of(p + "lmu.input_bn");
            w.m_bn = bn_of(p + "lmu.bn_m");
            w.fc1_bn = bn_of(p + "ffn.fc1_bn");
            Affine bn_u = bn_of(p + "lmu.bn_u"), bn_h = bn_of(p + "lmu.bn_h"), fc2_bn = bn_of(p + "ffn.fc2_bn");
            w.Wu = finish(Wu, &bn_u, true);
            w.Wh = finish(Wh, &bn_h, true);
            w.proj = finish(proj, &proj_bn, true);
            w.fc1 = finish(fc1, &fc2_bn, true);  // BN -> LIF -> fc1 -> BN -> LIF: fc1 folds with the second BN
            w.fc2 = finish(fc2, nullptr, true);
            blocks_.push_back(std::move(w));
            continue;
        }
        fold_into(proj, &proj_bn);
        if (!spk) {
            Affine fc1_bn = fold_bn(art, p + "ffn.fc1_bn"), fc2_bn = fold_bn(art, p + "ffn.fc2_bn");
            fold_into(fc1, &fc1_bn);
            fold_into(fc2, &fc2_bn);
        } else {
            w.in_bn = fold_bn(art, p + "lmu.input_bn");
            w.m_bn = fold_bn(art, p + "lmu.bn_m");
            w.fc1_bn = fold_bn(art, p + "ffn.fc1_bn");
            Affine bn_u = fold_bn(art, p + "lmu.bn_u"), bn_h = fold_bn(art, p + "lmu.bn_h");
            Affine fc2_bn = fold_bn(art, p + "ffn.fc2_bn");
            fold_into(Wu, &bn_u);
            fold_into(Wh, &bn_h);
            fold_into(fc1, &fc2_bn);  // BN -> LIF -> fc1 -> BN -> LIF: fc1 folds with the second BN
        }
        w.Wu = pack(Wu, false, spk, add);  // one output: kept in float32
        w.Wh = pack(Wh, q, spk, add);
        if (q && !spk) {
            const int M = c.memory_size, C = c.dim;
            Dense m_part, z_part;
            m_part.in = M;
            z_part.in = C;
            m_part.out = z_part.out = C;
            m_part.b = Wh.b;
            z_part.b.assign(C, 0.0f);
            for (int o = 0; o < C; ++o) {
                const float* row = &Wh.w[std::size_t(o) * (M + C)];
                m_part.w.insert(m_part.w.end(), row, row + M);
                z_part.w.insert(z_part.w.end(), row + M, row + M + C);
            }
            w.split_h = true;
            w.Wh_m = pack(m_part, true, false, false);
            w.Wh_z = pack(z_part, true, false, false);
            w.Wh = Layer{};  // not used in this mode; keeps the sizes for the byte and MAC counts
            w.Wh.in = M + C;
            w.Wh.out = C;
            w.Wh.int8 = true;
        }
        w.proj = pack(proj, q, spk, add);
        w.fc1 = pack(fc1, q, spk, add);
        w.fc2 = pack(fc2, q, spk, add);
        blocks_.push_back(std::move(w));
    }
    if (spk) head_bn_ = bn_of("head_bn");
    head_ = pack(linear_dense(art, "head"), false, false, false);  // also takes the running mean: dense

    const auto state_space = legendre_state_space(c.memory_size, c.theta);
    const StateSpace& space = *state_space;
    const int M = c.memory_size, panels64 = panels_for(M, kPanel64), panels32 = panels_for(M, kPanel);
    if (!q) {
        A64_.assign(std::size_t(panels64) * M * kPanel64, 0.0);
        for (int i = 0; i < M; ++i) {
            for (int j = 0; j < M; ++j) {
                A64_[(std::size_t(i / kPanel64) * M + j) * kPanel64 + i % kPanel64] = space.A[std::size_t(i) * M + j];
            }
        }
        B64_ = space.B;
    } else {
        // float16 A: half the bytes of the largest matrix left in floating point. Its rounding
        // (relative 2^-11 per entry) moves the memory by about 0.3% of its range, no drift over
        // long streams, below the int8 input codes' own step (docs/kernel.md).
        A16_.assign(std::size_t(panels32) * M * kPanel, 0);
        for (int i = 0; i < M; ++i) {
            for (int j = 0; j < M; ++j) {
                A16_[std::size_t(kernels::panel_vector(panels32, M, i / kPanel, j)) * kPanel + i % kPanel] =
                    kernels::float_to_half(float(space.A[std::size_t(i) * M + j]));
            }
        }
        B32_.assign(space.B.begin(), space.B.end());
        zero_bias_.assign(std::size_t(panels32) * kPanel, 0.0f);
    }
    if (spk) {
        for (int i = 0; i < E; ++i) {
            lif_names_.push_back("embed" + std::to_string(i));
            lif_sizes_.push_back(c.dim);
        }
        for (int b = 0; b < c.depth; ++b) {
            const std::string p = "block" + std::to_string(b) + ".";
            for (auto [n, s] : {std::pair<const char*, int>{"in", c.dim}, {"u", 1}, {"m", c.memory_size}, {"h", c.dim},
                                {"fc1", c.dim}, {"fc2", c.hidden()}}) {
                lif_names_.push_back(p + n);
                lif_sizes_.push_back(s);
            }
        }
        lif_names_.push_back("head");
        lif_sizes_.push_back(c.dim);
    }
    if (sparse_inputs()) {  // the layers whose inputs come out of a ReLU or a GELU
        for (int i = 1; i <= E; ++i) add_sparse_columns(embed_[i]);
        for (BlockWeights& w : blocks_) {
            add_sparse_columns(w.proj);
            add_sparse_columns(w.fc2);
        }
    }
    for (const Layer& L : embed_) {
        max_in_ = std::max(max_in_, L.in);
        max_out_ = std::max(max_out_, L.panels64 * kPanel64);
    }
    for (const BlockWeights& w : blocks_) {
        for (const Layer* L : {&w.Wu, &w.Wh, &w.proj, &w.fc1, &w.fc2}) {
            max_in_ = std::max(max_in_, L->in);
            max_out_ = std::max(max_out_, L->panels64 * kPanel64);
        }
    }
    max_in_ = std::max(max_in_, head_.in);
}

bool Engine::sparse_inputs() const {
    return options_.int8 && options_.sparse_inputs && !config_.spiking && table_->i8_sparse != nullptr;
}

std::size_t Engine::weight_bytes() const {
    std::size_t total = head_.weight_bytes();
    for (const Layer& L : embed_) total += L.weight_bytes();
    for (const BlockWeights& w : blocks_) {
        for (const Layer* L : {&w.Wu, &w.Wh, &w.proj, &w.fc1, &w.fc2}) total += L->weight_bytes();
    }
    const std::size_t M = std::size_t(config_.memory_size);
    total += blocks_.size() * M * M * (options_.int8 ? sizeof(std::uint16_t) : sizeof(double));
    return total;
}

std::int64_t Engine::macs_per_frame() const {
    std::int64_t total = std::int64_t(head_.in) * head_.out;
    for (const Layer& L : embed_) total += std::int64_t(L.in) * L.out;
    for (const BlockWeights& w : blocks_) {
        for (const Layer* L : {&w.Wu, &w.Wh, &w.proj, &w.fc1, &w.fc2}) total += std::int64_t(L->in) * L->out;
        total += std::int64_t(config_.memory_size) * config_.memory_size + config_.memory_size;
    }
    return total;
}

// y[b] = W x[b] + bias for the batch, in the layer's format; spiking inputs take the add-only
// form when enabled. Scratch comes from each stream, so distinct streams never share memory.
void Engine::apply(const Layer& L, Scratch* const* sc, const float* const* x, float* const* y, int batch) const {
    const bool add_only = L.spike_input && options_.add_only;
    if (L.wide) {
        apply_wide(L, sc, x, y, batch, add_only);
        return;
    }
    if (add_only) {
        for (int b = 0; b < batch; ++b) {
            std::int32_t* active = sc[b]->active_.data();
            int n = 0;
            for (int i = 0; i < L.in; ++i) {
                if (x[b][i] != 0.0f) active[n++] = i;
            }
            if (L.int8) {
                const kernels::I8Columns m{L.w8.data(), L.scale.data(), L.bias.data(), L.in, L.out, L.panels};
                table_->i8_columns(m, active, n, y[b]);
            } else {
                table_->f32_columns(f32_view(L), active, n, y[b]);
            }
        }
        return;
    }
    if (!L.int8) {
        table_->f32_dense(f32_view(L), x, batch, y);
        return;
    }
    // int8 activations: spikes go in as they are (0/1, scale 1, so the dense and add-only
    // forms agree bit for bit); real inputs are quantized per call over their range (input_code).
    const std::int8_t* xq[kMaxLanes];
    float x_scale[kMaxLanes];
    std::int32_t x_zero[kMaxLanes];
    const kernels::I8Matrix m = i8_view(L);
    for (int b0 = 0; b0 < batch; b0 += kMaxLanes) {
        const int nb = std::min(kMaxLanes, batch - b0);
        for (int j = 0; j < nb; ++j) {
            std::int8_t* qv = sc[b0 + j]->q_.data();
            const float* xv = x[b0 + j];
            x_zero[j] = 0;
            x_scale[j] = 1.0f;
            if (L.spike_input) {
                for (int i = 0; i < L.in; ++i) qv[i] = xv[i] != 0.0f ? 1 : 0;
            } else {
                float lo, hi;
                table_->minmax(xv, L.in, &lo, &hi);
                const InputCode code = input_code(lo, hi, L.in4);
                if (code.inv > 0.0f) {
                    table_->quantize(xv, L.in, code.inv, code.zero, qv);
                    x_scale[j] = code.scale;
                    x_zero[j] = code.zero;
                } else {
                    std::memset(qv, 0, std::size_t(L.in));
                }
            }
            std::memset(qv + L.in, 0, std::size_t(L.in4 - L.in));
            xq[j] = qv;
        }
        // One lane whose codes are at most half nonzero: the sparse product reads fewer weights than
        // the dense one and costs less (measured break-even: about 60%), with the same bits. Several
        // lanes share one dense read of the weights instead (frames of a push, or streams, together).
        if (batch == 1 && !L.w_sparse.empty()) {
            const kernels::I8Sparse sparse{L.w_sparse.data(), L.sparse_scale.data(), L.sparse_bias.data(), L.in, L.out,
                                           L.blocks};
            if (table_->i8_sparse(sparse, xq[0], x_zero[0], x_scale[0], L.in / 2, sc[0]->sparse_index_.data(),
                                  sc[0]->sparse_value_.data(), y[0])) {
                return;
            }
        }
        table_->i8_dense(m, xq, x_scale, x_zero, nb, y + b0);
    }
}

void Engine::apply_wide(const Layer& L, Scratch* const* scratch, const float* const* x, float* const* y, int batch,
                        bool add_only) const {
    // y = float(W x + b) with float64 weights and sums: the only rounding to float32 is the last.
    constexpr int P = kPanel64;
    for (int b = 0; b < batch; ++b) {
        Scratch& sc = *scratch[b];
        double* acc = sc.y64_.data();
        if (add_only) {  // spikes: the sum of the columns of the inputs that fired, one chain per output
            std::int32_t* active = sc.active_.data();
            int n = 0;
            for (int i = 0; i < L.in; ++i) {
                if (x[b][i] != 0.0f) active[n++] = i;
            }
            for (int p = 0; p < L.panels64; ++p) {
                double sum[P] = {};
                const double* w = L.w64.data() + std::size_t(p) * L.in * P;
                for (int a = 0; a < n; ++a) {
                    const double* col = w + std::size_t(active[a]) * P;
                    for (int l = 0; l < P; ++l) sum[l] += col[l];
                }
                std::memcpy(acc + p * P, sum, sizeof(sum));
            }
        } else {
            double* xd = sc.x64_.data();
            for (int i = 0; i < L.in; ++i) xd[i] = double(x[b][i]);
            const double* xs[1] = {xd};
            double* ys[1] = {acc};
            table_->f64_dense(kernels::F64Matrix{L.w64.data(), L.in, L.out, L.panels64}, xs, 1, ys);
        }
        for (int o = 0; o < L.out; ++o) y[b][o] = float(acc[o] + L.bias64[o]);
    }
}

namespace {

// LIF update of step.py's _lif / lif_update, float32 step by step:
//   h = v + (x - v) / tau; s = (h - v_th >= 0); v = s ? 0 : h   (only where `valid`).
// Spikes go to `spikes` as 0/1 floats; returns the number of spikes.
LMU_ALWAYS_INLINE int lif(const float* x, float* v, float* spikes, int n, float tau, float threshold) {
    int fired = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - v[i];
        const float h = v[i] + diff / tau;
        const bool s = (h - threshold) >= 0.0f;
        spikes[i] = s ? 1.0f : 0.0f;
        v[i] = s ? 0.0f : h;
        fired += s;
    }
    return fired;
}

LMU_ALWAYS_INLINE void affine(const Affine& a, const float* x, float* y, int n) {
    if (a.wide) {  // float64, rounded once (exact.batch_norm)
        for (int i = 0; i < n; ++i) {
            const double scaled = double(x[i]) * a.scale64[i];
            y[i] = float(scaled + a.shift64[i]);
        }
        return;
    }
    for (int i = 0; i < n; ++i) {
        const float scaled = x[i] * a.scale[i];
        y[i] = scaled + a.shift[i];
    }
}

inline void shift_in(std::vector<float>& window, const float* x, int cin) {
    std::memmove(window.data(), window.data() + cin, (window.size() - std::size_t(cin)) * sizeof(float));
    std::memcpy(window.data() + window.size() - std::size_t(cin), x, std::size_t(cin) * sizeof(float));
}

}  // namespace

void Engine::step(Stream* const* s, const float* const* frames, int batch) const {
    Scratch* x[kMaxLanes];
    for (int b0 = 0; b0 < batch; b0 += kMaxLanes) {
        const int nb = std::min(kMaxLanes, batch - b0);
        for (int j = 0; j < nb; ++j) x[j] = &s[b0 + j]->lanes_[0];
        step_lanes(s + b0, x, frames + b0, nb, false);
    }
}

void Engine::step_frames(Stream& stream, const float* frames, int n) const {
    const std::size_t n_mels = std::size_t(config_.n_mels);
    Stream* s[kMaxLanes];
    Scratch* x[kMaxLanes];
    const float* f[kMaxLanes];
    const int lanes = int(stream.lanes_.size());
    for (int f0 = 0; f0 < n; f0 += lanes) {
        const int nb = std::min(lanes, n - f0);
        for (int j = 0; j < nb; ++j) {
            s[j] = &stream;
            x[j] = &stream.lanes_[j];
            f[j] = frames + std::size_t(f0 + j) * n_mels;
        }
        step_lanes(s, x, f, nb, true);
    }
}

// One step per lane. Lanes of distinct streams run side by side; lanes of one stream
// (one_stream) are its consecutive frames: every product runs on all of them at once (each
// weight read once per few frames), and whatever carries state from frame to frame (the
// convolution windows, the Legendre memory, LIF membranes, the running mean) is updated lane
// after lane, in frame order, so each lane computes exactly what stepping frame by frame does.
LMU_X86_CLONES void Engine::step_lanes(Stream* const* S, Scratch* const* X, const float* const* frames, int nb,
                                       bool one_stream) const {
    const ModelConfig& c = config_;
    const int E = c.embed_convs, C = c.dim, k = c.kernel_size, pad = c.pad();
    const float tau = float(c.lif_tau), th = float(c.lif_threshold);
    const float* xin[kMaxLanes];
    float* yout[kMaxLanes];
    // A window as this lane saw it: later lanes of the same stream move the stream's window on,
    // so each lane then keeps its own copy.
    const bool copies = one_stream && nb > 1;
    auto window = [&](int j, int i) -> const float* {
        return copies ? X[j]->windows_[i].data() : S[j]->windows_[i].data();
    };
    auto keep_window = [&](int j, int i) {
        if (copies) X[j]->windows_[i] = S[j]->windows_[i];
    };
    for (int j = 0; j < nb; ++j) {
        Stream& st = *S[j];
        Scratch& sc = *X[j];
        const bool padding = frames[j] == nullptr;
        if (!padding) ++st.n_real_;
        for (int i = 0; i <= E; ++i) {
            const std::int64_t index = st.t_ - std::int64_t(pad) * (i + 1);
            sc.valid_[i] = index >= 0 && index < st.n_real_;
        }
        ++st.t_;
        shift_in(st.windows_[0], padding ? st.zeros_.data() : frames[j], c.n_mels);
        keep_window(j, 0);
    }
    // patch embedding
    for (int i = 0; i < E; ++i) {
        for (int j = 0; j < nb; ++j) {
            xin[j] = window(j, i);
            yout[j] = X[j]->y_.data();
        }
        apply(embed_[i], X, xin, yout, nb);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            const bool valid = sc.valid_[i];
            float* y = sc.y_.data();
            if (!valid) std::fill(y, y + C, 0.0f);
            float* next = sc.feat_.data();  // the next layer's input frame
            if (fold_embed_bn_) {  // BN_i without its shift (the next convolution's bias holds it)
                const Affine& bn = embed_bn_[i];
                const float* fill = window_fill_[i + 1].data();
                for (int o = 0; o < C; ++o) next[o] = valid ? relu(y[o]) * bn.scale[o] : fill[o];
            } else if (!c.spiking) {
                const Affine& bn = embed_bn_[i];
                if (valid) {
                    for (int o = 0; o < C; ++o) {
                        const float scaled = relu(y[o]) * bn.scale[o];
                        next[o] = scaled + bn.shift[o];
                    }
                } else {
                    std::fill(next, next + C, 0.0f);
                }
            } else {
                const float* lif_x = y;
                if (i == E - 1) {
                    affine(embed_bn_[0], y, sc.lif_in_.data(), C);
                    lif_x = sc.lif_in_.data();
                    // y waits `pad` frames in a delay line to meet the rpe's output
                    if (pad > 0) {
                        std::memcpy(sc.y_last_.data(), st.delay_.data(), std::size_t(C) * sizeof(float));
                        shift_in(st.delay_, y, C);
                    } else {
                        std::memcpy(sc.y_last_.data(), y, std::size_t(C) * sizeof(float));
                    }
                }
                if (valid) {
                    const int fired = lif(lif_x, st.embed_v_[i].data(), next, C, tau, th);
                    st.spikes_[i] += fired;
                    st.neuron_frames_[i] += C;
                    if (st.recording_) {
                        auto& log = st.spike_log_[i];
                        for (int o = 0; o < C; ++o) log.push_back(next[o] != 0.0f);
                    }
                } else {
                    std::fill(next, next + C, 0.0f);
                }
            }
            shift_in(st.windows_[i + 1], next, C);
            keep_window(j, i + 1);
        }
    }
    // the residual "rpe" convolution, then z
    for (int j = 0; j < nb; ++j) {
        xin[j] = window(j, E);
        yout[j] = X[j]->y_.data();
    }
    apply(embed_[E], X, xin, yout, nb);
    Stream* ready[kMaxLanes];
    Scratch* ready_x[kMaxLanes];
    int n_ready = 0;
    for (int j = 0; j < nb; ++j) {
        Scratch& sc = *X[j];
        if (!sc.valid_[E]) continue;
        const float* r = sc.y_.data();
        const float* base = c.spiking ? sc.y_last_.data() : window(j, E) + std::size_t(k - 1 - pad) * C;
        if (fold_embed_bn_) {  // the window lacks BN's shift, which the residual needs (the same bits)
            const float* shift = embed_bn_[E - 1].shift.data();
            for (int o = 0; o < C; ++o) sc.y_last_[o] = base[o] + shift[o];
            base = sc.y_last_.data();
        }
        for (int o = 0; o < C; ++o) sc.z_[o] = base[o] + r[o];
        ready[n_ready] = S[j];
        ready_x[n_ready++] = &sc;
    }
    if (n_ready > 0) run_blocks(ready, ready_x, n_ready, one_stream);
}

void Engine::memory_step(Stream* const* S, Scratch* const* X, int nb, int block, bool one_stream) const {
    // m_t = A m_{t-1} + B u_t: float64 with float32 weights (as step.py); with int8 weights, float32
    // sums of a float16 A.
    if (one_stream && nb > 1) {  // consecutive frames of one stream: each needs the last one's memory
        for (int j = 0; j < nb; ++j) memory_step(S + j, X + j, 1, block, false);
        return;
    }
    const int M = config_.memory_size;
    if (!options_.int8) {
        const double* x[kMaxLanes] = {};
        double* y[kMaxLanes] = {};
        for (int j = 0; j < nb; ++j) {
            x[j] = S[j]->m_[block].data();
            y[j] = X[j]->m_next_.data();
        }
        const kernels::F64Matrix A{A64_.data(), M, M, panels_for(M, kPanel64)};
        table_->f64_dense(A, x, nb, y);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            const double u = double(sc.u_[0]);
            for (int i = 0; i < M; ++i) {
                const double driven = u * B64_[i];
                st.m_[block][i] = sc.m_next_[i] + driven;
                sc.m32_[i] = float(st.m_[block][i]);
            }
        }
        return;
    }
    const float* x[kMaxLanes] = {};
    float* y[kMaxLanes] = {};
    for (int j = 0; j < nb; ++j) {
        Stream& st = *S[j];
        Scratch& sc = *X[j];
        for (int i = 0; i < M; ++i) sc.m32_[i] = float(st.m_[block][i]);
        x[j] = sc.m32_.data();
        y[j] = sc.tmp_.data();
    }
    const kernels::F16Matrix A{A16_.data(), zero_bias_.data(), M, M, panels_for(M, kPanel)};
    table_->f16_dense(A, x, nb, y);
    for (int j = 0; j < nb; ++j) {
        Stream& st = *S[j];
        Scratch& sc = *X[j];
        const float u = sc.u_[0];
        for (int i = 0; i < M; ++i) {
            const float driven = u * B32_[i];
            sc.m32_[i] = sc.tmp_[i] + driven;
            st.m_[block][i] = sc.m32_[i];
        }
    }
}

LMU_X86_CLONES void Engine::run_blocks(Stream* const* S, Scratch* const* X, int nb, bool one_stream) const {
    const ModelConfig& c = config_;
    const int C = c.dim, M = c.memory_size, H = c.hidden(), K = c.n_classes, E = c.embed_convs;
    const float tau = float(c.lif_tau), th = float(c.lif_threshold), th_in = float(c.lmu_input_threshold);
    const float* xin[kMaxLanes];
    float* yout[kMaxLanes];
    auto run = [&](const Layer& L, std::vector<float> Scratch::*in, std::vector<float> Scratch::*out) {
        for (int j = 0; j < nb; ++j) {
            xin[j] = (X[j]->*in).data();
            yout[j] = (X[j]->*out).data();
        }
        apply(L, X, xin, yout, nb);
    };
    auto spike = [&](Stream& st, int layer, const float* x, float* v, float* out, int n, float threshold) {
        const int fired = lif(x, v, out, n, tau, threshold);
        st.spikes_[layer] += fired;
        st.neuron_frames_[layer] += n;
        if (st.recording_) {
            auto& log = st.spike_log_[layer];
            for (int o = 0; o < n; ++o) log.push_back(out[o] != 0.0f);
        }
    };
    for (int b = 0; b < c.depth; ++b) {
        const BlockWeights& w = blocks_[b];
        const int lif0 = E + 6 * b;  // this block's first LIF layer in lif_names_
        if (!c.spiking) {
            run(w.Wu, &Scratch::z_, &Scratch::u_);
            for (int j = 0; j < nb; ++j) X[j]->u_[0] = relu(X[j]->u_[0]);
            memory_step(S, X, nb, b, one_stream);
            for (int j = 0; j < nb; ++j) {
                Scratch& sc = *X[j];
                std::memcpy(sc.hin_.data(), sc.m32_.data(), std::size_t(M) * sizeof(float));
                std::memcpy(sc.hin_.data() + M, sc.z_.data(), std::size_t(C) * sizeof(float));
            }
            if (w.split_h) {
                run(w.Wh_m, &Scratch::m32_, &Scratch::h_);
                run(w.Wh_z, &Scratch::z_, &Scratch::tmp_);
                for (int j = 0; j < nb; ++j) {
                    float* h = X[j]->h_.data();
                    const float* t = X[j]->tmp_.data();
                    for (int o = 0; o < C; ++o) h[o] = relu(h[o] + t[o]);
                }
            } else {
                run(w.Wh, &Scratch::hin_, &Scratch::h_);
                for (int j = 0; j < nb; ++j) {
                    float* h = X[j]->h_.data();
                    for (int o = 0; o < C; ++o) h[o] = relu(h[o]);
                }
            }
            run(w.proj, &Scratch::h_, &Scratch::tmp_);
            for (int j = 0; j < nb; ++j) {
                Scratch& sc = *X[j];
                for (int o = 0; o < C; ++o) sc.z_[o] += sc.tmp_[o];
            }
            run(w.fc1, &Scratch::z_, &Scratch::f_);
            for (int j = 0; j < nb; ++j) {
                table_->gelu(X[j]->f_.data(), H);
            }
            run(w.fc2, &Scratch::f_, &Scratch::tmp_);
            for (int j = 0; j < nb; ++j) {
                Scratch& sc = *X[j];
                for (int o = 0; o < C; ++o) sc.z_[o] += relu(sc.tmp_[o]);
            }
            continue;
        }
        // spiking block: s = LIF_0.5(BN(z)); u = LIF(W_u s); m = A m + B u; h = LIF(W_h [LIF(BN(m)); s]) ...
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            affine(w.in_bn, sc.z_.data(), sc.lif_in_.data(), C);
            spike(st, lif0, sc.lif_in_.data(), st.bs_[b].v_in.data(), sc.hin_.data() + M, C, th_in);
        }
        for (int j = 0; j < nb; ++j) {
            xin[j] = X[j]->hin_.data() + M;
            yout[j] = X[j]->tmp_.data();
        }
        apply(w.Wu, X, xin, yout, nb);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            spike(st, lif0 + 1, sc.tmp_.data(), st.bs_[b].v_u.data(), sc.u_.data(), 1, th);
        }
        memory_step(S, X, nb, b, one_stream);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            affine(w.m_bn, sc.m32_.data(), sc.m32_.data(), M);
            spike(st, lif0 + 2, sc.m32_.data(), st.bs_[b].v_m.data(), sc.hin_.data(), M, th);
        }
        run(w.Wh, &Scratch::hin_, &Scratch::tmp_);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            spike(st, lif0 + 3, sc.tmp_.data(), st.bs_[b].v_h.data(), sc.h_.data(), C, th);
        }
        run(w.proj, &Scratch::h_, &Scratch::tmp_);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            for (int o = 0; o < C; ++o) sc.z_[o] += sc.tmp_[o];
            affine(w.fc1_bn, sc.z_.data(), sc.lif_in_.data(), C);
            spike(st, lif0 + 4, sc.lif_in_.data(), st.bs_[b].v_fc1.data(), sc.h_.data(), C, th);
        }
        run(w.fc1, &Scratch::h_, &Scratch::f_);
        for (int j = 0; j < nb; ++j) {
            Stream& st = *S[j];
            Scratch& sc = *X[j];
            spike(st, lif0 + 5, sc.f_.data(), st.bs_[b].v_fc2.data(), sc.f2_.data(), H, th);
        }
        run(w.fc2, &Scratch::f2_, &Scratch::tmp_);
        for (int j = 0; j < nb; ++j) {
            Scratch& sc = *X[j];
            for (int o = 0; o < C; ++o) sc.z_[o] += sc.tmp_[o];
        }
    }
    // head: per-frame logits, and logits of the running mean of the head's input
    for (int j = 0; j < nb; ++j) {
        Stream& st = *S[j];
        Scratch& sc = *X[j];
        if (c.spiking) {
            affine(head_bn_, sc.z_.data(), sc.lif_in_.data(), C);
            spike(st, int(lif_names_.size()) - 1, sc.lif_in_.data(), st.head_v_.data(), sc.feat_.data(), C, th);
        } else {
            std::memcpy(sc.feat_.data(), sc.z_.data(), std::size_t(C) * sizeof(float));
        }
        ++st.count_;
        for (int o = 0; o < C; ++o) {
            st.sum_[o] += sc.feat_[o];
            sc.mean_[o] = float(st.sum_[o] / double(st.count_));
        }
    }
    // The frame's logits and the running mean's share the head's weights (dense, float32 even
    // for spikes): one product reads them once for both, each column the same chain as alone.
    const float* head_x[2 * kMaxLanes];
    float* head_y[2 * kMaxLanes];
    for (int j = 0; j < nb; ++j) {
        head_x[2 * j] = X[j]->feat_.data();
        head_y[2 * j] = X[j]->logits_.data();
        head_x[2 * j + 1] = X[j]->mean_.data();
        head_y[2 * j + 1] = X[j]->running_.data();
    }
    table_->f32_dense(f32_view(head_), head_x, 2 * nb, head_y);
    for (int j = 0; j < nb; ++j) {
        Stream& st = *S[j];
        Scratch& sc = *X[j];
        st.outputs_.insert(st.outputs_.end(), sc.logits_.begin(), sc.logits_.begin() + K);
        std::copy(sc.running_.begin(), sc.running_.begin() + K, st.running_.begin());  // the last lane's stays
        ++st.emitted_;
    }
}

// ---------------------------------------------------------------------------------------------
Scratch::Scratch(const Engine& engine) {
    const ModelConfig& c = engine.config();
    const int C = c.dim, M = c.memory_size, H = c.hidden(), k = c.kernel_size, E = c.embed_convs;
    windows_.resize(E + 1);
    windows_[0].resize(std::size_t(k) * c.n_mels);
    for (int i = 1; i <= E; ++i) windows_[i].resize(std::size_t(k) * C);
    valid_.resize(E + 1);
    m_next_.resize(M);
    const int width = std::max({C, M + C, H, c.n_classes, c.n_mels});
    for (auto* v : {&y_, &y_last_, &z_, &u_, &m32_, &hin_, &h_, &tmp_, &f_, &f2_, &feat_, &mean_, &logits_, &lif_in_,
                    &running_}) {
        v->assign(std::size_t(width) + kernels::kPanel, 0.0f);
    }
    q_.resize(std::size_t(engine.max_in_) + 4);
    x64_.resize(std::size_t(engine.max_in_));
    y64_.resize(std::size_t(engine.max_out_));
    active_.resize(std::size_t(engine.max_in_));
    sparse_index_.resize(2 * (std::size_t(engine.max_in_) + 32));
    sparse_value_.resize(2 * (std::size_t(engine.max_in_) + 32));
}

Stream::Stream(const Engine& engine) : engine_(engine) {
    const ModelConfig& c = engine.config();
    const int C = c.dim, M = c.memory_size, H = c.hidden(), k = c.kernel_size, E = c.embed_convs;
    windows_.resize(E + 1);
    windows_[0].resize(std::size_t(k) * c.n_mels);
    for (int i = 1; i <= E; ++i) windows_[i].resize(std::size_t(k) * C);
    if (c.spiking) {
        embed_v_.assign(E, std::vector<float>(C));
        delay_.resize(std::size_t(std::max(c.pad(), 1)) * C);
        bs_.resize(c.depth);
        for (BlockState& b : bs_) {
            b.v_in.resize(C);
            b.v_u.resize(1);
            b.v_m.resize(M);
            b.v_h.resize(C);
            b.v_fc1.resize(C);
            b.v_fc2.resize(H);
        }
        head_v_.resize(C);
    }
    m_.assign(c.depth, std::vector<double>(M));
    zeros_.assign(c.n_mels, 0.0f);
    sum_.resize(C);
    running_.assign(c.n_classes, 0.0f);
    spikes_.assign(engine.lif_names().size(), 0);
    neuron_frames_.assign(engine.lif_names().size(), 0);
    spike_log_.resize(engine.lif_names().size());
    lanes_.emplace_back(engine);  // more when a push brings several frames (step_loop)
    fill_windows();
}

void Stream::fill_windows() {
    const int C = engine_.config().dim;
    std::fill(windows_[0].begin(), windows_[0].end(), 0.0f);
    for (std::size_t i = 1; i < windows_.size(); ++i) {
        const std::vector<float>& fill = engine_.window_fill(int(i));
        for (std::size_t at = 0; at < windows_[i].size(); at += std::size_t(C)) {
            std::copy(fill.begin(), fill.end(), windows_[i].begin() + std::ptrdiff_t(at));
        }
    }
}

void Stream::reset() {
    fbank_.reset();
    staged_.clear();
    t_ = n_real_ = emitted_ = count_ = 0;
    fill_windows();
    for (auto& v : embed_v_) std::fill(v.begin(), v.end(), 0.0f);
    std::fill(delay_.begin(), delay_.end(), 0.0f);
    for (auto& m : m_) std::fill(m.begin(), m.end(), 0.0);
    for (BlockState& b : bs_) {
        for (auto* v : {&b.v_in, &b.v_u, &b.v_m, &b.v_h, &b.v_fc1, &b.v_fc2}) std::fill(v->begin(), v->end(), 0.0f);
    }
    std::fill(head_v_.begin(), head_v_.end(), 0.0f);
    std::fill(sum_.begin(), sum_.end(), 0.0);
    std::fill(running_.begin(), running_.end(), 0.0f);
    std::fill(spikes_.begin(), spikes_.end(), 0);
    std::fill(neuron_frames_.begin(), neuron_frames_.end(), 0);
    for (auto& log : spike_log_) log.clear();
}

int Stream::step_loop(const float* frames, std::size_t n, std::vector<float>& out) {
    outputs_.clear();
    if (n > 1) {
        while (lanes_.size() < std::size_t(engine_.frame_lanes())) lanes_.emplace_back(engine_);
    }
    engine_.step_frames(*this, frames, int(n));
    const int K = engine_.config().n_classes;
    out.insert(out.end(), outputs_.begin(), outputs_.end());
    return int(outputs_.size() / std::size_t(K));
}

// Long pushes go through the frontend a slice at a time, so the features waiting for the
// model never exceed about 10 s worth, however much audio one call brings.
template <class Sample>
int Stream::push_samples(const Sample* samples, std::size_t n, std::vector<float>& out) {
    const std::size_t slice = std::size_t(engine_.frontend_config().sample_rate) * 10;
    const std::size_t n_mels = std::size_t(engine_.config().n_mels);
    int frames = 0;
    std::size_t done = 0;
    do {
        const std::size_t take = std::min(slice, n - done);
        staged_.clear();
        fbank_.push(engine_.fbank(), samples + done, take, staged_);
        frames += step_loop(staged_.data(), staged_.size() / n_mels, out);
        done += take;
    } while (done < n);
    return frames;
}

int Stream::push(const float* samples, std::size_t n, std::vector<float>& out) { return push_samples(samples, n, out); }

int Stream::push(const std::int16_t* samples, std::size_t n, std::vector<float>& out) {
    return push_samples(samples, n, out);
}

int Stream::push_features(const float* frames, std::size_t n, std::vector<float>& out) {
    return step_loop(frames, n, out);
}

int Stream::flush(std::vector<float>& out) {
    outputs_.clear();
    Stream* self = this;
    const float* padding = nullptr;
    for (int i = 0; i < engine_.config().lookahead(); ++i) engine_.step(&self, &padding, 1);
    out.insert(out.end(), outputs_.begin(), outputs_.end());
    const int n = int(outputs_.size() / std::size_t(engine_.config().n_classes));
    const std::vector<float> final_running = running_;
    const std::vector<std::uint64_t> spikes = spikes_, frames = neuron_frames_;
    std::vector<std::vector<std::uint8_t>> log;
    log.swap(spike_log_);
    reset();
    spike_log_.swap(log);  // recorded spikes stay until take_spikes()
    running_ = final_running;
    spikes_ = spikes;  // rates stay readable for the utterance just ended
    neuron_frames_ = frames;
    return n;
}

void Stream::record_spikes(bool on) {
    recording_ = on;
    if (!on) {
        for (auto& log : spike_log_) log.clear();
    }
}

std::vector<std::vector<std::uint8_t>> Stream::take_spikes() {
    std::vector<std::vector<std::uint8_t>> out(spike_log_.size());
    out.swap(spike_log_);
    spike_log_.resize(out.size());
    return out;
}

int Stream::frontend_push(const float* samples, std::size_t n) {
    staged_.clear();
    return fbank_.push(engine_.fbank(), samples, n, staged_);
}

int Stream::frontend_push(const std::int16_t* samples, std::size_t n) {
    staged_.clear();
    return fbank_.push(engine_.fbank(), samples, n, staged_);
}

const float* Stream::staged_frame(int i) const {
    return staged_.data() + std::size_t(i) * std::size_t(engine_.config().n_mels);
}

void Stream::take_outputs(std::vector<float>& out) {
    out.insert(out.end(), outputs_.begin(), outputs_.end());
    outputs_.clear();
}

void push_many(const Engine& engine, Stream* const* streams, const void* const* blocks, const std::size_t* lengths,
               const bool* int16, int count, std::vector<float>* outs) {
    std::vector<int> frames(count);
    int rounds = 0;
    for (int b = 0; b < count; ++b) {
        Stream& st = *streams[b];
        st.outputs_.clear();
        frames[b] = int16[b] ? st.frontend_push(static_cast<const std::int16_t*>(blocks[b]), lengths[b])
                             : st.frontend_push(static_cast<const float*>(blocks[b]), lengths[b]);
        rounds = std::max(rounds, frames[b]);
    }
    std::vector<Stream*> batch;
    std::vector<const float*> inputs;
    for (int r = 0; r < rounds; ++r) {
        batch.clear();
        inputs.clear();
        for (int b = 0; b < count; ++b) {
            if (frames[b] > r) {
                batch.push_back(streams[b]);
                inputs.push_back(streams[b]->staged_frame(r));
            }
        }
        engine.step(batch.data(), inputs.data(), int(batch.size()));
    }
    for (int b = 0; b < count; ++b) {
        streams[b]->take_outputs(outs[b]);
        streams[b]->clear_staged();
    }
}

}  // namespace lmustream

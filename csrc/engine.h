// The streaming engine: an LMUFormer / spiking LMUFormer loaded from a model artifact with its
// batch norms folded (Engine: immutable after load, shared by every stream), and the per-stream
// state that carries audio to logits frame by frame (Stream).
//
// The arithmetic is that of lmustream/stream/step.py (StepLMUFormer): the same folds (float32;
// float64 for a spiking model's affine maps, summed in float64 and rounded once before the
// thresholds, as lmustream/models/exact.py defines them),
// the same look-ahead (the output for frame t is emitted when frame t + D arrives; flush() pads
// like the parallel model), the Legendre memory accumulated in float64, LIF neurons updated
// exactly as lif_update, the running mean of the head's input since the last reset.
#pragma once

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "artifact.h"
#include "frontend.h"
#include "kernels/kernels.h"
#include "multiversion.h"

namespace lmustream {

// Bad input to a stream (wrong sizes, non-finite values); the bindings turn it into AudioError.
class InputError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct EngineOptions {
    bool int8 = false;           // int8 weights, per-output-channel scales
    std::string simd = "auto";   // "auto", "scalar", "avx2", "avx512", "neon"
    bool add_only = true;        // spiking models: accumulate the weight columns of active inputs
    int frame_lanes = 8;         // frames of one push stepped together (1: strictly one at a time)
    bool sparse_inputs = true;   // int8: skip the inputs whose codes mean zero where the path can (same bits)
};

// One folded linear map y = W x + b in the engine's weight format.
struct Layer {
    int in = 0, out = 0, panels = 0;
    bool spike_input = false;  // inputs are 0/1 spikes
    bool int8 = false;
    bool columns = false;      // int8 stored by column (add-only), else the dense layout
    std::vector<float> w32;    // float32 panels
    std::vector<float> bias;   // [panels * 16]
    std::vector<std::int8_t> w8;
    std::vector<float> scale;  // [panels * 16]
    std::vector<std::int32_t> rowsum;
    int in4 = 0;
    // int8 on real inputs that are mostly zero (after a ReLU or a GELU), where the SIMD path has a
    // sparse product: the same weights by input (kernels::I8Sparse), scale and bias [blocks * 64].
    int blocks = 0;
    std::vector<std::int8_t> w_sparse;
    std::vector<float> sparse_scale, sparse_bias;
    // float64 weights (spiking models with float32 weights): w64[panels64][in][8], bias64[panels64 * 8];
    // the sum is taken in float64 and rounded to float32 once
    bool wide = false;
    int panels64 = 0;
    std::vector<double> w64, bias64;
    std::size_t weight_bytes() const;
};

// Packs a dense row-major [out][in] float32 map (weights w, bias b) into the layout the
// primitives read: float32 panels, or int8 (per-output-channel scales; by column when the
// inputs are spikes and add_only is set).
Layer make_layer(int in, int out, const std::vector<float>& w, const std::vector<float>& b, bool int8,
                 bool spike_input, bool add_only);

// Adds to an int8 layer its weights by input (Layer::w_sparse) for the sparse product.
void add_sparse_columns(Layer& L);

// How one call's real-valued input becomes int8 codes: x ~ (q + zero) * scale, q in [-127, 127]
// (quantize with inv and zero; inv = 0: the input is all zero).
struct InputCode {
    float inv, scale;
    std::int32_t zero;
};
// The codes of an input whose values lie in [lo, hi], for a layer of in4 (padded) inputs.
InputCode input_code(float lo, float hi, int in4);

struct Affine {  // eval-mode batch norm: y = x * scale + shift
    std::vector<float> scale, shift;
    bool wide = false;  // computed in float64 (scale64, shift64) and rounded once (spiking models)
    std::vector<double> scale64, shift64;
};

struct BlockWeights {
    Layer Wu, Wh, proj, fc1, fc2;
    // int8 weights, non-spiking: W_h split at the memory / residual boundary of its input
    // [m; z], so each part gets its own activation scale (the two signals differ in range).
    bool split_h = false;
    Layer Wh_m, Wh_z;
    Affine in_bn, m_bn, fc1_bn;  // spiking only
};

class Stream;
class Engine;

constexpr int kMaxLanes = 64;  // lanes (streams, or frames of one stream) in one engine step

// The working buffers of one step of one lane (nothing here outlives the step).
struct Scratch {
    explicit Scratch(const Engine& engine);
    std::vector<std::vector<float>> windows_;  // the convolution windows as this lane saw them
    std::vector<char> valid_;  // per embedding layer: its output at this step is a real frame
    std::vector<float> y_, y_last_, z_, u_, m32_, hin_, h_, tmp_, f_, f2_, feat_, mean_, logits_, lif_in_, running_;
    std::vector<double> m_next_, x64_, y64_;
    std::vector<std::int8_t> q_;
    std::vector<std::int32_t> active_;
    std::vector<std::int32_t> sparse_index_;  // a sparse product's inputs: positive codes, then negative
    std::vector<std::uint8_t> sparse_value_;
};

void push_many(const Engine& engine, Stream* const* streams, const void* const* blocks, const std::size_t* lengths,
               const bool* int16, int count, std::vector<float>* outs);

class Engine {
  public:
    Engine(const Artifact& artifact, const EngineOptions& options);

    const ModelConfig& config() const { return config_; }
    const FrontendConfig& frontend_config() const { return frontend_config_; }
    const Fbank& fbank() const { return fbank_; }
    const std::vector<std::string>& labels() const { return labels_; }
    const char* simd() const { return table_->name; }
    bool int8() const { return options_.int8; }
    bool add_only() const { return options_.add_only; }
    int frame_lanes() const { return options_.frame_lanes; }
    std::size_t weight_bytes() const;          // bytes of weights one frame reads (dense)
    std::int64_t macs_per_frame() const;
    const std::vector<std::string>& lif_names() const { return lif_names_; }
    const std::vector<int>& lif_sizes() const { return lif_sizes_; }
    bool sparse_inputs() const;  // an int8 product skips zero inputs here
    // What a convolution window holds for a frame before the stream's start (embedding layer i's
    // input, i >= 1): zeros, or with int8 weights -shift of the batch norm before it (whose shift
    // the layer's bias holds), so that the frame still counts as zero.
    const std::vector<float>& window_fill(int i) const { return window_fill_[std::size_t(i)]; }

    // One step of every stream in `streams` (distinct, same engine): frames[b] is that stream's
    // next feature frame (n_mels floats), or nullptr for a padding step (flush). Outputs of
    // the frames that become valid are appended to each stream's output buffer.
    void step(Stream* const* streams, const float* const* frames, int batch) const;
    // n consecutive feature frames of one stream ([n, n_mels]): the same outputs as n steps,
    // with the products of up to options.frame_lanes frames computed together.
    void step_frames(Stream& stream, const float* frames, int n) const;

  private:
    friend class Stream;
    friend struct Scratch;
    ModelConfig config_;
    FrontendConfig frontend_config_;
    EngineOptions options_;
    std::vector<std::string> labels_;
    Fbank fbank_;
    const kernels::Table* table_;
    std::vector<Layer> embed_;  // embed_convs convolutions then the rpe convolution
    std::vector<Affine> embed_bn_;
    // int8, non-spiking: each embedding batch norm's shift (it follows a ReLU) moves into the next
    // convolution's bias, whose input is then scale * ReLU, mostly exact zeros (see Engine::Engine).
    bool fold_embed_bn_ = false;
    std::vector<std::vector<float>> window_fill_;
    std::vector<BlockWeights> blocks_;
    Affine head_bn_;
    Layer head_;
    std::vector<double> A64_, B64_;  // float64 memory (float32 weights)
    std::vector<std::uint16_t> A16_;            // float16 A, float32 sums (int8 weights)
    std::vector<float> B32_, zero_bias_;
    std::vector<std::string> lif_names_;
    std::vector<int> lif_sizes_;
    int max_in_ = 0, max_out_ = 0;

    void apply(const Layer& layer, Scratch* const* sc, const float* const* x, float* const* y, int batch) const;
    void apply_wide(const Layer& layer, Scratch* const* sc, const float* const* x, float* const* y, int batch,
                    bool add_only) const;
    LMU_X86_CLONES void step_lanes(Stream* const* s, Scratch* const* x, const float* const* frames, int nb,
                                   bool one_stream) const;
    void memory_step(Stream* const* s, Scratch* const* x, int nb, int block, bool one_stream) const;
    LMU_X86_CLONES void run_blocks(Stream* const* s, Scratch* const* x, int nb, bool one_stream) const;
};

class Stream {
  public:
    explicit Stream(const Engine& engine);

    // Audio in, per-frame logits out ([n, classes] appended to `out`); returns n.
    int push(const float* samples, std::size_t n, std::vector<float>& out);
    int push(const std::int16_t* samples, std::size_t n, std::vector<float>& out);
    // Feature frames in ([n, n_mels] log-mel, normalized), per-frame logits out.
    int push_features(const float* frames, std::size_t n, std::vector<float>& out);
    // End of utterance: the look-ahead's padding steps; then the stream starts afresh (the
    // running mean of the finished utterance stays readable until the next frame).
    int flush(std::vector<float>& out);
    void reset();

    const std::vector<float>& running() const { return running_; }
    std::int64_t frames_emitted() const { return emitted_; }
    std::size_t pending_samples() const { return fbank_.pending(); }
    // Spikes / neuron-frames per LIF layer since the last reset (spiking models).
    const std::vector<std::uint64_t>& spike_counts() const { return spikes_; }
    const std::vector<std::uint64_t>& neuron_frames() const { return neuron_frames_; }
    void record_spikes(bool on);
    // The recorded spikes per LIF layer ([frames, size] 0/1 bytes), cleared by this call.
    std::vector<std::vector<std::uint8_t>> take_spikes();

    std::mutex& busy() { return busy_; }
    const Engine& engine() const { return engine_; }
    // Frames the frontend completed that the model has not stepped yet (push_many uses them).
    int frontend_push(const float* samples, std::size_t n);
    int frontend_push(const std::int16_t* samples, std::size_t n);
    const float* staged_frame(int i) const;
    void clear_staged() { staged_.clear(); }
    void take_outputs(std::vector<float>& out);

  private:
    void fill_windows();  // every convolution window as before the stream's first frame
    friend class Engine;
    friend void push_many(const Engine&, Stream* const*, const void* const*, const std::size_t*, const bool*, int,
                          std::vector<float>*);
    const Engine& engine_;
    FbankStream fbank_;
    std::mutex busy_;
    std::vector<float> staged_;  // frontend frames waiting for the model
    std::int64_t t_ = 0, n_real_ = 0, emitted_ = 0, count_ = 0;
    std::vector<std::vector<float>> windows_;  // per embedding conv: the last k inputs [k][Cin]
    std::vector<std::vector<float>> embed_v_;  // spiking: LIF membranes of the embedding
    std::vector<float> delay_;                 // spiking: the embedding output's delay line
    std::vector<std::vector<double>> m_;       // per block: Legendre memory
    struct BlockState {
        std::vector<float> v_in, v_u, v_m, v_h, v_fc1, v_fc2;
    };
    std::vector<BlockState> bs_;
    std::vector<float> head_v_;
    std::vector<double> sum_;
    std::vector<float> running_;
    std::vector<float> outputs_;  // per-frame logits of this call
    std::vector<std::uint64_t> spikes_, neuron_frames_;
    bool recording_ = false;
    std::vector<std::vector<std::uint8_t>> spike_log_;
    std::vector<Scratch> lanes_;  // one, or frame_lanes once a push brings several frames
    std::vector<float> zeros_;
    int step_loop(const float* frames, std::size_t n, std::vector<float>& out);
    template <class Sample>
    int push_samples(const Sample* samples, std::size_t n, std::vector<float>& out);
};

// Runs many streams of one engine forward together: every stream's frontend first, then the
// model over all of them, one batched step per frame index. blocks[b] has `lengths[b]`
// samples (float32 when `int16` is false). Outputs go to outs[b].
void push_many(const Engine& engine, Stream* const* streams, const void* const* blocks, const std::size_t* lengths,
               const bool* int16, int count, std::vector<float>* outs);

}  // namespace lmustream

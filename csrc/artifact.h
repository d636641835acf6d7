// Reader of the single-file model artifact (docs/model-format.md): a safetensors file whose
// __metadata__ entry "lmustream" holds the JSON header (config, labels, frontend).
//
// The file is untrusted input. Every size, offset and count is checked against the bytes
// actually present before it is used; anything truncated, corrupt, oversized or inconsistent
// with the header's config raises ArtifactError with a message naming the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace lmustream {

class ArtifactError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// LMUFormerConfig (lmustream/models/lmuformer.py), the fields the kernel needs.
struct ModelConfig {
    int n_mels = 128;
    int n_classes = 35;
    int dim = 256;
    int depth = 1;
    int mlp_ratio = 4;
    int memory_size = 256;
    double theta = 128.0;
    int embed_convs = 4;
    int kernel_size = 3;
    bool causal = false;
    bool spiking = false;
    double lif_tau = 2.0;
    double lif_threshold = 1.0;
    double lmu_input_threshold = 0.5;

    int pad() const { return causal ? 0 : kernel_size / 2; }  // frames of delay per embedding conv
    int lookahead() const { return (embed_convs + 1) * pad(); }
    int hidden() const { return mlp_ratio * dim; }
};

// FbankConfig (lmustream/audio/features.py).
struct FrontendConfig {
    int sample_rate = 16000;
    double frame_length_ms = 25.0;
    double frame_shift_ms = 10.0;
    int n_mels = 128;
    double low_freq = 20.0;
    double high_freq = 0.0;
    double preemphasis = 0.97;
    bool remove_dc_offset = true;
    std::string window = "hanning";
    bool round_to_power_of_two = true;
    double log_floor = 1.1920928955078125e-07;
    double mean = -6.845978;
    double std = 5.5654526;

    int window_length() const;  // samples per frame, truncated as Kaldi does
    int hop_length() const;
    int n_fft() const;
    double upper_freq() const;
};

struct Tensor {
    std::vector<std::int64_t> shape;
    std::vector<float> values;  // converted to float32 (F32, F64, F16, BF16 accepted)
};

struct Artifact {
    ModelConfig config;
    FrontendConfig frontend;
    std::vector<std::string> labels;
    std::map<std::string, Tensor> tensors;  // the model's state dict (int64 counters skipped)
};

// Limits that keep a hostile header from asking for absurd allocations. The model's own
// sizes are bounded by the tensors present in the file; these bound what is derived.
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;
constexpr int kMaxMemorySize = 4096;   // the Legendre A is M x M float64
constexpr int kMaxWidth = 1 << 16;     // n_mels, dim, hidden, classes
constexpr int kMaxDepth = 64;
constexpr int kMaxKernelSize = 63;
constexpr int kMaxSampleRate = 768000;
constexpr int kMaxFftSize = 1 << 16;
constexpr int kMaxLabelBytes = 1 << 12;

// Parse an artifact held in memory (`name` is used in messages only).
Artifact parse_artifact(const std::uint8_t* data, std::size_t size, const std::string& name);

// Read and parse a file; errors name the path.
Artifact read_artifact(const std::string& path);

// Checks config/frontend values the way the Python dataclasses do (ArtifactError otherwise).
void validate_config(const ModelConfig& c);
void validate_frontend(const FrontendConfig& f);

}  // namespace lmustream

#include "artifact.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "json.h"

namespace lmustream {
namespace {

constexpr const char* kFormatName = "lmustream-model";
constexpr int kFormatVersion = 1;
constexpr double kIntegralTolerance = 1e-6;

[[noreturn]] void bad(const std::string& name, const std::string& why) {
    throw ArtifactError(name + ": " + why);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::uint64_t read_u64_le(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const int exponent = (h >> 10) & 0x1F;
    const std::uint32_t mantissa = h & 0x3FFu;
    float magnitude;
    if (exponent == 0) magnitude = std::ldexp(float(mantissa), -24);
    else if (exponent == 31) magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN() : INFINITY;
    else magnitude = std::ldexp(float(mantissa | 0x400u), exponent - 25);
    return sign ? -magnitude : magnitude;
}

// --- typed access to the JSON header, each failure naming the field ---------------------
struct Fields {
    const Json& object;
    std::string where;  // e.g. "config"
    std::string file;

    const Json* get(const char* key) const { return object.find(key); }

    int integer(const char* key, int fallback, bool required) const {
        const Json* v = get(key);
        if (!v) {
            if (required) bad(file, where + " lacks '" + key + "'");
            return fallback;
        }
        if (!v->is_number() || v->number != std::floor(v->number) ||
            std::fabs(v->number) > double(std::numeric_limits<int>::max())) {
            bad(file, where + "." + key + " must be an integer, got " + json_type_name(*v));
        }
        return int(v->number);
    }
    double real(const char* key, double fallback, bool required) const {
        const Json* v = get(key);
        if (!v) {
            if (required) bad(file, where + " lacks '" + key + "'");
            return fallback;
        }
        if (!v->is_number()) bad(file, where + "." + key + " must be a number, got " + json_type_name(*v));
        return v->number;
    }
    bool boolean(const char* key, bool fallback, bool required) const {
        const Json* v = get(key);
        if (!v) {
            if (required) bad(file, where + " lacks '" + key + "'");
            return fallback;
        }
        if (!v->is_bool()) bad(file, where + "." + key + " must be true or false, got " + json_type_name(*v));
        return v->boolean;
    }
    std::string text(const char* key, const std::string& fallback) const {
        const Json* v = get(key);
        if (!v) return fallback;
        if (!v->is_string()) bad(file, where + "." + key + " must be a string, got " + json_type_name(*v));
        return v->text;
    }
    void only(const std::set<std::string>& known) const {
        for (const auto& member : object.members) {
            if (!known.count(member.first)) bad(file, where + " has an unknown key '" + member.first + "'");
        }
    }
};

ModelConfig parse_config(const Json& json, const std::string& file) {
    if (!json.is_object()) bad(file, "header 'config' must be an object");
    Fields f{json, "config", file};
    f.only({"n_mels", "n_classes", "dim", "depth", "mlp_ratio", "memory_size", "theta", "embed_convs",
            "kernel_size", "causal", "spiking", "lif_tau", "lif_threshold", "lmu_input_threshold", "frames"});
    ModelConfig c;  // absent keys take LMUFormerConfig's defaults, as from_dict does
    c.n_mels = f.integer("n_mels", c.n_mels, false);
    c.n_classes = f.integer("n_classes", c.n_classes, false);
    c.dim = f.integer("dim", c.dim, false);
    c.depth = f.integer("depth", c.depth, false);
    c.mlp_ratio = f.integer("mlp_ratio", c.mlp_ratio, false);
    c.memory_size = f.integer("memory_size", c.memory_size, false);
    c.theta = f.real("theta", c.theta, false);
    c.embed_convs = f.integer("embed_convs", c.embed_convs, false);
    c.kernel_size = f.integer("kernel_size", c.kernel_size, false);
    c.causal = f.boolean("causal", c.causal, false);
    c.spiking = f.boolean("spiking", c.spiking, false);
    c.lif_tau = f.real("lif_tau", c.lif_tau, false);
    c.lif_threshold = f.real("lif_threshold", c.lif_threshold, false);
    c.lmu_input_threshold = f.real("lmu_input_threshold", c.lmu_input_threshold, false);
    f.integer("frames", 128, false);  // training clip length: validated, unused here
    try {
        validate_config(c);
    } catch (const ArtifactError& e) {
        bad(file, e.what());
    }
    return c;
}

FrontendConfig parse_frontend(const Json& json, const std::string& file) {
    if (!json.is_object()) bad(file, "header 'frontend' must be an object");
    Fields f{json, "frontend", file};
    f.only({"sample_rate", "frame_length_ms", "frame_shift_ms", "n_mels", "low_freq", "high_freq", "preemphasis",
            "remove_dc_offset", "window", "round_to_power_of_two", "log_floor", "mean", "std"});
    FrontendConfig c;
    c.sample_rate = f.integer("sample_rate", c.sample_rate, false);
    c.frame_length_ms = f.real("frame_length_ms", c.frame_length_ms, false);
    c.frame_shift_ms = f.real("frame_shift_ms", c.frame_shift_ms, false);
    c.n_mels = f.integer("n_mels", c.n_mels, false);
    c.low_freq = f.real("low_freq", c.low_freq, false);
    c.high_freq = f.real("high_freq", c.high_freq, false);
    c.preemphasis = f.real("preemphasis", c.preemphasis, false);
    c.remove_dc_offset = f.boolean("remove_dc_offset", c.remove_dc_offset, false);
    c.window = f.text("window", c.window);
    c.round_to_power_of_two = f.boolean("round_to_power_of_two", c.round_to_power_of_two, false);
    c.log_floor = f.real("log_floor", c.log_floor, false);
    c.mean = f.real("mean", c.mean, false);
    c.std = f.real("std", c.std, false);
    try {
        validate_frontend(c);
    } catch (const ArtifactError& e) {
        bad(file, e.what());
    }
    return c;
}

// The state dict an LMUFormer of this config has (lmustream/models/lmuformer.py), float tensors only.
std::map<std::string, std::vector<std::int64_t>> expected_tensors(const ModelConfig& c) {
    std::map<std::string, std::vector<std::int64_t>> t;
    const std::int64_t C = c.dim, M = c.memory_size, H = c.hidden(), k = c.kernel_size;
    auto bn = [&](const std::string& p, std::int64_t n) {
        for (const char* s : {"weight", "bias", "running_mean", "running_var"}) t[p + "." + s] = {n};
    };
    for (int i = 0; i < c.embed_convs; ++i) {
        t["embed.convs." + std::to_string(i) + ".weight"] = {C, i == 0 ? c.n_mels : C, k};
        bn("embed.bns." + std::to_string(i), C);
    }
    t["embed.rpe.weight"] = {C, C, k};
    for (int b = 0; b < c.depth; ++b) {
        const std::string p = "blocks." + std::to_string(b) + ".";
        t[p + "lmu.W_u.weight"] = {1, C};
        t[p + "lmu.W_u.bias"] = {1};
        t[p + "lmu.W_h.weight"] = {C, M + C};
        t[p + "lmu.W_h.bias"] = {C};
        t[p + "lmu.proj.weight"] = {C, C, 1};
        t[p + "lmu.proj.bias"] = {C};
        bn(p + "lmu.proj_bn", C);
        t[p + "ffn.fc1.weight"] = {H, C, 1};
        t[p + "ffn.fc1.bias"] = {H};
        t[p + "ffn.fc2.weight"] = {C, H, 1};
        t[p + "ffn.fc2.bias"] = {C};
        if (c.spiking) {
            bn(p + "lmu.input_bn", C);
            bn(p + "lmu.bn_u", 1);
            bn(p + "lmu.bn_m", M);
            bn(p + "lmu.bn_h", C);
            bn(p + "ffn.fc1_bn", C);
            bn(p + "ffn.fc2_bn", H);
        } else {
            bn(p + "ffn.fc1_bn", H);
            bn(p + "ffn.fc2_bn", C);
        }
    }
    if (c.spiking) bn("head_bn", C);
    t["head.weight"] = {c.n_classes, C};
    t["head.bias"] = {c.n_classes};
    return t;
}

bool is_counter(const std::string& name) {
    const std::string suffix = ".num_batches_tracked";
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int ms_to_samples(int sample_rate, double ms) {
    const double exact = sample_rate * ms / 1000.0;
    const double nearest = std::round(exact);
    return std::fabs(exact - nearest) < kIntegralTolerance ? int(nearest) : int(exact);
}

int FrontendConfig::window_length() const { return ms_to_samples(sample_rate, frame_length_ms); }
int FrontendConfig::hop_length() const { return ms_to_samples(sample_rate, frame_shift_ms); }
int FrontendConfig::n_fft() const {
    const int n = window_length();
    if (!round_to_power_of_two) return n;
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}
double FrontendConfig::upper_freq() const { return high_freq > 0 ? high_freq : sample_rate / 2.0 + high_freq; }

void validate_config(const ModelConfig& c) {
    auto width = [](const char* name, int v, int hi) {
        if (v < 1 || v > hi) {
            throw ArtifactError(std::string("config.") + name + " must be an integer in [1, " + std::to_string(hi) +
                                "], got " + std::to_string(v));
        }
    };
    width("n_mels", c.n_mels, kMaxWidth);
    width("n_classes", c.n_classes, kMaxWidth);
    width("dim", c.dim, kMaxWidth);
    width("depth", c.depth, kMaxDepth);
    width("mlp_ratio", c.mlp_ratio, 64);
    width("memory_size", c.memory_size, kMaxMemorySize);
    width("embed_convs", c.embed_convs, 64);
    width("kernel_size", c.kernel_size, kMaxKernelSize);
    if (c.kernel_size % 2 == 0) throw ArtifactError("config.kernel_size must be odd, got " + std::to_string(c.kernel_size));
    if (std::int64_t(c.mlp_ratio) * c.dim > kMaxWidth) throw ArtifactError("config: mlp_ratio * dim is too large");
    if (!(c.theta >= 1e-3 && c.theta <= 1e9)) throw ArtifactError("config.theta must be in [0.001, 1e9] frames");
    for (auto [name, v] : {std::pair<const char*, double>{"theta", c.theta}, {"lif_tau", c.lif_tau},
                           {"lif_threshold", c.lif_threshold}, {"lmu_input_threshold", c.lmu_input_threshold}}) {
        if (!(std::isfinite(v) && v > 0)) {
            throw ArtifactError(std::string("config.") + name + " must be a positive finite number");
        }
    }
}

void validate_frontend(const FrontendConfig& f) {
    auto fail = [](const std::string& why) { throw ArtifactError("frontend: " + why); };
    if (f.sample_rate < 1 || f.sample_rate > kMaxSampleRate) fail("sample_rate must be in [1, 768000] Hz");
    if (!(std::isfinite(f.frame_length_ms) && f.frame_length_ms > 0 && f.frame_length_ms <= 10000)) {
        fail("frame_length_ms must be in (0, 10000]");
    }
    if (!(std::isfinite(f.frame_shift_ms) && f.frame_shift_ms > 0 && f.frame_shift_ms <= 10000)) {
        fail("frame_shift_ms must be in (0, 10000]");
    }
    if (f.n_mels < 1 || f.n_mels > kMaxWidth) fail("n_mels out of range");
    if (!(f.preemphasis >= 0.0 && f.preemphasis <= 1.0)) fail("preemphasis must be in [0, 1]");
    static const std::set<std::string> windows{"hanning", "hamming", "povey", "rectangular", "blackman"};
    if (!windows.count(f.window)) fail("unknown window '" + f.window + "'");
    if (!(f.log_floor > 0 && std::isfinite(f.log_floor))) fail("log_floor must be a positive finite number");
    if (!std::isfinite(f.mean)) fail("mean must be finite");
    if (!(f.std > 0 && std::isfinite(f.std))) fail("std must be a positive finite number");
    const double nyquist = f.sample_rate / 2.0;
    if (!(f.low_freq >= 0 && f.low_freq < nyquist)) fail("low_freq must be in [0, Nyquist)");
    if (!std::isfinite(f.high_freq)) fail("high_freq must be finite");
    if (f.window_length() < 2) fail("frame_length_ms gives fewer than 2 samples");
    if (f.hop_length() < 1) fail("frame_shift_ms gives fewer than 1 sample");
    if (f.n_fft() > kMaxFftSize) fail("the FFT size exceeds 65536");
    const double upper = f.upper_freq();
    if (!(f.low_freq < upper && upper <= nyquist)) fail("high_freq gives an upper edge outside (low_freq, Nyquist]");
}

Artifact parse_artifact(const std::uint8_t* data, std::size_t size, const std::string& name) {
    if (size < 8) bad(name, "truncated: " + std::to_string(size) + " bytes, fewer than the 8-byte header length");
    const std::uint64_t header_len = read_u64_le(data);
    if (header_len > kMaxHeaderBytes) bad(name, "header length " + std::to_string(header_len) + " is oversized");
    if (header_len > size - 8) {
        bad(name, "truncated: the header claims " + std::to_string(header_len) + " bytes but only " +
                      std::to_string(size - 8) + " follow");
    }
    const std::uint8_t* body = data + 8 + header_len;
    const std::uint64_t body_size = size - 8 - header_len;

    Json header;
    try {
        header = parse_json(reinterpret_cast<const char*>(data + 8), std::size_t(header_len));
    } catch (const JsonError& e) {
        bad(name, std::string("not a safetensors file (tensor header: ") + e.what() + ")");
    }
    if (!header.is_object()) bad(name, "not a safetensors file (the tensor header is not a JSON object)");

    const Json* metadata = header.find("__metadata__");
    if (!metadata || !metadata->is_object()) bad(name, "a safetensors file but not an lmustream model (no __metadata__)");
    const Json* text = metadata->find("lmustream");
    if (!text) bad(name, "a safetensors file but not an lmustream model (no 'lmustream' header)");
    if (!text->is_string()) bad(name, "the 'lmustream' header must be a JSON string");
    Json meta;
    try {
        meta = parse_json(text->text.data(), text->text.size());
    } catch (const JsonError& e) {
        bad(name, std::string("the lmustream header is not valid JSON: ") + e.what());
    }
    if (!meta.is_object()) bad(name, "the lmustream header is not a JSON object");
    const Json* format = meta.find("format");
    if (!format || !format->is_string() || format->text != kFormatName) {
        bad(name, std::string("the header does not describe an ") + kFormatName + " file");
    }
    const Json* version = meta.find("format_version");
    if (!version || !version->is_number() || !version->integral) bad(name, "the header has no integer format_version");
    if (version->number > kFormatVersion) {
        bad(name, "uses model format version " + std::to_string(long(std::fmin(version->number, 1e9))) +
                      ", newer than this kernel supports (" + std::to_string(kFormatVersion) + ")");
    }
    if (version->number < 1) bad(name, "format_version must be >= 1");
    for (const char* key : {"config", "labels", "frontend"}) {
        if (!meta.find(key)) bad(name, std::string("the header lacks '") + key + "'");
    }

    Artifact art;
    art.config = parse_config(*meta.find("config"), name);
    art.frontend = parse_frontend(*meta.find("frontend"), name);
    if (art.frontend.n_mels != art.config.n_mels) {
        bad(name, "frontend.n_mels (" + std::to_string(art.frontend.n_mels) + ") differs from config.n_mels (" +
                      std::to_string(art.config.n_mels) + ")");
    }
    const Json& labels = *meta.find("labels");
    if (!labels.is_array()) bad(name, "header 'labels' must be a list of strings");
    std::set<std::string> unique;
    for (const Json& label : labels.items) {
        if (!label.is_string()) bad(name, "header 'labels' must be a list of strings");
        if (label.text.size() > std::size_t(kMaxLabelBytes)) bad(name, "a label is longer than 4096 bytes");
        if (!unique.insert(label.text).second) bad(name, "label '" + label.text + "' appears twice");
        art.labels.push_back(label.text);
    }
    if (int(art.labels.size()) != art.config.n_classes) {
        bad(name, std::to_string(art.labels.size()) + " labels for a model with " +
                      std::to_string(art.config.n_classes) + " classes");
    }

    const auto expected = expected_tensors(art.config);
    std::set<std::string> found;
    // Tensor regions must lie inside the data section and must not overlap (safetensors' rule).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> regions;
    for (const auto& [tname, info] : header.members) {
        if (tname == "__metadata__") continue;
        const std::string what = "tensor '" + tname + "'";
        if (!info.is_object()) bad(name, what + ": entry is not an object");
        const Json* dtype = info.find("dtype");
        const Json* shape = info.find("shape");
        const Json* offsets = info.find("data_offsets");
        if (!dtype || !dtype->is_string() || !shape || !shape->is_array() || !offsets || !offsets->is_array() ||
            offsets->items.size() != 2) {
            bad(name, what + ": needs 'dtype' (string), 'shape' (list) and 'data_offsets' ([begin, end])");
        }
        std::uint64_t count = 1;
        std::vector<std::int64_t> dims;
        if (shape->items.size() > 8) bad(name, what + ": more than 8 dimensions");
        for (const Json& d : shape->items) {
            if (!d.is_number() || !d.integral || d.number < 0 || d.number > 1e12) {
                bad(name, what + ": shape entries must be non-negative integers");
            }
            dims.push_back(std::int64_t(d.number));
            count *= std::uint64_t(d.number);
            if (count > (std::uint64_t(1) << 40)) bad(name, what + ": oversized shape");
        }
        std::uint64_t element = 0;
        const std::string& dt = dtype->text;
        if (dt == "F32" || dt == "I32") element = 4;
        else if (dt == "F64" || dt == "I64") element = 8;
        else if (dt == "F16" || dt == "BF16" || dt == "I16") element = 2;
        else if (dt == "U8" || dt == "I8" || dt == "BOOL") element = 1;
        else bad(name, what + ": unknown dtype '" + dt + "'");
        std::uint64_t begin = 0, end = 0;
        for (int i = 0; i < 2; ++i) {
            const Json& o = offsets->items[i];
            if (!o.is_number() || !o.integral || o.number < 0 || o.number > 1.8e19) {
                bad(name, what + ": data_offsets must be non-negative integers");
            }
            (i == 0 ? begin : end) = std::uint64_t(o.number);
        }
        if (begin > end || end > body_size) {
            bad(name, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                          "] lie outside the " + std::to_string(body_size) + " bytes of tensor data (truncated file?)");
        }
        if (end - begin != count * element) {
            bad(name, what + ": " + std::to_string(end - begin) + " bytes for shape " + shape_text(dims) + " of " + dt);
        }
        regions.emplace_back(begin, end);
        if (is_counter(tname)) {
            found.insert(tname);  // batch-norm update counters: present, not needed at inference
            continue;
        }
        auto want = expected.find(tname);
        if (want == expected.end()) bad(name, what + " does not belong to an LMUFormer of this config (unexpected)");
        if (want->second != dims) {
            bad(name, what + " has shape " + shape_text(dims) + ", the config needs " + shape_text(want->second));
        }
        Tensor tensor;
        tensor.shape = dims;
        tensor.values.resize(count);
        const std::uint8_t* src = body + begin;
        for (std::uint64_t i = 0; i < count; ++i) {
            float v;
            if (dt == "F32") {
                std::memcpy(&v, src + 4 * i, 4);
            } else if (dt == "F64") {
                double d;
                std::memcpy(&d, src + 8 * i, 8);
                v = float(d);
            } else if (dt == "F16") {
                std::uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                v = half_to_float(h);
            } else if (dt == "BF16") {
                std::uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                const std::uint32_t bits = std::uint32_t(h) << 16;
                std::memcpy(&v, &bits, 4);
            } else {
                bad(name, what + ": dtype " + dt + " for a weight (expected a float type)");
            }
            if (!std::isfinite(v)) bad(name, what + ": non-finite value at flat index " + std::to_string(i));
            tensor.values[i] = v;
        }
        art.tensors[tname] = std::move(tensor);
        found.insert(tname);
    }
    std::sort(regions.begin(), regions.end());
    for (std::size_t i = 1; i < regions.size(); ++i) {
        if (regions[i].first < regions[i - 1].second) bad(name, "tensor data regions overlap");
    }
    std::string missing;
    for (const auto& [tname, shape] : expected) {
        if (!art.tensors.count(tname)) missing += (missing.empty() ? "" : ", ") + tname;
    }
    if (!missing.empty()) bad(name, "tensors missing for the config in its header: " + missing);
    return art;
}

Artifact read_artifact(const std::string& path) {
    std::ifstream file(path, std::ios::binary | std::ios::ate);
    if (!file) throw ArtifactError("model file '" + path + "' cannot be opened");
    const std::streamoff size = file.tellg();
    if (size < 0) throw ArtifactError("model file '" + path + "' cannot be read");
    // A model is a few MB; refuse anything that could not be one before allocating it.
    if (std::uint64_t(size) > (std::uint64_t(4) << 30)) throw ArtifactError("'" + path + "' is oversized (> 4 GiB)");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    file.seekg(0);
    if (size > 0 && !file.read(reinterpret_cast<char*>(bytes.data()), size)) {
        throw ArtifactError("model file '" + path + "' cannot be read");
    }
    return parse_artifact(bytes.data(), bytes.size(), "'" + path + "'");
}

}  // namespace lmustream

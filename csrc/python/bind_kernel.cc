// Python bindings of the streaming engine (csrc/engine.h): lmustream._kernel.Engine, .Stream,
// .push_many. Every argument is checked here with the GIL held; compute runs with it released.
// Errors become lmustream's own exception types: a bad model file raises CheckpointError,
// bad samples or features raise AudioError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../artifact.h"
#include "../engine.h"
#include "../kernels/kernels.h"
#include "../legendre.h"

namespace py = pybind11;
using lmustream::Engine;
using lmustream::InputError;
using lmustream::Stream;

namespace {

struct PyEngine {
    std::shared_ptr<const Engine> engine;
};

struct PyStream {
    std::shared_ptr<const Engine> engine;  // keeps the weights alive as long as the stream
    std::unique_ptr<Stream> stream;
};

// Holds a stream for one call; a second thread using the same stream meanwhile is an error,
// not a data race.
class StreamLock {
  public:
    explicit StreamLock(Stream& s) : lock_(s.busy(), std::try_to_lock) {
        if (!lock_.owns_lock()) {
            throw std::runtime_error("this stream is being used by another thread; open one stream per thread");
        }
    }

  private:
    std::unique_lock<std::mutex> lock_;
};

py::array_t<float> logits_array(std::vector<float>&& values, int classes) {
    const py::ssize_t n = py::ssize_t(values.size()) / classes;
    py::array_t<float> out({n, py::ssize_t(classes)});
    if (!values.empty()) std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(float));
    return out;
}

// A 1-D block of samples: float32 (other float widths are converted) or int16.
struct Samples {
    py::array array;
    bool int16 = false;
    std::size_t size = 0;
    const void* data = nullptr;
};

Samples check_samples(const py::handle& obj, const std::string& what) {
    if (!py::isinstance<py::array>(obj)) {
        throw InputError(what + ": expected a 1-D numpy array of float32 or int16 samples, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    }
    py::array array = py::reinterpret_borrow<py::array>(obj);
    if (array.ndim() != 1) {
        throw InputError(what + ": expected a 1-D array of samples (mono), got " + std::to_string(array.ndim()) +
                         " dimensions");
    }
    Samples s;
    const char kind = array.dtype().kind();
    if (kind == 'i' && array.dtype().itemsize() == 2) {
        s.array = py::array_t<std::int16_t, py::array::c_style | py::array::forcecast>::ensure(array);
        s.int16 = true;
    } else if (kind == 'f') {
        auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(array);
        const float* data = f.data();
        for (py::ssize_t i = 0; i < f.size(); ++i) {
            if (!std::isfinite(data[i])) {
                throw InputError(what + ": non-finite sample (NaN or Inf) at index " + std::to_string(i));
            }
        }
        s.array = f;
    } else {
        throw InputError(what + ": unsupported sample dtype " + std::string(py::str(array.dtype())) +
                         "; pass float32 samples in [-1, 1] or int16 PCM");
    }
    s.size = std::size_t(s.array.size());
    s.data = s.array.data();
    return s;
}

py::dict config_dict(const Engine& e) {
    const auto& c = e.config();
    py::dict d;
    d["n_mels"] = c.n_mels;
    d["n_classes"] = c.n_classes;
    d["dim"] = c.dim;
    d["depth"] = c.depth;
    d["mlp_ratio"] = c.mlp_ratio;
    d["memory_size"] = c.memory_size;
    d["theta"] = c.theta;
    d["embed_convs"] = c.embed_convs;
    d["kernel_size"] = c.kernel_size;
    d["causal"] = c.causal;
    d["spiking"] = c.spiking;
    d["lif_tau"] = c.lif_tau;
    d["lif_threshold"] = c.lif_threshold;
    d["lmu_input_threshold"] = c.lmu_input_threshold;
    return d;
}

PyEngine make_engine(const std::string& path, bool int8, const std::string& simd, bool add_only, int frame_lanes,
                     bool sparse_inputs) {
    lmustream::EngineOptions options;
    options.int8 = int8;
    options.simd = simd;
    options.add_only = add_only;
    options.frame_lanes = frame_lanes;
    options.sparse_inputs = sparse_inputs;
    py::gil_scoped_release release;  // reading and the Legendre exponential take a while
    const lmustream::Artifact art = lmustream::read_artifact(path);
    return PyEngine{std::make_shared<const Engine>(art, options)};
}

py::array_t<float> stream_push(PyStream& self, const py::handle& samples) {
    const Samples s = check_samples(samples, "Stream.push samples");
    std::vector<float> out;
    {
        StreamLock lock(*self.stream);
        py::gil_scoped_release release;
        if (s.int16) self.stream->push(static_cast<const std::int16_t*>(s.data), s.size, out);
        else self.stream->push(static_cast<const float*>(s.data), s.size, out);
    }
    return logits_array(std::move(out), self.engine->config().n_classes);
}

py::array_t<float> stream_push_features(PyStream& self, const py::handle& obj) {
    const int n_mels = self.engine->config().n_mels;
    if (!py::isinstance<py::array>(obj)) throw InputError("Stream.push_features: expected a numpy array [frames, n_mels]");
    py::array raw = py::reinterpret_borrow<py::array>(obj);
    if (raw.dtype().kind() != 'f') {
        throw InputError("Stream.push_features: features must be floating point, got " + std::string(py::str(raw.dtype())));
    }
    if (raw.ndim() != 2 || raw.shape(1) != n_mels) {
        throw InputError("Stream.push_features: expected shape [frames, " + std::to_string(n_mels) + "]");
    }
    auto frames = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(raw);
    for (py::ssize_t i = 0; i < frames.size(); ++i) {
        if (!std::isfinite(frames.data()[i])) {
            throw InputError("Stream.push_features: non-finite value at frame " + std::to_string(i / n_mels));
        }
    }
    std::vector<float> out;
    {
        StreamLock lock(*self.stream);
        py::gil_scoped_release release;
        self.stream->push_features(frames.data(), std::size_t(frames.shape(0)), out);
    }
    return logits_array(std::move(out), self.engine->config().n_classes);
}

py::list push_many(PyEngine& engine, const py::sequence& streams, const py::sequence& blocks) {
    const py::ssize_t count = py::len(streams);
    if (py::ssize_t(py::len(blocks)) != count) {
        throw InputError("push_many: " + std::to_string(count) + " streams but " + std::to_string(py::len(blocks)) +
                         " sample blocks; give one block per stream");
    }
    std::vector<Stream*> native;
    std::vector<Samples> samples;
    for (py::ssize_t i = 0; i < count; ++i) {
        PyStream& s = streams[i].cast<PyStream&>();
        if (s.engine != engine.engine) throw InputError("push_many: stream " + std::to_string(i) + " was opened by another kernel");
        for (Stream* other : native) {
            if (other == s.stream.get()) throw InputError("push_many: stream " + std::to_string(i) + " appears twice");
        }
        native.push_back(s.stream.get());
        samples.push_back(check_samples(blocks[i], "push_many block " + std::to_string(i)));
    }
    std::vector<std::unique_lock<std::mutex>> locks;
    for (Stream* s : native) {
        locks.emplace_back(s->busy(), std::try_to_lock);
        if (!locks.back().owns_lock()) throw std::runtime_error("push_many: a stream is being used by another thread");
    }
    std::vector<const void*> data;
    std::vector<std::size_t> lengths;
    std::unique_ptr<bool[]> int16(new bool[std::size_t(count) + 1]);
    for (py::ssize_t i = 0; i < count; ++i) {
        data.push_back(samples[i].data);
        lengths.push_back(samples[i].size);
        int16[i] = samples[i].int16;
    }
    std::vector<std::vector<float>> outs(static_cast<std::size_t>(count));
    {
        py::gil_scoped_release release;
        lmustream::push_many(*engine.engine, native.data(), data.data(), lengths.data(), int16.get(), int(count),
                             outs.data());
    }
    py::list result;
    for (auto& out : outs) result.append(logits_array(std::move(out), engine.engine->config().n_classes));
    return result;
}

// Best-of-`trials` rate of one of the table's micro-benchmarks (operations or bytes per second).
double microbench(const std::string& simd, const std::string& what, double size) {
    const lmustream::kernels::Table* t = lmustream::kernels::select(simd.c_str());
    if (!t) throw py::value_error("microbench: SIMD path '" + simd + "' is not available here");
    using clock = std::chrono::steady_clock;
    constexpr int trials = 7;
    double best = 0.0;
    if (what == "fma" || what == "dot_i8") {
        const long iterations = long(size > 0 ? size : 2e6);
        float f_sink = 0.0f;
        std::int32_t i_sink = 0;
        py::gil_scoped_release release;
        for (int trial = 0; trial < trials; ++trial) {
            const auto start = clock::now();
            const double ops = what == "fma" ? t->fma_loop(iterations, &f_sink) : t->dot_i8_loop(iterations, &i_sink);
            const double seconds = std::chrono::duration<double>(clock::now() - start).count();
            best = std::max(best, ops / seconds);
        }
        if (f_sink == 12345.0f && i_sink == 12345) best += 1e-9;  // keep the sinks alive
        return best;
    }
    if (what == "read") {
        const long n = std::max(128L, long(size / 4) / 128 * 128);
        std::vector<float> data(std::size_t(n) + 4096, 1.0f);
        const long repeats = std::max(1L, long(256e6 / (4.0 * double(n))));
        volatile float sink = 0.0f;
        py::gil_scoped_release release;
        sink = sink + t->read_sum(data.data(), n);  // warm the caches the buffer fits in
        for (int trial = 0; trial < trials; ++trial) {
            const auto start = clock::now();
            for (long r = 0; r < repeats; ++r) sink = sink + t->read_sum(data.data(), n);
            const double seconds = std::chrono::duration<double>(clock::now() - start).count();
            best = std::max(best, 4.0 * double(n) * double(repeats) / seconds);
        }
        return best;
    }
    throw py::value_error("microbench: what must be 'fma', 'dot_i8' or 'read'");
}

}  // namespace

void bind_kernel(py::module_& m) {
    py::module_ errors = py::module_::import("lmustream.errors");
    static py::object checkpoint_error = errors.attr("CheckpointError");
    static py::object audio_error = errors.attr("AudioError");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const lmustream::ArtifactError& e) {
            PyErr_SetString(checkpoint_error.ptr(), e.what());
        } catch (const InputError& e) {
            PyErr_SetString(audio_error.ptr(), e.what());
        }
    });

    py::class_<PyEngine>(m, "Engine", "A loaded model (weights folded and packed); open streams on it.")
        .def(py::init(&make_engine), py::arg("path"), py::arg("int8") = false, py::arg("simd") = "auto",
             py::arg("add_only") = true, py::arg("frame_lanes") = 8, py::arg("sparse_inputs") = true)
        .def_property_readonly("labels", [](const PyEngine& e) { return e.engine->labels(); })
        .def_property_readonly("lookahead", [](const PyEngine& e) { return e.engine->config().lookahead(); })
        .def_property_readonly("sample_rate", [](const PyEngine& e) { return e.engine->frontend_config().sample_rate; })
        .def_property_readonly("hop_length", [](const PyEngine& e) { return e.engine->fbank().hop_length(); })
        .def_property_readonly("window_length", [](const PyEngine& e) { return e.engine->fbank().window_length(); })
        .def_property_readonly("simd", [](const PyEngine& e) { return std::string(e.engine->simd()); })
        .def_property_readonly("int8", [](const PyEngine& e) { return e.engine->int8(); })
        .def_property_readonly("add_only", [](const PyEngine& e) { return e.engine->add_only(); })
        .def_property_readonly("frame_lanes", [](const PyEngine& e) { return e.engine->frame_lanes(); })
        .def_property_readonly("sparse_inputs", [](const PyEngine& e) { return e.engine->sparse_inputs(); })
        .def_property_readonly("config", [](const PyEngine& e) { return config_dict(*e.engine); })
        .def_property_readonly("weight_bytes", [](const PyEngine& e) { return e.engine->weight_bytes(); })
        .def_property_readonly("macs_per_frame", [](const PyEngine& e) { return e.engine->macs_per_frame(); })
        .def_property_readonly("lif_layers", [](const PyEngine& e) { return e.engine->lif_names(); })
        .def("open", [](const PyEngine& e) {
            return PyStream{e.engine, std::make_unique<Stream>(*e.engine)};
        });

    py::class_<PyStream>(m, "Stream", "One audio stream's state on an Engine.")
        .def("push", &stream_push, py::arg("samples"))
        .def("push_features", &stream_push_features, py::arg("features"))
        .def("flush",
             [](PyStream& self) {
                 std::vector<float> out;
                 {
                     StreamLock lock(*self.stream);
                     py::gil_scoped_release release;
                     self.stream->flush(out);
                 }
                 return logits_array(std::move(out), self.engine->config().n_classes);
             })
        .def("reset",
             [](PyStream& self) {
                 StreamLock lock(*self.stream);
                 self.stream->reset();
             })
        .def_property_readonly("running",
                               [](PyStream& self) {
                                   StreamLock lock(*self.stream);
                                   std::vector<float> r = self.stream->running();
                                   py::array_t<float> out(py::ssize_t(r.size()));
                                   std::memcpy(out.mutable_data(), r.data(), r.size() * sizeof(float));
                                   return out;
                               })
        .def_property_readonly("frames_emitted", [](PyStream& self) { return self.stream->frames_emitted(); })
        .def_property_readonly("pending_samples", [](PyStream& self) { return self.stream->pending_samples(); })
        .def("spike_counts",
             [](PyStream& self) {
                 StreamLock lock(*self.stream);
                 py::dict d;
                 const auto& names = self.engine->lif_names();
                 for (std::size_t i = 0; i < names.size(); ++i) {
                     d[py::str(names[i])] = py::make_tuple(self.stream->spike_counts()[i], self.stream->neuron_frames()[i]);
                 }
                 return d;
             })
        .def("record_spikes",
             [](PyStream& self, bool on) {
                 StreamLock lock(*self.stream);
                 self.stream->record_spikes(on);
             },
             py::arg("on"))
        .def("take_spikes", [](PyStream& self) {
            StreamLock lock(*self.stream);
            auto logs = self.stream->take_spikes();
            py::dict d;
            const auto& names = self.engine->lif_names();
            const auto& sizes = self.engine->lif_sizes();
            for (std::size_t i = 0; i < names.size(); ++i) {
                const py::ssize_t size = sizes[i];
                py::array_t<std::uint8_t> a({py::ssize_t(logs[i].size()) / size, size});
                if (!logs[i].empty()) std::memcpy(a.mutable_data(), logs[i].data(), logs[i].size());
                d[py::str(names[i])] = a;
            }
            return d;
        });

    m.def("microbench", &microbench, py::arg("simd"), py::arg("what"), py::arg("size") = 0.0,
          "microbench(simd, what, size) -> rate: 'fma' (float32 multiply-adds/s, size = iterations), 'dot_i8' "
          "(int8 multiply-adds/s), 'read' (bytes/s reading a buffer of `size` bytes on this thread).");
    m.def("push_many", &push_many, py::arg("engine"), py::arg("streams"), py::arg("blocks"));
    m.def("simd_levels", [] { return std::string(lmustream::kernels::supported_levels()); });
    m.def("simd_path", [] { return std::string(lmustream::kernels::select("auto")->name); });
    m.def(
        "legendre_state_space",
        [](int order, double theta) {
            if (order < 1 || order > lmustream::kMaxMemorySize || !(theta > 0) || !std::isfinite(theta)) {
                throw py::value_error("legendre_state_space: order must be in [1, 4096] and theta a positive number");
            }
            std::shared_ptr<const lmustream::StateSpace> space;
            {
                py::gil_scoped_release release;
                space = lmustream::legendre_state_space(order, theta);
            }
            py::array_t<double> A(std::vector<py::ssize_t>{order, order});
            py::array_t<double> B(std::vector<py::ssize_t>{order});
            std::memcpy(A.mutable_data(), space->A.data(), space->A.size() * sizeof(double));
            std::memcpy(B.mutable_data(), space->B.data(), space->B.size() * sizeof(double));
            return py::make_tuple(A, B);
        },
        py::arg("order"), py::arg("theta"));
    m.def(
        "parse_artifact",
        [](const py::bytes& data) {
            const std::string bytes = data;
            lmustream::Artifact art;
            {
                py::gil_scoped_release release;
                art = lmustream::parse_artifact(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(),
                                                "<bytes>");
            }
            py::dict d;
            d["labels"] = art.labels;
            d["tensors"] = art.tensors.size();
            d["spiking"] = art.config.spiking;
            return d;
        },
        py::arg("data"), "Parse a model file held in memory (validation only; used by the fuzzer and tests).");
}

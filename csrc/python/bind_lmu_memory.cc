// Python binding of the Legendre memory scan (csrc/lmu_memory.h): NumPy in, NumPy out.
// Every check happens here, with the GIL held, so the C++ core can assume valid input and
// run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../lmu_memory.h"

namespace py = pybind11;

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

constexpr const char* kLmuMemoryScanDoc = R"doc(lmu_memory_scan(A, B, u, m0=None) -> (out, m_final)

Runs the Legendre memory update m_t = A m_{t-1} + B u_t over a block of frames, float32.

  A   [M, M]             state matrix (discrete, row-major)
  B   [M] or [M, 1]      input vector
  u   [T] or [batch, T]  one scalar input per frame (a 2-D u is always read as
                         [batch, T], so pass a single sequence as 1-D)
  m0  [M] or [batch, M]  state before the first frame (m_{-1}); zeros when None; an [M]
                         m0 with a batched u starts every sequence from the same state

Returns out [T, M] (or [batch, T, M]) holding every m_t, and m_final [M] (or [batch, M]),
the state after the last frame (equal to out's last row; m0 itself when T == 0). Feeding
m_final back as m0 continues the sequence exactly, bit for bit.

Inputs may be any real-number arrays (float of any width, int, bool): they are converted
to C-contiguous float32. Complex, object and string arrays raise TypeError; wrong shapes
and NaN or inf values (including float64 values beyond float32's range) raise ValueError
naming the argument. The GIL is released while the scan runs.
)doc";

[[noreturn]] void reject(const char* name, const std::string& why) {
    throw py::value_error("lmu_memory_scan: argument '" + std::string(name) + "' " + why);
}

std::string shape_of(const py::array& a) {
    std::string text = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (d > 0) text += ", ";
        text += std::to_string(a.shape(d));
    }
    return text + (a.ndim() == 1 ? ",)" : ")");
}

// Converting only real-number dtypes keeps the rule simple and avoids NumPy's silent
// complex -> float truncation that forcecast alone would allow.
F32Array as_f32(const py::handle& obj, const char* name) {
    py::array array = py::array::ensure(obj);
    if (!array) {
        throw py::type_error("lmu_memory_scan: argument '" + std::string(name) +
                             "' must be an array of real numbers, got " +
                             std::string(py::str(py::type::of(obj))));
    }
    const char kind = array.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b') {
        throw py::type_error("lmu_memory_scan: argument '" + std::string(name) + "' has dtype " +
                             std::string(py::str(array.dtype())) +
                             "; expected real numbers (float, int or bool)");
    }
    return F32Array::ensure(array);
}

void require_finite(const F32Array& array, const char* name) {
    const float* data = array.data();
    for (py::ssize_t i = 0; i < array.size(); ++i) {
        if (!std::isfinite(data[i])) {
            const char* value = std::isnan(data[i]) ? "nan" : (data[i] > 0 ? "inf" : "-inf");
            reject(name, std::string("contains a non-finite value (") + value +
                             " as float32) at flat index " + std::to_string(i));
        }
    }
}

py::tuple lmu_memory_scan(const py::object& A_in, const py::object& B_in, const py::object& u_in,
                          const py::object& m0_in) {
    const F32Array A = as_f32(A_in, "A");
    if (A.ndim() != 2 || A.shape(0) != A.shape(1) || A.shape(0) < 1) {
        reject("A", "must be a square [M, M] matrix with M >= 1, got shape " + shape_of(A));
    }
    // An [M, M] float32 matrix that fits in memory has M far below INT_MAX.
    const py::ssize_t M = A.shape(0);
    const std::string from_A = " with M = " + std::to_string(M) + " (from A)";

    const F32Array B = as_f32(B_in, "B");
    const bool B_ok = (B.ndim() == 1 && B.shape(0) == M) ||
                      (B.ndim() == 2 && B.shape(0) == M && B.shape(1) == 1);
    if (!B_ok) reject("B", "must have shape [M] or [M, 1]" + from_A + ", got shape " + shape_of(B));

    const F32Array u = as_f32(u_in, "u");
    if (u.ndim() != 1 && u.ndim() != 2) {
        reject("u", "must have shape [T] or [batch, T], got shape " + shape_of(u));
    }
    const bool batched = u.ndim() == 2;
    const py::ssize_t batch = batched ? u.shape(0) : 1;
    const py::ssize_t T = u.shape(u.ndim() - 1);
    if (T > std::numeric_limits<int>::max()) {
        reject("u", "has " + std::to_string(T) + " frames; split it into calls of fewer than 2^31");
    }

    const bool has_m0 = !m0_in.is_none();
    F32Array m0;
    if (has_m0) {
        m0 = as_f32(m0_in, "m0");
        const bool shared = m0.ndim() == 1 && m0.shape(0) == M;
        const bool per_row = batched && m0.ndim() == 2 && m0.shape(0) == batch && m0.shape(1) == M;
        if (!shared && !per_row) {
            const std::string wanted =
                batched ? "[M] or [batch, M] = [" + std::to_string(batch) + ", " +
                              std::to_string(M) + "]"
                        : "[M]";
            reject("m0", "must have shape " + wanted + from_A + ", got shape " + shape_of(m0));
        }
    }

    require_finite(A, "A");
    require_finite(B, "B");
    require_finite(u, "u");
    if (has_m0) require_finite(m0, "m0");

    const std::vector<py::ssize_t> out_shape =
        batched ? std::vector<py::ssize_t>{batch, T, M} : std::vector<py::ssize_t>{T, M};
    const std::vector<py::ssize_t> state_shape =
        batched ? std::vector<py::ssize_t>{batch, M} : std::vector<py::ssize_t>{M};
    py::array_t<float> out(out_shape);
    py::array_t<float> m_final(state_shape);

    // m_final doubles as the running state, so the inputs are never written to.
    float* state = m_final.mutable_data();
    const std::size_t state_bytes = static_cast<std::size_t>(M) * sizeof(float);
    if (!has_m0) {
        std::fill(state, state + batch * M, 0.0f);
    } else if (m0.ndim() == 1) {
        for (py::ssize_t b = 0; b < batch; ++b) std::memcpy(state + b * M, m0.data(), state_bytes);
    } else {
        std::memcpy(state, m0.data(), static_cast<std::size_t>(batch) * state_bytes);
    }

    const float* a = A.data();
    const float* b_vec = B.data();
    const float* frames = u.data();
    float* rows = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (py::ssize_t b = 0; b < batch; ++b) {
            lmustream::f32_lmu_memory_scan(a, b_vec, static_cast<int>(M), frames + b * T,
                                           static_cast<int>(T), state + b * M, rows + b * T * M);
        }
    }
    return py::make_tuple(out, m_final);
}

}  // namespace

void bind_lmu_memory(py::module_& m) {
    m.def("lmu_memory_scan", &lmu_memory_scan, py::arg("A"), py::arg("B"), py::arg("u"),
          py::arg("m0") = py::none(), kLmuMemoryScanDoc);
}

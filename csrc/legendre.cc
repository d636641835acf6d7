#include "legendre.h"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace lmustream {
namespace {

using Matrix = std::vector<double>;

// c = a b (n x n, row-major); i-k-j order so the inner loop is contiguous and vectorises.
Matrix multiply(const Matrix& a, const Matrix& b, int n) {
    Matrix c(std::size_t(n) * n, 0.0);
    for (int i = 0; i < n; ++i) {
        double* ci = &c[std::size_t(i) * n];
        for (int k = 0; k < n; ++k) {
            const double aik = a[std::size_t(i) * n + k];
            if (aik == 0.0) continue;
            const double* bk = &b[std::size_t(k) * n];
            for (int j = 0; j < n; ++j) ci[j] += aik * bk[j];
        }
    }
    return c;
}

double norm1(const Matrix& a, int n) {
    double best = 0.0;
    for (int j = 0; j < n; ++j) {
        double s = 0.0;
        for (int i = 0; i < n; ++i) s += std::fabs(a[std::size_t(i) * n + j]);
        best = std::fmax(best, s);
    }
    return best;
}

// Solves p x = q for x (n x n each) by Gaussian elimination with partial pivoting.
Matrix solve(Matrix p, Matrix q, int n) {
    for (int col = 0; col < n; ++col) {
        int pivot = col;
        for (int r = col + 1; r < n; ++r) {
            if (std::fabs(p[std::size_t(r) * n + col]) > std::fabs(p[std::size_t(pivot) * n + col])) pivot = r;
        }
        if (p[std::size_t(pivot) * n + col] == 0.0) throw std::runtime_error("matrix_exp: singular Pade denominator");
        if (pivot != col) {
            for (int j = 0; j < n; ++j) {
                std::swap(p[std::size_t(pivot) * n + j], p[std::size_t(col) * n + j]);
                std::swap(q[std::size_t(pivot) * n + j], q[std::size_t(col) * n + j]);
            }
        }
        const double inv = 1.0 / p[std::size_t(col) * n + col];
        for (int r = col + 1; r < n; ++r) {
            const double f = p[std::size_t(r) * n + col] * inv;
            if (f == 0.0) continue;
            double* pr = &p[std::size_t(r) * n];
            const double* pc = &p[std::size_t(col) * n];
            for (int j = col; j < n; ++j) pr[j] -= f * pc[j];
            double* qr = &q[std::size_t(r) * n];
            const double* qc = &q[std::size_t(col) * n];
            for (int j = 0; j < n; ++j) qr[j] -= f * qc[j];
        }
    }
    for (int col = n - 1; col >= 0; --col) {  // back substitution, all right-hand sides at once
        double* qc = &q[std::size_t(col) * n];
        for (int k = col + 1; k < n; ++k) {
            const double f = p[std::size_t(col) * n + k];
            if (f == 0.0) continue;
            const double* qk = &q[std::size_t(k) * n];
            for (int j = 0; j < n; ++j) qc[j] -= f * qk[j];
        }
        const double inv = 1.0 / p[std::size_t(col) * n + col];
        for (int j = 0; j < n; ++j) qc[j] *= inv;
    }
    return q;
}

}  // namespace

Matrix matrix_exp(const Matrix& input, int n) {
    // Pade(13) coefficients and the norm bound theta_13 from Higham, SIAM J. Matrix Anal. Appl. 26 (2005).
    static const double b[] = {64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
                               129060195264000.0,   10559470521600.0,    670442572800.0,     33522128640.0,
                               1323241920.0,        40840800.0,          960960.0,           16380.0,
                               182.0,               1.0};
    const double theta13 = 5.371920351148152;
    Matrix a = input;
    const double norm = norm1(a, n);
    if (!std::isfinite(norm) || norm > 1e15) throw std::runtime_error("matrix_exp: the matrix norm is out of range");
    int squarings = 0;
    if (norm > theta13) squarings = std::max(0, int(std::ceil(std::log2(norm / theta13))));
    const double scale = std::ldexp(1.0, -squarings);
    for (double& v : a) v *= scale;
    const std::size_t nn = std::size_t(n) * n;
    Matrix ident(nn, 0.0);
    for (int i = 0; i < n; ++i) ident[std::size_t(i) * n + i] = 1.0;
    const Matrix a2 = multiply(a, a, n), a4 = multiply(a2, a2, n), a6 = multiply(a4, a2, n);
    Matrix u_inner(nn), v(nn), u_low(nn), v_high(nn);
    for (std::size_t i = 0; i < nn; ++i) {
        u_inner[i] = b[13] * a6[i] + b[11] * a4[i] + b[9] * a2[i];
        v_high[i] = b[12] * a6[i] + b[10] * a4[i] + b[8] * a2[i];
    }
    Matrix u_tmp = multiply(a6, u_inner, n);
    Matrix v_tmp = multiply(a6, v_high, n);
    for (std::size_t i = 0; i < nn; ++i) {
        u_tmp[i] += b[7] * a6[i] + b[5] * a4[i] + b[3] * a2[i] + b[1] * ident[i];
        v[i] = v_tmp[i] + b[6] * a6[i] + b[4] * a4[i] + b[2] * a2[i] + b[0] * ident[i];
    }
    const Matrix u = multiply(a, u_tmp, n);
    Matrix p(nn), q(nn);
    for (std::size_t i = 0; i < nn; ++i) {
        p[i] = v[i] - u[i];
        q[i] = v[i] + u[i];
    }
    Matrix r = solve(std::move(p), std::move(q), n);
    for (int s = 0; s < squarings; ++s) r = multiply(r, r, n);
    return r;
}

std::shared_ptr<const StateSpace> legendre_state_space(int order, double theta) {
    constexpr std::size_t kCacheSize = 8;
    static std::mutex lock;
    static std::map<std::pair<int, double>, std::shared_ptr<const StateSpace>> cache;
    {
        std::lock_guard<std::mutex> guard(lock);
        auto hit = cache.find({order, theta});
        if (hit != cache.end()) return hit->second;
    }
    // Continuous system: A_c[i, j] = R_i * (-1 if i < j else (-1)^(i-j+1)), B_c[i] = R_i (-1)^i, R_i = (2i+1)/theta.
    const int n = order + 1;
    Matrix aug(std::size_t(n) * n, 0.0);
    for (int i = 0; i < order; ++i) {
        const double R = (2.0 * i + 1.0) / theta;
        for (int j = 0; j < order; ++j) {
            const double sign = i < j ? -1.0 : (((i - j + 1) % 2 == 0) ? 1.0 : -1.0);
            aug[std::size_t(i) * n + j] = R * sign;
        }
        aug[std::size_t(i) * n + order] = R * ((i % 2 == 0) ? 1.0 : -1.0);
    }
    const Matrix e = matrix_exp(aug, n);
    auto space = std::make_shared<StateSpace>();
    space->order = order;
    space->A.resize(std::size_t(order) * order);
    space->B.resize(order);
    for (int i = 0; i < order; ++i) {
        for (int j = 0; j < order; ++j) space->A[std::size_t(i) * order + j] = e[std::size_t(i) * n + j];
        space->B[i] = e[std::size_t(i) * n + order];
    }
    std::lock_guard<std::mutex> guard(lock);
    if (cache.size() >= kCacheSize) cache.clear();
    cache[{order, theta}] = space;
    return space;
}

}  // namespace lmustream

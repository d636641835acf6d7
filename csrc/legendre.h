// The Legendre memory's discrete state space (lmustream/models/lmu.py lmu_state_space):
// zero-order hold with dt = 1 frame of the Legendre delay system of order M and window theta,
//     expm([[A_c, B_c], [0, 0]]) = [[A, B], [0, 1]],
// computed in float64 by scaling and squaring with a degree-13 Pade approximant (Higham 2005).
#pragma once

#include <memory>
#include <vector>

namespace lmustream {

struct StateSpace {
    int order = 0;
    std::vector<double> A;  // [M * M] row-major
    std::vector<double> B;  // [M]
};

// Cached per (order, theta): the O(M^3) exponential dominates load time (about 0.1 s at
// M = 256, 1.5 s at 512). The cache keeps the last few sizes only, so a process that loads
// many different models (or a fuzzer) does not grow without bound.
std::shared_ptr<const StateSpace> legendre_state_space(int order, double theta);

// Uncached, for tests: the matrix exponential of a row-major n x n matrix.
std::vector<double> matrix_exp(const std::vector<double>& a, int n);

}  // namespace lmustream

// Streaming Kaldi-compatible log-mel frontend, the numerics of lmustream/audio/features.py
// (StreamingFbank with normalized=True), computed in float64 and returned as float32:
//
//     x -= mean(x)                         per frame (remove_dc_offset)
//     x[i] -= preemphasis * x[i-1]         x[-1] := x[0]
//     x *= window                          symmetric Hann (or hamming/povey/rectangular/blackman)
//     power = |rfft(x zero-padded to n_fft)|^2
//     feature = (log(max(power @ mel.T, log_floor)) - mean) / (2 std)
//
// Frames of window_length samples every hop_length samples, snip edges (a partial last
// frame is never emitted, as in the batch frontend).
#pragma once

#include <cstdint>
#include <vector>

#include "artifact.h"

namespace lmustream {

class Fbank {
  public:
    explicit Fbank(const FrontendConfig& config);

    int n_mels() const { return n_mels_; }
    int window_length() const { return window_length_; }
    int hop_length() const { return hop_; }

    // Log-mel of one frame of window_length samples into out[n_mels]; `work` is caller scratch.
    void frame(const double* samples, float* out, std::vector<double>& work) const;

  private:
    struct Filter {
        int first;                   // first FFT bin with a non-zero weight
        std::vector<double> weights;  // consecutive bins from `first`
    };
    FrontendConfig config_;
    int window_length_, hop_, n_fft_, n_mels_;
    bool power_of_two_;
    std::vector<double> window_;
    std::vector<Filter> filters_;
    std::vector<double> cos_, sin_;     // twiddles (radix-2) or the DFT table (other sizes)
    std::vector<double> stage_cos_, stage_sin_;  // cos_ / sin_ laid out stage by stage (radix-2)
    std::vector<int> bit_reverse_;       // of the half-size complex FFT

    // |X[k]|^2, k <= n_fft / 2, of x[n_fft]; `re` is scratch of n_fft doubles.
    void power_spectrum(const double* x, double* power, double* re) const;
};

// One stream's position in the signal: the samples not yet consumed by a frame.
class FbankStream {
  public:
    // Appends samples (already scaled to [-1, 1] floats) and appends the completed frames'
    // features to `out` (n_mels floats each); returns how many frames were completed.
    int push(const Fbank& fbank, const float* samples, std::size_t n, std::vector<float>& out);
    int push(const Fbank& fbank, const std::int16_t* samples, std::size_t n, std::vector<float>& out);
    void reset() { pending_.clear(); start_ = 0; }
    std::size_t pending() const { return pending_.size() - start_; }

  private:
    std::vector<double> pending_;
    std::size_t start_ = 0;  // samples of pending_ already consumed
    std::vector<double> work_;
    int drain(const Fbank& fbank, std::vector<float>& out);
};

}  // namespace lmustream

#include "frontend.h"

#include <algorithm>
#include <cmath>

#include "multiversion.h"

namespace lmustream {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kMelFactor = 1127.0;  // HTK: mel(f) = 1127 ln(1 + f / 700)
constexpr double kMelBreakHz = 700.0;

double mel(double hz) { return kMelFactor * std::log1p(hz / kMelBreakHz); }

// One radix-2 stage's butterflies on h pairs (a[k], b[k]) with twiddles w[k]. The halves never
// overlap, which `restrict` tells the compiler so that it vectorises the loop.
LMU_ALWAYS_INLINE void butterflies(double* __restrict ra, double* __restrict ia, double* __restrict rb,
                                   double* __restrict ib, const double* __restrict wr,
                                   const double* __restrict wi, int h) {
    for (int k = 0; k < h; ++k) {
        const double tr = rb[k] * wr[k] - ib[k] * wi[k];
        const double ti = rb[k] * wi[k] + ib[k] * wr[k];
        rb[k] = ra[k] - tr;
        ib[k] = ia[k] - ti;
        ra[k] += tr;
        ia[k] += ti;
    }
}

}  // namespace

Fbank::Fbank(const FrontendConfig& config)
    : config_(config),
      window_length_(config.window_length()),
      hop_(config.hop_length()),
      n_fft_(config.n_fft()),
      n_mels_(config.n_mels),
      power_of_two_((config.n_fft() & (config.n_fft() - 1)) == 0 && config.n_fft() >= 4) {
    const int n = window_length_;
    window_.resize(n);
    for (int i = 0; i < n; ++i) {
        const double phase = 2.0 * kPi * i / (n - 1);
        const double hann = 0.5 - 0.5 * std::cos(phase);
        double w = hann;
        if (config.window == "hamming") w = 0.54 - 0.46 * std::cos(phase);
        else if (config.window == "povey") w = std::pow(hann, 0.85);
        else if (config.window == "rectangular") w = 1.0;
        else if (config.window == "blackman") w = 0.42 - 0.5 * std::cos(phase) + 0.08 * std::cos(2 * phase);
        window_[i] = w;
    }
    // Mel filters on the FFT bins k < n_fft / 2 (the Nyquist column is zero, as Kaldi's).
    const double low = mel(config.low_freq), high = mel(config.upper_freq());
    const double delta = (high - low) / (n_mels_ + 1);
    const int n_bins = n_fft_ / 2;
    filters_.resize(n_mels_);
    for (int m = 0; m < n_mels_; ++m) {
        const double left = low + delta * m, centre = low + delta * (m + 1), right = low + delta * (m + 2);
        Filter& f = filters_[m];
        f.first = -1;
        for (int k = 0; k < n_bins; ++k) {
            const double b = mel(k * (double(config.sample_rate) / n_fft_));
            const double w = std::max(0.0, std::min((b - left) / (centre - left), (right - b) / (right - centre)));
            if (w > 0.0) {
                if (f.first < 0) f.first = k;
                f.weights.resize(k - f.first + 1, 0.0);
                f.weights[k - f.first] = w;
            }
        }
        if (f.first < 0) f.first = 0;
    }
    if (power_of_two_) {
        // Real FFT of size N through a complex FFT of size N/2.
        const int half = n_fft_ / 2;
        int bits = 0;
        while ((1 << bits) < half) ++bits;
        bit_reverse_.resize(half);
        for (int i = 0; i < half; ++i) {
            int r = 0;
            for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
            bit_reverse_[i] = r;
        }
        cos_.resize(half);
        sin_.resize(half);
        for (int k = 0; k < half; ++k) {  // e^{-2 pi i k / N}
            cos_[k] = std::cos(2.0 * kPi * k / n_fft_);
            sin_[k] = -std::sin(2.0 * kPi * k / n_fft_);
        }
        // Each butterfly stage's twiddles e^{-2 pi i k / size}, k < size / 2, copied out of the
        // table above so the stage reads them contiguously (and the compiler can vectorise it);
        // the stage of half-width h starts at h - 1.
        stage_cos_.resize(std::max(half - 1, 0));
        stage_sin_.resize(std::max(half - 1, 0));
        for (int size = 2; size <= half; size <<= 1) {
            const int h = size / 2, step = n_fft_ / size;
            for (int k = 0; k < h; ++k) {
                stage_cos_[h - 1 + k] = cos_[k * step];
                stage_sin_[h - 1 + k] = sin_[k * step];
            }
        }
    } else {
        // Direct DFT for the rare non-power-of-two sizes (round_to_power_of_two = false).
        const int bins = n_fft_ / 2 + 1;
        cos_.resize(std::size_t(bins) * n_fft_);
        sin_.resize(std::size_t(bins) * n_fft_);
        for (int k = 0; k < bins; ++k) {
            for (int j = 0; j < n_fft_; ++j) {
                const long long phase = (static_cast<long long>(k) * j) % n_fft_;
                cos_[std::size_t(k) * n_fft_ + j] = std::cos(2.0 * kPi * phase / n_fft_);
                sin_[std::size_t(k) * n_fft_ + j] = -std::sin(2.0 * kPi * phase / n_fft_);
            }
        }
    }
}

LMU_X86_CLONES
void Fbank::power_spectrum(const double* x, double* power, double* re) const {
    const int N = n_fft_;
    if (!power_of_two_) {
        for (int k = 0; k <= N / 2; ++k) {
            double re = 0.0, im = 0.0;
            const double* c = &cos_[std::size_t(k) * N];
            const double* s = &sin_[std::size_t(k) * N];
            for (int j = 0; j < N; ++j) {
                re += x[j] * c[j];
                im += x[j] * s[j];
            }
            power[k] = re * re + im * im;
        }
        return;
    }
    const int half = N / 2;
    double* im = re + half;
    // z[j] = x[2j] + i x[2j+1], in bit-reversed order
    for (int j = 0; j < half; ++j) {
        re[bit_reverse_[j]] = x[2 * j];
        im[bit_reverse_[j]] = x[2 * j + 1];
    }
    int size = 2;
    if (half >= 4) {
        // The first two stages (half-widths 1 and 2) as one pass over groups of four: apart, their
        // loops are too short to vectorise and pay a loop setup per pair. Same operations, same bits.
        const double* wr = stage_cos_.data();
        const double* wi = stage_sin_.data();
        for (int start = 0; start < half; start += 4) {
            double* r = re + start;
            double* i = im + start;
            butterflies(r, i, r + 1, i + 1, wr, wi, 1);
            butterflies(r + 2, i + 2, r + 3, i + 3, wr, wi, 1);
            butterflies(r, i, r + 2, i + 2, wr + 1, wi + 1, 2);
        }
        size = 8;
    }
    for (; size <= half; size <<= 1) {
        const int h = size / 2;
        const double* wr = stage_cos_.data() + (h - 1);
        const double* wi = stage_sin_.data() + (h - 1);
        for (int start = 0; start < half; start += size) {
            butterflies(re + start, im + start, re + start + h, im + start + h, wr, wi, h);
        }
    }
    // Split: X[k] = (Z[k] + conj Z[N/2-k]) / 2 + e^{-2 pi i k / N} (Z[k] - conj Z[N/2-k]) / (2i),
    // k = 0 and N/2 (both from Z[0]) apart so that the loop between them has no branches.
    auto bin = [](double zr, double zi, double cr, double ci, double wr, double wi) {
        const double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);
        const double or_ = 0.5 * (zi - ci), oi = -0.5 * (zr - cr);  // (z - conj)/(2i)
        const double xr = er + (or_ * wr - oi * wi);
        const double xi = ei + (or_ * wi + oi * wr);
        return xr * xr + xi * xi;
    };
    power[0] = bin(re[0], im[0], re[0], -im[0], cos_[0], sin_[0]);
    for (int k = 1; k < half; ++k) power[k] = bin(re[k], im[k], re[half - k], -im[half - k], cos_[k], sin_[k]);
    power[half] = bin(re[0], im[0], re[0], -im[0], -1.0, 0.0);
}

void Fbank::frame(const double* samples, float* out, std::vector<double>& work) const {
    const int n = window_length_;
    const int bins = n_fft_ / 2 + 1;
    work.resize(std::size_t(n_fft_) + bins + std::size_t(n_fft_));
    double* x = work.data();
    double* power = x + n_fft_;
    double* fft = power + bins;  // n_fft: the half-size complex FFT's real and imaginary parts
    double mean = 0.0;
    if (config_.remove_dc_offset) {
        // four running sums: one chain would wait on each addition's latency, 400 times a frame
        double sum[4] = {0.0, 0.0, 0.0, 0.0};
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            for (int j = 0; j < 4; ++j) sum[j] += samples[i + j];
        }
        for (; i < n; ++i) sum[0] += samples[i];
        mean = ((sum[0] + sum[1]) + (sum[2] + sum[3])) / n;
    }
    // x[i] = ((s[i] - mean) - p (s[i-1] - mean)) w[i], x[0] with s[0] for s[-1]: Kaldi's steps
    // (DC offset, pre-emphasis from the end, window) in one pass, the same operations in the same order.
    const double p = config_.preemphasis;
    const double* w = window_.data();
    if (p != 0.0) {
        const double first = samples[0] - mean;
        x[0] = (first - p * first) * w[0];
        for (int i = 1; i < n; ++i) x[i] = ((samples[i] - mean) - p * (samples[i - 1] - mean)) * w[i];
    } else {
        for (int i = 0; i < n; ++i) x[i] = (samples[i] - mean) * w[i];
    }
    for (int i = n; i < n_fft_; ++i) x[i] = 0.0;
    power_spectrum(x, power, fft);
    const double scale = 1.0 / (2.0 * config_.std);
    for (int m = 0; m < n_mels_; ++m) {
        const Filter& f = filters_[m];
        double energy = 0.0;
        for (std::size_t j = 0; j < f.weights.size(); ++j) energy += power[f.first + j] * f.weights[j];
        const double feature = std::log(std::max(energy, config_.log_floor));
        out[m] = float((feature - config_.mean) * scale);
    }
}

int FbankStream::drain(const Fbank& fbank, std::vector<float>& out) {
    const std::size_t n = fbank.window_length(), hop = fbank.hop_length();
    int frames = 0;
    while (pending_.size() - start_ >= n) {
        const std::size_t at = out.size();
        out.resize(at + fbank.n_mels());
        fbank.frame(pending_.data() + start_, out.data() + at, work_);
        start_ += hop;
        ++frames;
    }
    if (start_ > pending_.size()) start_ = pending_.size();  // hop > window: skipped samples
    if (start_ > 0) {
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(start_));
        start_ = 0;
    }
    return frames;
}

int FbankStream::push(const Fbank& fbank, const float* samples, std::size_t n, std::vector<float>& out) {
    pending_.insert(pending_.end(), samples, samples + n);
    return drain(fbank, out);
}

int FbankStream::push(const Fbank& fbank, const std::int16_t* samples, std::size_t n, std::vector<float>& out) {
    pending_.reserve(pending_.size() + n);
    for (std::size_t i = 0; i < n; ++i) pending_.push_back(samples[i] * (1.0 / 32768.0));
    return drain(fbank, out);
}

}  // namespace lmustream

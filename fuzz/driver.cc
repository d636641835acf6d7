// A self-contained mutation fuzzer for LLVMFuzzerTestOneInput, for toolchains without
// libFuzzer (e.g. g++). Each run takes a seed file, applies 1-4 random mutations aimed mostly
// at the JSON header (bit flips, interesting bytes, boundary numbers, inserted and deleted
// slices, a rewritten header length, truncation) and calls the target. Deterministic for a
// given -seed.
//
//   artifact_fuzz_driver [-runs=N] [-seed=S] SEED_FILE...
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Bytes = std::vector<std::uint8_t>;

std::uint64_t header_length(const Bytes& b) {
    if (b.size() < 8) return 0;
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
    return n;
}

void mutate(Bytes& b, std::mt19937_64& gen) {
    auto pick = [&](std::size_t n) { return n ? std::size_t(gen() % n) : 0; };
    // Most mutations land in the 8-byte length and the JSON header, where the parsing is.
    const std::size_t header_end = std::min<std::size_t>(b.size(), 8 + std::min<std::uint64_t>(header_length(b), b.size()));
    auto position = [&]() { return (gen() % 10 < 8 && header_end > 0) ? pick(header_end) : pick(b.size()); };
    static const char* numbers[] = {"0", "-1", "1e308", "4097", "2147483648", "99999999999999999999", "1.5", "-0",
                                    "65537", "3", "1e-400", "true", "null", "\"x\"", "[]", "{}"};
    static const std::uint8_t bytes[] = {0, 0xff, '0', '9', '"', '[', ']', '{', '}', ',', ':', '-', '\\', 'e', 0x80};
    switch (gen() % 8) {
        case 0:
            if (!b.empty()) b[position()] ^= std::uint8_t(1u << (gen() % 8));
            break;
        case 1:
            if (!b.empty()) b[position()] = bytes[gen() % sizeof bytes];
            break;
        case 2: {  // replace a run of digits with a boundary value
            if (b.empty()) break;
            std::size_t at = position();
            while (at < header_end && !(b[at] >= '0' && b[at] <= '9')) ++at;
            if (at >= header_end) break;
            std::size_t end = at;
            while (end < header_end && ((b[end] >= '0' && b[end] <= '9') || b[end] == '.' || b[end] == 'e')) ++end;
            const char* n = numbers[gen() % (sizeof numbers / sizeof numbers[0])];
            b.erase(b.begin() + std::ptrdiff_t(at), b.begin() + std::ptrdiff_t(end));
            b.insert(b.begin() + std::ptrdiff_t(at), n, n + std::strlen(n));
            break;
        }
        case 3: {  // delete a slice
            if (b.empty()) break;
            const std::size_t at = position(), n = std::min<std::size_t>(b.size() - at, 1 + gen() % 64);
            b.erase(b.begin() + std::ptrdiff_t(at), b.begin() + std::ptrdiff_t(at + n));
            break;
        }
        case 4: {  // duplicate a slice
            if (b.empty()) break;
            const std::size_t at = position(), n = std::min<std::size_t>(b.size() - at, 1 + gen() % 64);
            const Bytes slice(b.begin() + std::ptrdiff_t(at), b.begin() + std::ptrdiff_t(at + n));
            b.insert(b.begin() + std::ptrdiff_t(position()), slice.begin(), slice.end());
            break;
        }
        case 5: {  // rewrite the header length
            if (b.size() < 8) break;
            std::uint64_t n = header_length(b);
            switch (gen() % 4) {
                case 0: n += gen() % 16; break;
                case 1: n -= std::min<std::uint64_t>(n, gen() % 16); break;
                case 2: n = gen(); break;
                default: n = b.size() - 8; break;
            }
            for (int i = 0; i < 8; ++i) b[i] = std::uint8_t(n >> (8 * i));
            break;
        }
        case 6:  // truncate
            b.resize(pick(b.size() + 1));
            break;
        default:  // flip a byte in the tensor data (non-finite weights, odd values)
            if (!b.empty()) b[pick(b.size())] = std::uint8_t(gen());
            break;
    }
}

}  // namespace

int main(int argc, char** argv) {
    long runs = 10000;
    std::uint64_t seed = 1;
    std::vector<Bytes> seeds;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "-runs=", 6) == 0) {
            runs = std::atol(argv[i] + 6);
        } else if (std::strncmp(argv[i], "-seed=", 6) == 0) {
            seed = std::strtoull(argv[i] + 6, nullptr, 10);
        } else {
            std::ifstream f(argv[i], std::ios::binary);
            if (!f) {
                std::fprintf(stderr, "cannot read seed %s\n", argv[i]);
                return 2;
            }
            seeds.emplace_back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        }
    }
    if (seeds.empty()) {
        std::fprintf(stderr, "usage: %s [-runs=N] [-seed=S] SEED_FILE...\n", argv[0]);
        return 2;
    }
    std::mt19937_64 gen(seed);
    const auto start = std::chrono::steady_clock::now();
    for (const Bytes& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());  // the seeds themselves must pass
    for (long r = 0; r < runs; ++r) {
        Bytes input = seeds[gen() % seeds.size()];
        const int n = 1 + int(gen() % 4);
        for (int m = 0; m < n; ++m) mutate(input, gen);
        LLVMFuzzerTestOneInput(input.data(), input.size());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("fuzzed %ld inputs from %zu seeds in %.1f s (%.0f/s): no crash\n", runs, seeds.size(), seconds,
                runs / (seconds > 0 ? seconds : 1));
    return 0;
}

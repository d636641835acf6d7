// Picks the primitives' implementation for this CPU, once, at load time.
#include <cstring>

#include "kernels.h"

namespace lmustream {
namespace kernels {
namespace {

bool cpu_has_avx512() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool cpu_has_avx2() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

}  // namespace

const char* supported_levels() {
    if (neon_table()) return "neon scalar";
    if (avx512_table() && cpu_has_avx512()) return "avx512 avx2 scalar";
    if (avx2_table() && cpu_has_avx2()) return "avx2 scalar";
    return "scalar";
}

const Table* select(const char* request) {
    if (request == nullptr || std::strcmp(request, "auto") == 0) {
        if (neon_table()) return neon_table();
        if (avx512_table() && cpu_has_avx512()) return avx512_table();
        if (avx2_table() && cpu_has_avx2()) return avx2_table();
        return &scalar_table();
    }
    if (std::strcmp(request, "scalar") == 0) return &scalar_table();
    if (std::strcmp(request, "neon") == 0) return neon_table();
    if (std::strcmp(request, "avx512") == 0) return avx512_table() && cpu_has_avx512() ? avx512_table() : nullptr;
    if (std::strcmp(request, "avx2") == 0) return avx2_table() && cpu_has_avx2() ? avx2_table() : nullptr;
    return nullptr;
}

}  // namespace kernels
}  // namespace lmustream

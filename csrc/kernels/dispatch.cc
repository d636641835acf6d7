// Picks the primitives' implementation for this CPU, once, at load time.
#include <cstring>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

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
    // F16C (float16 loads) from CPUID leaf 1, ECX bit 29: not every compiler names it for
    // __builtin_cpu_supports. Every AVX2 CPU made has it; checked all the same.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
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

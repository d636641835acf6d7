// Function multiversioning for code built without -march: LMU_X86_CLONES gives a function an
// AVX2 copy beside the baseline one, and the dynamic loader picks one for the CPU once (GCC /
// clang target_clones, which need glibc's IFUNC: x86-64 Linux with glibc only). Without it the
// plain loops of the frontend and of the engine's glue (batch norms, residuals, LIF updates)
// would be held to SSE2. With no FMA contraction (-ffp-contract=off) both copies compute the
// same bits. Clang wants the attribute on a member function's declaration and its definition.
#pragma once

#include <cstddef>  // defines __GLIBC__ where the C library is glibc

// -DLMU_NO_CLONES builds the baseline copy alone (tests/kernel/test_native.py compares the two).
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__linux__) && defined(__GLIBC__) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(LMU_NO_CLONES)
#define LMU_X86_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LMU_X86_CLONES
#endif

// A helper that each copy must inline, so that it is compiled for that copy's instructions.
#if defined(__GNUC__) || defined(__clang__)
#define LMU_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define LMU_ALWAYS_INLINE inline
#endif

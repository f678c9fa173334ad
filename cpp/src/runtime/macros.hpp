// The compiler attributes the core's kernels use, in one place.
#pragma once

// Compiles the function it marks three times, for x86-64-v4 (AVX-512), for
// x86-64-v3 (AVX2 + FMA) and for the baseline, and picks one at load time from
// the CPU (GCC's ifunc on ELF); the default build stays portable.
// Elsewhere, and with Clang (which cannot clone function templates): one
// baseline copy. The FMA copies round differently from the baseline one, and
// a vectorized sum adds in another order at another vector width, so results
// are reproducible per machine, not across instruction sets.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(CHAINRULE_NO_TARGET_CLONES)
#define CHAINRULE_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define CHAINRULE_HAS_TARGET_CLONES 1
#else
#define CHAINRULE_HAS_TARGET_CLONES 0
#define CHAINRULE_TARGET_CLONES
#endif

// Always inlined. GCC finds a function that does nothing but prefetch "pure"
// (a prefetch is no side effect to it) and deletes every call to it; the
// fused one-record step must sit inside its loop.
#if defined(__GNUC__)
#define CHAINRULE_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define CHAINRULE_ALWAYS_INLINE inline
#endif

// The same for a lambda (after its parameter list). A lambda in a
// target_clones function is compiled once, for the baseline: one that is not
// inlined computes in the baseline's instructions (no fused multiply-add),
// whichever copy calls it.
#if defined(__GNUC__)
#define CHAINRULE_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define CHAINRULE_ALWAYS_INLINE_LAMBDA
#endif

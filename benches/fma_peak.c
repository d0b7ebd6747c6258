/* The machine's fp32 FMA peak on one core: 12 independent FMA chains, 8 wide
   (AVX2) and, where the CPU has it, 16 wide (AVX-512); the peak is the larger.
   Build and run: gcc -O3 benches/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
   Run one copy per core at once for the whole machine's peak. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double seconds_since(struct timespec t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

__attribute__((target("avx2,fma"))) static double avx2(long n) {
    __m256 a[12], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(0.999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(i);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    double s = seconds_since(t0);
    float r = 0, o[8];
    for (int i = 0; i < 12; i++) { _mm256_storeu_ps(o, a[i]); r += o[0]; }
    printf("AVX2 (8 wide):     %.1f GFLOP/s (%g)\n", n * 12 * 16 / s / 1e9, r);
    return n * 12 * 16 / s / 1e9;
}

__attribute__((target("avx512f"))) static double avx512(long n) {
    __m512 a[12], b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(0.999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(i);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    double s = seconds_since(t0);
    float r = 0, o[16];
    for (int i = 0; i < 12; i++) { _mm512_storeu_ps(o, a[i]); r += o[0]; }
    printf("AVX-512 (16 wide): %.1f GFLOP/s (%g)\n", n * 12 * 32 / s / 1e9, r);
    return n * 12 * 32 / s / 1e9;
}

int main(void) {
    double peak = avx2(300000000);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        double wide = avx512(150000000);
        if (wide > peak) peak = wide;
    }
    printf("peak: %.1f GFLOP/s on this core\n", peak);
    return 0;
}

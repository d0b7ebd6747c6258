/* The machine's fp32 FMA peak on one core: 12 independent AVX2 FMA chains.
   Build and run: gcc -O3 -mavx2 -mfma benches/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
   Run two copies at once (one per core) for the whole machine's peak. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(){ __m256 a[12]; __m256 b=_mm256_set1_ps(1.0000001f), c=_mm256_set1_ps(0.999999f);
for(int i=0;i<12;i++) a[i]=_mm256_set1_ps(i);
struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0);
long n=300000000; for(long k=0;k<n;k++){ for(int i=0;i<12;i++) a[i]=_mm256_fmadd_ps(a[i],b,c);} 
clock_gettime(CLOCK_MONOTONIC,&t1); double s=(t1.tv_sec-t0.tv_sec)+(t1.tv_nsec-t0.tv_nsec)*1e-9;
float r=0; float o[8]; for(int i=0;i<12;i++){ _mm256_storeu_ps(o,a[i]); r+=o[0];}
printf("%.1f GFLOP/s (%f)\n", n*12*16/s/1e9, r); }

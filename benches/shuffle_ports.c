/* Which vector instructions run beside the FMAs on this core, and which take
   their slots: the bound on attention's `q·kᵀ`, whose operand needs a
   transpose (shuffles) or a lane reduction (shuffles and adds) for every
   score (benches/README.md, session 21).

   Each loop runs 12 independent zmm FMAs per iteration (their throughput
   bound, two per cycle on one core of this machine), alone and with six or
   eight independent copies of one other instruction. The added time, in FMA
   slots, is what each extra instruction costs the FMAs: 0 when it runs on
   ports of its own, 1 when it takes an FMA's slot.

   x86-64 with AVX-512 only. Build and run:
     gcc -O2 benches/shuffle_ports.c -o /tmp/shuffle_ports && /tmp/shuffle_ports */
#pragma GCC target("avx512f")
#include <stdio.h>
#include <time.h>

#define ITERATIONS 20000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* zmm0..11 accumulate; zmm30 and zmm31 are the factors. */
#define FMAS                                                                   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm0\n vfmadd231ps %%zmm30,%%zmm31,%%zmm1\n"   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm2\n vfmadd231ps %%zmm30,%%zmm31,%%zmm3\n"   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm4\n vfmadd231ps %%zmm30,%%zmm31,%%zmm5\n"   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm6\n vfmadd231ps %%zmm30,%%zmm31,%%zmm7\n"   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm8\n vfmadd231ps %%zmm30,%%zmm31,%%zmm9\n"   \
    "vfmadd231ps %%zmm30,%%zmm31,%%zmm10\n vfmadd231ps %%zmm30,%%zmm31,%%zmm11\n"

/* Six copies of a two-source instruction, each writing its own register
   from zmm12/zmm13 (or ymm12/ymm13 when VEX encodings need the low 16). */
#define SIX(op, src, d1, d2, d3, d4, d5, d6)                                    \
    op " " src "," d1 "\n " op " " src "," d2 "\n " op " " src "," d3 "\n "     \
    op " " src "," d4 "\n " op " " src "," d5 "\n " op " " src "," d6 "\n"
#define ZSIX(op, src) SIX(op, src, "%%zmm14", "%%zmm15", "%%zmm16", "%%zmm17", "%%zmm18", "%%zmm19")
#define YSIX(op, src) SIX(op, src, "%%ymm14", "%%ymm15", "%%ymm14", "%%ymm15", "%%ymm14", "%%ymm15")

/* Eight loads of one kind from `buffer` at the given byte offsets, into
   registers 14 to 21 of kind `x` ("ymm" or "zmm"). */
#define LOAD(op, x, offset, reg) op " " #offset "(%0),%%" x #reg "\n"
#define EIGHT_LOADS(op, x, o0, o1, o2, o3, o4, o5, o6, o7)                      \
    LOAD(op, x, o0, 14) LOAD(op, x, o1, 15) LOAD(op, x, o2, 16)                 \
    LOAD(op, x, o3, 17) LOAD(op, x, o4, 18) LOAD(op, x, o5, 19)                 \
    LOAD(op, x, o6, 20) LOAD(op, x, o7, 21)

/* Four stores of registers 14 and 15 of kind `x`, in turn, to `buffer` at
   the given byte offsets (past the loads' 256 bytes). */
#define STORE(x, reg, offset) "vmovups %%" x #reg "," #offset "(%0)\n"
#define FOUR_STORES(x, o0, o1, o2, o3)                                          \
    STORE(x, 14, o0) STORE(x, 15, o1) STORE(x, 14, o2) STORE(x, 15, o3)

#define CLOBBERS                                                               \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",     \
        "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",  \
        "xmm19", "xmm20", "xmm21", "memory"

static float buffer[512] __attribute__((aligned(64)));

#define TIME(body)                                                             \
    ({                                                                         \
        double t0 = now();                                                     \
        for (long n = 0; n < ITERATIONS; n++)                                  \
            __asm__ volatile(body ::"r"(buffer) : CLOBBERS);                   \
        (now() - t0) / ITERATIONS;                                             \
    })

static double fma_alone;

static void report(const char *what, int count, double seconds) {
    double per_fma = fma_alone / 12;
    printf("%-34s %5.2f FMA slots each\n", what, (seconds - fma_alone) / per_fma / count);
}

int main(void) {
    __asm__ volatile("vxorps %%xmm30,%%xmm30,%%xmm30\n vxorps %%xmm31,%%xmm31,%%xmm31\n"
                     "vxorps %%xmm12,%%xmm12,%%xmm12\n vxorps %%xmm13,%%xmm13,%%xmm13\n"
                     "kxnorw %%k1,%%k1,%%k1" ::: "xmm30", "xmm31", "xmm12", "xmm13", "k1");
    fma_alone = TIME(FMAS);
    printf("12 FMAs alone: %.3f ns per iteration\n", fma_alone * 1e9);
    printf("Each extra instruction beside them (0: its own ports; 1: an FMA's slot):\n");
    report("vunpcklps ymm (in-lane)", 6, TIME(FMAS YSIX("vunpcklps", "%%ymm12,%%ymm13")));
    report("vshufps zmm (in-lane)", 6, TIME(FMAS ZSIX("vshufps", "$0x44,%%zmm12,%%zmm13")));
    report("vunpcklpd zmm (in-lane)", 6, TIME(FMAS ZSIX("vunpcklpd", "%%zmm12,%%zmm13")));
    report("vblendps ymm", 6, TIME(FMAS YSIX("vblendps", "$0xf0,%%ymm12,%%ymm13")));
    report("vblendmps zmm {k}", 6, TIME(FMAS SIX("vblendmps", "%%zmm12,%%zmm13", "%%zmm14%{%%k1%}", "%%zmm15%{%%k1%}", "%%zmm16%{%%k1%}", "%%zmm17%{%%k1%}", "%%zmm18%{%%k1%}", "%%zmm19%{%%k1%}")));
    report("vaddps zmm", 6, TIME(FMAS ZSIX("vaddps", "%%zmm12,%%zmm13")));
    report("vperm2f128 ymm (cross-lane)", 6, TIME(FMAS YSIX("vperm2f128", "$0x31,%%ymm12,%%ymm13")));
    report("vshuff64x2 zmm (cross-lane)", 6, TIME(FMAS ZSIX("vshuff64x2", "$0x4e,%%zmm12,%%zmm13")));
    report("vpermps zmm (cross-lane)", 6, TIME(FMAS ZSIX("vpermps", "%%zmm12,%%zmm13")));
    report("vpermt2ps zmm (cross-lane)", 6, TIME(FMAS ZSIX("vpermt2ps", "%%zmm12,%%zmm13")));
    report("vbroadcastss zmm from L1", 8,
           TIME(FMAS EIGHT_LOADS("vbroadcastss", "zmm", 0, 4, 8, 12, 16, 20, 24, 28)));
    /* A 128- or 256-bit piece broadcast to a zmm register (the row of A
       that a (column, k mod 4) or (column, k mod 8) layout of lanes needs
       for every FMA group, session 24). */
    report("vbroadcastf32x4 zmm from L1", 8,
           TIME(FMAS EIGHT_LOADS("vbroadcastf32x4", "zmm", 0, 16, 32, 48, 64, 80, 96, 112)));
    report("vbroadcastf64x4 zmm from L1", 8,
           TIME(FMAS EIGHT_LOADS("vbroadcastf64x4", "zmm", 0, 32, 64, 96, 128, 160, 192, 224)));
    report("vmovups ymm load from L1", 8,
           TIME(FMAS EIGHT_LOADS("vmovups", "ymm", 0, 32, 64, 96, 128, 160, 192, 224)));
    report("vmovups zmm load from L1", 8,
           TIME(FMAS EIGHT_LOADS("vmovups", "zmm", 0, 64, 128, 192, 256, 320, 384, 448)));
    report("vinsertf128 ymm from L1", 8, TIME(FMAS
        "vinsertf128 $1,(%0),%%ymm12,%%ymm14\n vinsertf128 $1,16(%0),%%ymm12,%%ymm15\n"
        "vinsertf128 $1,32(%0),%%ymm12,%%ymm14\n vinsertf128 $1,48(%0),%%ymm12,%%ymm15\n"
        "vinsertf128 $1,64(%0),%%ymm12,%%ymm14\n vinsertf128 $1,80(%0),%%ymm12,%%ymm15\n"
        "vinsertf128 $1,96(%0),%%ymm12,%%ymm14\n vinsertf128 $1,112(%0),%%ymm12,%%ymm15\n"));
    report("vmovups ymm store to L1", 4, TIME(FMAS FOUR_STORES("ymm", 256, 288, 320, 352)));
    report("vmovups xmm store to L1", 4, TIME(FMAS FOUR_STORES("xmm", 256, 272, 288, 304)));
    report("vmovups zmm store to L1", 4, TIME(FMAS FOUR_STORES("zmm", 256, 320, 384, 448)));
    return 0;
}

//! The gemm's tests: every path (small, blocked, transposed; B packed
//! whole or a k block at a time; each micro-kernel's tile) against a naive
//! loop, and the thread split's bits.

use super::split::Split;
use super::*;
use crate::Element;

fn naive<T: Element>(m: usize, n: usize, k: usize, a: MatRef<T>, b: MatRef<T>) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| Element::to_f64(a.at(i, p)) * Element::to_f64(b.at(p, j)))
                .sum();
        }
    }
    c
}

/// Every layout at sizes that leave partial panels and k blocks. The error
/// allowed is `tolerance` times 4k, the bound on Σ|a·b| (|a|, |b| ≤ 2),
/// which sets the scale of the rounding. Both orders of the k blocks run:
/// B packed whole (the sizes with several k blocks and a small B), and B
/// packed one k block at a time (the last size).
fn check<T: GemmElement>(tolerance: f64) {
    let size = std::mem::size_of::<T>();
    let widest_panel = 32;
    for &(_, n, k) in &[(97, 45, 300), (200, 17, 513)] {
        assert!(k > KC && (n + widest_panel) * k * size <= RESIDENT_B_BYTES);
    }
    assert!(4200 * 1000 * size > RESIDENT_B_BYTES);
    let (a_t, b_rows): (MatRef<T>, MatRef<T>) =
        (MatRef::new(&[], 40, true), MatRef::new(&[], 100, false));
    assert!(transposed::pays(40, 100, 1100, &a_t, &b_rows, true));
    let a_4k: MatRef<T> = MatRef::new(&[], 1024, true);
    assert!(blocked::AReads::of(&a_4k) == blocked::AReads::Packed);
    assert!(blocked::AReads::of(&a_t) == blocked::AReads::InPlace);
    // The first nine run on one thread: through the small-product path
    // where it applies (f32 on AVX-512; each width of its padded rows,
    // n up to 16, 32, 48, 64; 1, 2, 3 and 4 columns past a whole vector by
    // dot products when B is transposed, in groups of rows that m does not
    // fill, and every column so when n < 16: the focal views' 10 as 4, 4
    // and 2, 7 as 4 and 3 over a k of one whole chunk and a part), else
    // through the blocked one.
    let sizes = [
        (1, 1, 1),
        (7, 33, 5),
        (13, 19, 33),
        (50, 50, 64),
        (10, 64, 10),
        (10, 10, 64),
        (5, 7, 20),
        (127, 16, 128),
        (20, 36, 70),
        (97, 45, 300),
        (200, 17, 513),
        (MC + 5, 4200, 1000),
        // A transposed with 4 KiB between its k steps: packed, not read in
        // place (`AReads`).
        (1024, 9, 40),
        // Through its transpose when A is transposed and B is not.
        (40, 100, 1100),
    ];
    let small = sizes
        .iter()
        .filter(|&&(m, n, k)| small::fits::<T>(m, n, k, false));
    let expected = if small::fits::<T>(1, 1, 1, false) {
        9
    } else {
        0
    };
    assert_eq!(small.count(), expected);
    for (index, &(m, n, k)) in sizes.iter().enumerate() {
        let parallel = index >= 9;
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a: Vec<T> = (0..m * k)
                .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 25.0))
                .collect();
            let b: Vec<T> = (0..k * n)
                .map(|i| T::from_f64(((i * 53 % 97) as f64 - 48.0) / 24.0))
                .collect();
            let av = MatRef::new(&a, if ta { m } else { k }, ta);
            let bv = MatRef::new(&b, if tb { k } else { n }, tb);
            // Accumulated onto ones, and written over nothing with a bias
            // and without.
            let mut c = vec![T::one(); m * n];
            gemm(m, n, k, av, bv, &mut c, parallel);
            let bias: Vec<T> = (0..n).map(|j| T::from_f64(j as f64 - 3.5)).collect();
            let fresh = gemm_new(m, n, k, av, bv, Some(&bias), parallel);
            let plain = gemm_new(m, n, k, av, bv, None, parallel);
            let want = naive(m, n, k, av, bv);
            let scale = 4.0 * k as f64;
            for (at, &y) in want.iter().enumerate() {
                let got = [
                    Element::to_f64(c[at]) - 1.0,
                    Element::to_f64(fresh[at]) - Element::to_f64(bias[at % n]),
                    Element::to_f64(plain[at]),
                ];
                for x in got {
                    assert!(
                        (x - y).abs() < tolerance * scale,
                        "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }
}

#[test]
fn matches_a_naive_loop_at_awkward_sizes_and_transposes() {
    check::<f64>(1e-14);
}

/// f32 goes through the explicit-SIMD micro-kernel of this CPU.
#[test]
fn f32_matches_a_naive_loop_too() {
    check::<f32>(1e-6);
}

/// The small products' dot columns add up sixteen vectors' lanes at once
/// in the order of one horizontal sum each, so to the bit: values of
/// magnitudes 2⁻²⁰ to 2²⁰, where any other order of the adds rounds
/// differently.
#[cfg(target_arch = "x86_64")]
#[test]
fn sixteen_lane_totals_are_sixteen_horizontal_sums() {
    use std::arch::x86_64::*;
    if detect_isa() != Isa::Avx512 {
        return;
    }
    let value = |i: usize| {
        let sign = if i.is_multiple_of(3) { -1.0 } else { 1.0 };
        sign * (1.0 + (i * 7919 % 1000) as f32 / 1000.0) * 2f32.powi((i * 37 % 41) as i32 - 20)
    };
    let lanes: [[f32; 16]; 16] =
        std::array::from_fn(|v| std::array::from_fn(|l| value(16 * v + l)));
    // SAFETY: this CPU has AVX-512 (checked above).
    unsafe {
        let vectors = lanes.map(|lanes| _mm512_loadu_ps(lanes.as_ptr()));
        let totals = small::lane_totals(vectors);
        for (v, vector) in vectors.iter().enumerate() {
            assert_eq!(
                totals[v].to_bits(),
                _mm512_reduce_add_ps(*vector).to_bits(),
                "vector {v}"
            );
        }
        // The order matters at these magnitudes: summing in lane order differs somewhere.
        assert!((0..16).any(|v| lanes[v].iter().sum::<f32>().to_bits() != totals[v].to_bits()));
    }
}

/// Sixteen threads cut products with few row blocks into column chunks
/// too (`split.rs`), and the cut changes no bit: each element sums the
/// same terms in the same order on one thread. B both packed whole and
/// one k block at a time; added to C, and written over it with a bias.
#[test]
fn column_chunks_on_many_threads_give_one_threads_bits() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(16)
        .build()
        .unwrap();
    for (m, n, k) in [(192, 200, 300), (130, 97, 700), (MC + 5, 4200, 1000)] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.5).collect();
        let (av, bv) = (MatRef::new(&a, m, true), MatRef::new(&b, n, false));
        let run = |parallel: bool| {
            let mut c = vec![1.0f32; m * n];
            gemm(m, n, k, av, bv, &mut c, parallel);
            (c, gemm_new(m, n, k, av, bv, Some(&bias), parallel))
        };
        let one_thread = run(false);
        // Every f32 kernel's tile (AVX-512, AVX2, portable) is cut.
        for (mr, nr) in [(8, 32), (6, 16), (4, 8)] {
            assert!(Split::plan(m, n.div_ceil(nr), nr, mr, MC, 16).panels < n.div_ceil(nr));
        }
        assert!(one_thread == pool.install(|| run(true)), "{m}x{n}x{k}");
    }
}

/// With nothing to multiply, a new product is its bias, or zeros.
#[test]
fn an_empty_product_is_its_bias() {
    let (a, b) = (
        MatRef::new(&[] as &[f32], 0, false),
        MatRef::new(&[] as &[f32], 2, false),
    );
    assert_eq!(
        gemm_new(3, 2, 0, a, b, Some(&[1.0, 2.0]), true),
        [1.0, 2.0].repeat(3)
    );
    assert_eq!(gemm_new(3, 2, 0, a, b, None, true), vec![0.0; 6]);
}

/// With a leading dimension wider than n, C is a block of columns of a
/// wider matrix: the product is added to those columns, or written over
/// them (across several row blocks, on threads), and every element between
/// them is untouched.
#[test]
fn a_strided_c_gets_only_its_own_columns() {
    // Blocked, on threads; then on one, which takes the small-product path
    // for f32 on AVX-512.
    for (m, parallel) in [(2 * MC + 7, true), (13, false)] {
        strided_c::<f64>(m, parallel);
        strided_c::<f32>(m, parallel);
    }
}

fn strided_c<T: GemmElement>(m: usize, parallel: bool) {
    let (n, k, ldc, first) = (13, 40, 29, 5);
    // Small integers: every sum is exact in f32 as in f64.
    let a: Vec<T> = (0..m * k)
        .map(|i| T::from_f64((i % 7) as f64 - 3.0))
        .collect();
    let b: Vec<T> = (0..k * n)
        .map(|i| T::from_f64((i % 5) as f64 - 2.0))
        .collect();
    let (av, bv) = (MatRef::new(&a, k, false), MatRef::new(&b, n, false));
    let sentinel = |i: usize| -1000.0 - i as f64;
    let want = naive(m, n, k, av, bv);
    let end = first + (m - 1) * ldc + n;
    for overwrite in [false, true] {
        let mut wide: Vec<T> = (0..m * ldc).map(|i| T::from_f64(sentinel(i))).collect();
        if overwrite {
            // SAFETY: `MaybeUninit<T>` has `T`'s layout; the product only writes.
            let c = unsafe { &mut *(&mut wide[first..end] as *mut [T] as *mut [MaybeUninit<T>]) };
            gemm_write_strided(m, n, k, av, bv, c, ldc, parallel);
        } else {
            gemm_strided(m, n, k, av, bv, &mut wide[first..end], ldc, parallel);
        }
        for (at, &x) in wide.iter().enumerate() {
            let (i, j) = (at / ldc, (at % ldc).wrapping_sub(first));
            let expected = match (j < n, overwrite) {
                (true, false) => sentinel(at) + want[i * n + j],
                (true, true) => want[i * n + j],
                (false, _) => sentinel(at),
            };
            assert_eq!(
                Element::to_f64(x),
                expected,
                "row {i}, column {}, overwrite {overwrite}",
                at % ldc
            );
        }
    }
}

//! The blocked multiply's loops: B packed for a phase of k blocks, then C's
//! tasks (row blocks, cut into column chunks where `split.rs` says so), each
//! running the micro-kernel over every pair of its panels of A (read in
//! place, or packed: [`AReads`]) and B's panels, its tiles written straight
//! into C.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::kernels::{APanel, MicroKernel};
use super::pack::{pack_panel, pack_transposed_block, prefetch_for_write};
use super::split::Split;
use super::{MatRef, Output, KC, MAX_TILE, MC, RESIDENT_B_BYTES};
use crate::cpu::scratch::{Role, Scratch, ScratchElement};
use crate::cpu::simd::Isa;

/// B panels that one packing job of a row-major B fills, a k at a time.
const B_PANELS_PER_PACK: usize = 4;

#[allow(clippy::too_many_arguments)]
pub(super) fn blocked<T: ScratchElement, K: MicroKernel<T>>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: Output<T>,
    ldc: usize,
    parallel: bool,
) {
    let (c, overwrite) = c.into_parts();
    let (mr, nr) = (K::MR, K::NR);
    let n_panels = n.div_ceil(nr);
    // Below about a million multiply-adds, a hand-off to another thread
    // costs more than it saves.
    let threads = if parallel && m * n * k >= crate::cpu::PARALLEL_MIN_ELEMENTS * 32 {
        rayon::current_num_threads()
    } else {
        1
    };
    let split = Split::plan(m, n_panels, nr, mr, MC, threads);
    let col_chunks = n_panels.div_ceil(split.panels);
    let tasks = split.tasks(m, n_panels);
    let parallel_pack = parallel && m * n * KC.min(k) >= crate::cpu::PARALLEL_MIN_ELEMENTS * 8;
    let resident = k > KC && n_panels * k * nr * std::mem::size_of::<T>() <= RESIDENT_B_BYTES;
    // k block `kb` covers `k0..k0 + kc`.
    let k_block = |kb: usize| (kb * KC, KC.min(k - kb * KC));
    let k_blocks = k.div_ceil(KC);
    // A row-major B (a weight gradient's activations, whose B is every
    // token) is packed a k at a time across a group of panels, each k's
    // values read in one run (panel by panel, each k gave 128 bytes from a
    // row kilobytes away): the weight gradients +2–4 %. Any other B, panel
    // by panel.
    let row_major_b = b.col_stride == 1;
    let pack_group = if row_major_b { B_PANELS_PER_PACK } else { 1 };
    // A phase packs its k blocks of B, then each task runs them in turn:
    // one phase for all of a resident B, else one per k block.
    let per_phase = if resident { k_blocks } else { 1 };
    let mut packed_b = Scratch::take(Role::PackedB, n_panels * nr * KC.min(k) * per_phase);
    // The tasks write disjoint blocks of C through this pointer: a block of
    // rows and columns is not a slice, so no task holds a `&mut` to C.
    let c = SharedC(c.as_mut_ptr());
    for first in (0..k_blocks).step_by(per_phase) {
        let phase = first..first + per_phase;
        // B's panels are panels of Bᵀ's rows: `nr` columns of B each. A
        // job packs the panels from `jp` on that `panels` has room for.
        let pack = |(k0, kc, jp, panels): (usize, usize, usize, &mut [T])| {
            let cols = (panels.len() / kc).min(n - jp * nr);
            if row_major_b {
                pack_transposed_block(b.transposed(), jp * nr, cols, k0, kc, nr, panels)
            } else {
                pack_panel(b.transposed(), jp * nr, cols, k0, kc, nr, panels)
            }
        };
        // Packed in place, or listed for the threads to share (a list only
        // then: attention's many small products pack on their own thread).
        let mut jobs = Vec::new();
        let mut rest = &mut packed_b[..];
        for kb in phase.clone() {
            let (k0, kc) = k_block(kb);
            let (block, tail) = rest.split_at_mut(n_panels * kc * nr);
            rest = tail;
            for (g, panels) in block.chunks_mut(pack_group * kc * nr).enumerate() {
                if parallel_pack {
                    jobs.push((k0, kc, g * pack_group, panels));
                } else {
                    pack((k0, kc, g * pack_group, panels));
                }
            }
        }
        if parallel_pack {
            jobs.into_par_iter().for_each(pack);
        }
        let packed_b = &*packed_b;
        let task = |t: usize| {
            let (i0, jc) = ((t / col_chunks) * split.rows, t % col_chunks);
            let panels = jc * split.panels..n_panels.min((jc + 1) * split.panels);
            let mut at = 0;
            for kb in phase.clone() {
                let (k0, kc) = k_block(kb);
                let job = RowBlock {
                    a,
                    i0,
                    mc: split.rows.min(m - i0),
                    k0,
                    kc,
                    n,
                    panels: panels.clone(),
                    ldc,
                    packed_b: &packed_b[at + panels.start * kc * nr..][..panels.len() * kc * nr],
                    // SAFETY: row i0 is a row of C, which starts at `c`.
                    c_rows: unsafe { c.get().add(i0 * ldc) },
                    first_write: if k0 == 0 { overwrite } else { None },
                };
                at += n_panels * kc * nr;
                match isa {
                    // SAFETY: the ISA was detected at run time; the tasks'
                    // blocks of C are disjoint.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => unsafe { row_block_avx512::<T, K>(job) },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => unsafe { row_block_avx2::<T, K>(job) },
                    // SAFETY: the portable kernel needs no particular ISA.
                    _ => unsafe { row_block::<T, K>(job) },
                }
            }
        };
        if tasks > 1 && threads > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
    }
}

/// C's first element, shared by the tasks that write its disjoint blocks.
#[derive(Clone, Copy)]
struct SharedC<T>(*mut MaybeUninit<T>);

// SAFETY: each task writes only its own rows and columns of C.
unsafe impl<T: Send> Send for SharedC<T> {}
unsafe impl<T: Send> Sync for SharedC<T> {}

impl<T> SharedC<T> {
    /// The pointer (a method, so that closures capture the `Sync` wrapper).
    fn get(self) -> *mut MaybeUninit<T> {
        self.0
    }
}

/// One rayon task's work for one k block: rows `i0..i0+mc` of C, in the
/// columns of B panels `panels`.
struct RowBlock<'a, T> {
    a: MatRef<'a, T>,
    i0: usize,
    mc: usize,
    k0: usize,
    kc: usize,
    n: usize,
    panels: std::ops::Range<usize>,
    /// C's leading dimension: row i of the block starts at `c_rows + i·ldc`.
    ldc: usize,
    /// B's panels `panels` of this k block.
    packed_b: &'a [T],
    /// Row i0 of C, column 0. The task writes only its rows and columns.
    c_rows: *mut MaybeUninit<T>,
    /// On the first k block of [`Output::Overwrite`], the bias (if any) that
    /// the tiles are written over, instead of being added to C.
    first_write: Option<Option<&'a [T]>>,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn row_block_avx512<T: ScratchElement, K: MicroKernel<T>>(job: RowBlock<T>) {
    row_block::<T, K>(job)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_block_avx2<T: ScratchElement, K: MicroKernel<T>>(job: RowBlock<T>) {
    row_block::<T, K>(job)
}

/// Runs the micro-kernel over every (A panel, B panel) pair of the block and
/// adds each tile to C, reading A as [`AReads`] says.
#[inline(always)]
unsafe fn row_block<T: ScratchElement, K: MicroKernel<T>>(job: RowBlock<T>) {
    let RowBlock {
        a,
        i0,
        mc,
        k0,
        kc,
        n,
        panels,
        ldc,
        packed_b,
        c_rows,
        first_write,
    } = job;
    let (mr, nr) = (K::MR, K::NR);
    let m_panels = mc.div_ceil(mr);
    let whole_panels = mc / mr;
    let reads = AReads::of(&a);
    // The block's last value of A: the kernels read the panels in place
    // without bounds checks.
    assert!((i0 + mc - 1) * a.row_stride + (k0 + kc - 1) * a.col_stride < a.data.len());
    // Panels before `first_packed` are read where A lies; the rest (all of
    // them, or only a last, partial one, whose rows past A's edge are
    // padded with zeros) are packed first.
    let first_packed = match reads {
        AReads::InPlace => whole_panels,
        AReads::Packed => 0,
    };
    let (r0, rows) = (i0 + first_packed * mr, mc - first_packed * mr);
    let mut packed_a = Scratch::take(Role::PackedA, (m_panels - first_packed) * kc * mr);
    if reads == AReads::Packed && a.row_stride == 1 {
        pack_transposed_block(a, r0, rows, k0, kc, mr, &mut packed_a);
    } else {
        for (ip, panel) in packed_a.chunks_exact_mut(kc * mr).enumerate() {
            pack_panel(a, r0 + ip * mr, mr.min(rows - ip * mr), k0, kc, mr, panel);
        }
    }
    let a_panel = |ip: usize| {
        if ip >= first_packed {
            let at = (ip - first_packed) * kc * mr;
            return APanel::packed(&packed_a[at..][..kc * mr], mr);
        }
        // Whole rows ip·MR.. of the block, columns k0..k0 + kc.
        let at = (i0 + ip * mr) * a.row_stride + k0 * a.col_stride;
        let row_major = a.col_stride == 1;
        APanel {
            ptr: a.data[at..].as_ptr(),
            row_major,
            stride: if row_major {
                a.row_stride
            } else {
                a.col_stride
            },
            kc,
        }
    };
    let mut tile = [T::zero(); MAX_TILE];
    let tile = &mut tile[..mr * nr];
    // SAFETY (for the callers): row r of the block, columns j0..j0 + cols,
    // lie inside C and belong to this task alone.
    let c_row = |r: usize, j0: usize, cols: usize| {
        std::slice::from_raw_parts_mut(c_rows.add(r * ldc + j0), cols)
    };
    for (jp, b_panel) in panels.zip(packed_b.chunks_exact(kc * nr)) {
        let j0 = jp * nr;
        let cols = nr.min(n - j0);
        for ip in 0..m_panels {
            let a_panel = a_panel(ip);
            let rows = mr.min(mc - ip * mr);
            for ii in 0..rows {
                prefetch_for_write(c_row(ip * mr + ii, j0, cols));
            }
            if rows == mr && cols == nr {
                let c = c_rows.add((ip * mr) * ldc + j0) as *mut T;
                let first_write = first_write.map(|bias| bias.map(|bias| &bias[j0..]));
                // SAFETY: the tile's MR rows of NR are this task's; C is
                // initialised unless this is the first write, which writes
                // every element.
                K::tile_into_c(a_panel, b_panel, c, ldc, first_write);
                continue;
            }
            K::tile(a_panel, b_panel, tile);
            for (ii, tile_row) in tile.chunks_exact(nr).enumerate().take(rows) {
                let c_row = c_row(ip * mr + ii, j0, cols);
                match first_write {
                    Some(Some(bias)) => {
                        for ((c, &t), &b) in c_row.iter_mut().zip(tile_row).zip(&bias[j0..]) {
                            c.write(t + b);
                        }
                    }
                    Some(None) => {
                        for (c, &t) in c_row.iter_mut().zip(tile_row) {
                            c.write(t);
                        }
                    }
                    None => {
                        for (c, &t) in c_row.iter_mut().zip(tile_row) {
                            // SAFETY: C was initialised by the caller
                            // (`Accumulate`) or by the first k block.
                            unsafe { *c.assume_init_mut() += t };
                        }
                    }
                }
            }
        }
    }
}

/// How a row block's micro-kernels read its whole panels of A (a last,
/// partial panel is always packed, padded with zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AReads {
    /// Where A lies: a panel is `MR` runs of k (A row-major: a forward
    /// product, an input gradient) or `kc` runs of `MR` rows (A k-major: a
    /// weight gradient's `gᵀ`), which stay in cache for the block's next B
    /// panels as a packed copy would. Packing them cost 7 % of a forward
    /// product and 14 % of a weight gradient; read in place, in-process
    /// alternation: products of k = 576 or 768 +8–9 %, the weight
    /// gradients +5–8 %, the others +1–2 %.
    InPlace,
    /// Packed first, as BLIS does: any other strides, and a k-major A
    /// whose k steps lie a multiple of 4 KiB apart, which puts a panel's
    /// every k step in one set of the L1 cache (read in place, a
    /// 1024-wide gradient lost 8 %).
    Packed,
}

impl AReads {
    pub(super) fn of<T>(a: &MatRef<T>) -> AReads {
        let k_step_bytes = a.col_stride * std::mem::size_of::<T>();
        if a.col_stride == 1 || (a.row_stride == 1 && !k_step_bytes.is_multiple_of(4096)) {
            AReads::InPlace
        } else {
            AReads::Packed
        }
    }
}

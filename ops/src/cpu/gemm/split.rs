//! How a product's C is cut into rayon tasks: blocks of rows, and, when the
//! rows alone leave threads idle, chunks of columns too.
//!
//! Row blocks are the natural cut (each packs its own rows of A and streams
//! the shared packed B), but a product with few rows has few of them: a
//! weight gradient of 192 rows is two blocks, which two threads share well
//! and sixteen do not, and 128 rows cut at 96 leave one thread a third of the
//! other's work. So the rows are shared evenly among the blocks, and the
//! columns are cut into chunks of whole B panels where that shortens the
//! slowest thread's work. A chunk costs a second packing of its rows of A,
//! which [`PACK_COST_COLUMNS`] prices. The result does not depend on the cut:
//! each element of C sums the same terms in the same order in any task.

/// Packing a task's rows of A costs about what computing this many columns
/// of them does (a copy through 8×8 transposes against 16-lane FMAs, plus
/// the task's hand-off): the price of one more column chunk.
const PACK_COST_COLUMNS: usize = 8;

/// C's cut: blocks of `rows` rows (the last may be shorter) times chunks of
/// `panels` B panels (the last may be narrower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    pub rows: usize,
    pub panels: usize,
}

impl Split {
    /// The cut of an `m`-row C of `n_panels` panels of `nr` columns for
    /// `threads` threads: blocks of at most `max_rows` rows (itself a
    /// multiple of `mr`), a multiple of `mr`, as even as that allows; then the column chunk whose slowest
    /// thread's work (rounds of tasks times a task's columns plus the
    /// packing) is least, the widest on a tie.
    pub fn plan(
        m: usize,
        n_panels: usize,
        nr: usize,
        mr: usize,
        max_rows: usize,
        threads: usize,
    ) -> Split {
        debug_assert!(
            mr > 0 && max_rows.is_multiple_of(mr),
            "blocks hold whole panels of A"
        );
        let row_blocks = m.div_ceil(max_rows).max(1);
        let rows = m
            .div_ceil(row_blocks)
            .next_multiple_of(mr)
            .clamp(mr, max_rows);
        let row_blocks = m.div_ceil(rows).max(1);
        let threads = threads.max(1);
        let cost = |panels: usize| {
            let tasks = row_blocks * n_panels.div_ceil(panels);
            tasks.div_ceil(threads) * (panels * nr + PACK_COST_COLUMNS)
        };
        let panels = (1..=n_panels.max(1))
            .rev()
            .min_by_key(|&panels| cost(panels))
            .unwrap_or(1);
        Split { rows, panels }
    }

    /// Row blocks times column chunks.
    pub fn tasks(&self, m: usize, n_panels: usize) -> usize {
        m.div_ceil(self.rows) * n_panels.div_ceil(self.panels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 kernel's tile and the gemm's row block.
    fn plan(m: usize, n: usize, threads: usize) -> Split {
        Split::plan(m, n.div_ceil(32), 32, 8, 96, threads)
    }

    #[test]
    fn two_threads_keep_whole_rows_of_the_step_products() {
        for (m, n) in [(5120, 576), (4480, 192), (576, 192), (768, 192), (192, 768)] {
            assert_eq!(plan(m, n, 2).panels, n.div_ceil(32), "{m}×{n}");
        }
        assert_eq!(plan(5120, 576, 2).rows, 96);
    }

    #[test]
    fn rows_are_shared_evenly_among_the_blocks() {
        // 128 rows: 64 and 64, not 96 and 32; 512 rows: six blocks of 88 or less.
        assert_eq!(
            plan(128, 1024, 2),
            Split {
                rows: 64,
                panels: 32
            }
        );
        assert_eq!(plan(512, 1024, 2).rows, 88);
        assert_eq!(plan(5, 64, 2).rows, 8);
    }

    #[test]
    fn few_row_blocks_on_many_threads_cut_the_columns() {
        // fc2's weight gradient: 2 row blocks, 24 panels, 16 threads: 16 tasks.
        let split = plan(192, 768, 16);
        assert_eq!(
            split,
            Split {
                rows: 96,
                panels: 3
            }
        );
        assert_eq!(split.tasks(192, 24), 16);
        // 54 row blocks on 16 threads: four rounds, some half idle, become
        // seven fuller rounds of half-width tasks.
        assert_eq!(plan(5120, 576, 16).panels, 9);
    }

    #[test]
    fn one_thread_never_cuts_the_columns() {
        for (m, n) in [(1, 1), (192, 768), (5120, 576), (100, 33)] {
            assert_eq!(plan(m, n, 1).panels, n.div_ceil(32), "{m}×{n}");
        }
    }
}

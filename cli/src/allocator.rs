//! The `msn` program's memory allocator: mimalloc, told to keep the memory
//! that tensors free for the next step instead of handing it back.

/// Training allocates and frees tensors of tens of megabytes every step; the
/// system allocator hands such blocks back to the kernel each time, and the
/// page faults that follow cost more than some kernels. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (15 in mimalloc 1.x
/// to 3.x, where it was once named `reset_delay`); the Rust bindings name no
/// constant for it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Stops mimalloc from returning freed memory to the kernel (a purge delay of
/// −1). By default it does so after a delay (1 s in mimalloc 3), and the next
/// step then takes every page of its activations afresh: on `fmnist-tiny` the
/// kernel's page clearing was 14 % of the step, and this made steps about
/// 10 % faster (45–49 against 37–45 images/s, alternating). The process keeps
/// its peak footprint until it exits, as PyTorch's caching allocator does on
/// a GPU: the same step needs that much again a second later.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set stores a number that mimalloc reads when it next
    // considers a purge; it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the hand-written option number: option 15 must hold a purge
    /// delay's default (10 ms in mimalloc 2, 1000 in 3) until we change it.
    #[test]
    fn option_15_is_the_purge_delay() {
        // SAFETY: reads an option's value.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(before == 10 || before == 1000, "option 15 = {before}");
        }
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}

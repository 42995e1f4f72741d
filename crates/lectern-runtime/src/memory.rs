//! The process's memory as the memory budget sees it: resident bytes, and handing freed
//! memory back to the operating system after a model is unloaded.

/// Bytes of the process resident in memory now (Linux: `/proc/self/statm`); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Returns the allocator's free memory to the operating system, so that the resident size
/// falls back after a model is unloaded (glibc keeps freed blocks in its arenas otherwise).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`resident_bytes`] once the freed memory is handed back: what the process really holds.
pub fn trimmed_resident_bytes() -> Option<u64> {
    release_free_memory();
    resident_bytes()
}

/// Runs `work`, sampling the resident size every millisecond meanwhile; its result and the
/// largest size seen (`None` where it cannot be read).
pub fn peak_during<T>(work: impl FnOnce() -> T) -> (T, Option<u64>) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// Stops the sampler when the work ends, also by a panic (the scope waits for it).
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = resident_bytes();
            while !done.load(Relaxed) {
                peak = peak.max(resident_bytes());
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            peak.max(resident_bytes())
        });
        let result = {
            let _done = Done(&done);
            work()
        };
        (result, sampler.join().unwrap_or(None))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_to_the_system() {
        let Some(base) = resident_bytes() else { return };
        // blocks under the allocator's mmap threshold, with one kept above them: free alone
        // cannot shrink the heap from its top, only the release gives the pages back
        let blocks: Vec<Vec<u8>> = (0..512).map(|i| vec![i as u8; 64 << 10]).collect();
        let kept = vec![1u8; 64];
        let grown = resident_bytes().unwrap();
        assert!(grown >= base + (24 << 20), "32 MiB touched: {base} -> {grown}");
        drop(blocks);
        release_free_memory();
        let after = resident_bytes().unwrap();
        assert!(after < grown - (16 << 20), "after release: {after}, grown: {grown}");
        drop(kept);
    }

    #[test]
    fn the_peak_of_a_piece_of_work_is_seen() {
        let Some(base) = resident_bytes() else { return };
        let (sum, peak) = peak_during(|| {
            let block = vec![1u8; 64 << 20];
            std::thread::sleep(std::time::Duration::from_millis(20));
            block.iter().map(|b| *b as u64).sum::<u64>()
        });
        assert_eq!(sum, 64 << 20);
        assert!(peak.unwrap() >= base + (60 << 20), "peak {peak:?}, base {base}");
    }

    #[test]
    fn a_panic_in_the_work_stops_the_sampler() {
        let caught = std::panic::catch_unwind(|| peak_during(|| panic!("the engine failed")));
        assert!(caught.is_err());
    }
}

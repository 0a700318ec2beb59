fn main() -> std::process::ExitCode {
    fix_malloc_mmap_threshold();
    tines_audit::cli::main()
}

/// glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed. From
/// then on, the multi-MiB buffers of a long backfill (API pages, journal batches, sink
/// objects) are carved from the arenas of whichever pool thread runs them, and what they
/// free stays resident: peak RSS grew with the length of the history (issue 14: 334 MiB
/// for a 1M-event `collect` into an object store; 126 MiB with the threshold fixed, whose
/// cost was within the noise of the CPU figures). Setting it turns the adjustment off, so
/// blocks of 128 KiB and more are mapped and go back to the system when freed. A threshold
/// given in the environment (`MALLOC_MMAP_THRESHOLD_`) is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_malloc_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}

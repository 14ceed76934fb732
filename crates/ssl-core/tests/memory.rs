//! With the thresholds of `ssl_core::memory` fixed, a step-like pattern (many blocks of a few
//! MiB allocated, touched and freed, again and again) stops page-faulting after its first rounds.
//! With glibc's own thresholds the same pattern maps and faults every round: its trim threshold
//! follows the largest mapped block freed (8 MiB here, so 16 MiB), far below the 160 MiB a round
//! frees at the top of the heap.
//!
//! A test binary of its own without the test harness (`harness = false`): the rounds run on the
//! process's main thread, as the `ssl` binary's training step does, and nothing else runs to
//! move the fault counter. (On other threads glibc's per-thread arenas unmap whole free heaps
//! whatever the thresholds; measured: 26,626 faults a round with or without them.)

fn minor_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt as i64
}

/// One round: 20 blocks of 8 MiB, every page written, then all freed.
fn round() {
    let blocks: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let mut v = vec![0u8; 8 << 20];
            // Write every page (as a tensor's first use does).
            for p in (0..v.len()).step_by(4096) {
                v[p] = i as u8;
            }
            v
        })
        .collect();
    std::hint::black_box(&blocks);
}

fn main() {
    assert!(ssl_core::memory::keep_freed_memory(), "mallopt refused the thresholds");
    // The first rounds grow the heap (and fault) once.
    round();
    round();
    let before = minor_faults();
    for _ in 0..8 {
        round();
    }
    let faults = minor_faults() - before;
    // Each round touches 20 x 8 MiB = 40,960 pages; re-faulting them is ~41,000 faults a round (measured without the call).
    let per_round = faults as f64 / 8.0;
    eprintln!("{per_round:.0} minor faults per round of 40,960 pages");
    assert!(per_round < 2_000.0, "{per_round} minor faults per round: freed memory went back to the system");
    println!("test freed_blocks_are_reused_without_page_faults ... ok");
}

//! With the thresholds of `ssl_core::memory` fixed, a step-like pattern (many blocks of a few
//! MiB allocated, touched and freed, again and again) stops page-faulting after its first rounds.
//! With glibc's own thresholds the same pattern maps and faults every round: its trim threshold
//! follows the largest mapped block freed (8 MiB here, so 16 MiB), far below the 160 MiB a round
//! frees at the top of the heap.
//!
//! Blocks over 32 MiB glibc maps afresh whatever the thresholds: a tensor of 64 MiB faults all
//! its 16,384 pages each time it is made, until `keep_freed_memory` has installed the large-block
//! cache, after which it faults none.
//!
//! The cache's counters are checked in every case; the page-fault counts only where transparent
//! huge pages are not always on (with them, a 64 MiB tensor faults 32 huge pages, not 16,384).
//! Then the cache under stress: four threads allocating and freeing large tensors at once, a
//! size that never recurs aged out, and fork() while another thread allocates.
//!
//! A test binary of its own without the test harness (`harness = false`): the rounds run on the
//! process's main thread, as the `ssl` binary's training step does, and nothing else runs to
//! move the fault counter. (On other threads glibc's per-thread arenas unmap whole free heaps
//! whatever the thresholds; measured: 26,626 faults a round with or without them.)

/// Whether transparent huge pages are always on (page-fault counts then mean something else).
fn huge_pages_always() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| s.contains("[always]"))
}

fn large(mib: i64) -> tch::Tensor {
    tch::Tensor::empty([mib << 20], (tch::Kind::Uint8, tch::Device::Cpu))
}

/// Four threads allocate and free tensors of three large sizes at once: every allocation is
/// counted once, the cache never holds more than its limit, and the process does not grow past
/// what the threads hold plus the cache's limit. 100 rounds a thread; for a minute under
/// `cargo xtask chaos` (`SSL_CHAOS=full`).
fn concurrent_allocation_stays_within_the_limit() {
    let full = std::env::var("SSL_CHAOS").is_ok_and(|v| v == "full");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let before = ssl_core::memory::block_cache_stats().expect("installed");
    let rss_before = resident_bytes();
    let peak_rss = std::sync::atomic::AtomicU64::new(rss_before);
    let rounds = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (peak_rss, rounds) = (&peak_rss, &rounds);
            scope.spawn(move || {
                let mut i = 0;
                while if full { std::time::Instant::now() < deadline } else { i < 100 } {
                    let a = large([34, 48, 64][(i + t) % 3]);
                    let b = large([64, 34, 48][(i * 7 + t) % 3]);
                    std::hint::black_box((&a, &b));
                    let s = ssl_core::memory::block_cache_stats().expect("installed");
                    assert!(s.cached_bytes <= s.limit_bytes, "{s:?}");
                    peak_rss.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
                    rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    let after = ssl_core::memory::block_cache_stats().expect("installed");
    let rounds = rounds.into_inner();
    assert_eq!((after.hits + after.misses) - (before.hits + before.misses), 2 * rounds, "{after:?}");
    assert!(after.cached_bytes <= after.limit_bytes, "{after:?}");
    let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
    assert!(hits > misses, "blocks were reused: {hits} hits, {misses} misses");
    // Eight tensors of at most 64 MiB live at once, the cache's limit, and 64 MiB of slack.
    let bound = rss_before + 8 * (64 << 20) + after.limit_bytes + (64 << 20);
    let peak = peak_rss.into_inner();
    assert!(peak <= bound, "resident memory grew to {peak} bytes, past {bound}");
    eprintln!(
        "{rounds} rounds by 4 threads: {hits} hits, {misses} misses, peak resident {} MiB (bound {} MiB)",
        peak >> 20,
        bound >> 20
    );
    println!("test concurrent_allocation_stays_within_the_limit ... ok");
}

/// The process's resident memory (`VmRSS`), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("VmRSS in kB") * 1024
}

/// A block of a size that never recurs goes back to the system after MAX_AGE large allocations.
fn a_size_that_never_recurs_ages_out() {
    ssl_core::memory::trim_block_cache();
    drop(large(40));
    let before = ssl_core::memory::block_cache_stats().expect("installed");
    assert_eq!(before.cached_bytes, 40 << 20, "{before:?}");
    for _ in 0..=ssl_core::memory::MAX_AGE {
        drop(large(64));
    }
    let after = ssl_core::memory::block_cache_stats().expect("installed");
    assert_eq!(after.aged - before.aged, 1, "{after:?}");
    assert_eq!(after.cached_bytes, 64 << 20, "only the recurring size stays: {after:?}");
    println!("test a_size_that_never_recurs_ages_out ... ok");
}

/// fork() while another thread allocates and frees large tensors: every child can allocate (it
/// did not inherit the cache's lock held) and exits within seconds.
fn fork_while_another_thread_allocates() {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                drop(large(64));
            }
        });
        for _ in 0..20 {
            // SAFETY: the child only allocates a tensor and exits with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = tch::Tensor::f_empty([64 << 20], (tch::Kind::Uint8, tch::Device::Cpu)).is_ok();
                unsafe { libc::_exit(if ok { 0 } else { 3 }) };
            }
            assert!(pid > 0, "fork failed");
            let start = std::time::Instant::now();
            let mut status = 0;
            loop {
                // SAFETY: waitpid on our own child with a valid out-pointer.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if start.elapsed() > std::time::Duration::from_secs(20) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("a child forked while another thread allocated hung (a lock inherited held)");
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    println!("test fork_while_another_thread_allocates ... ok");
}

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

/// One round of large tensors: three of 64 MiB, written in full by `fill_`, then freed.
fn tensor_round() {
    let ts: Vec<tch::Tensor> =
        (0..3).map(|i| tch::Tensor::empty([16 << 20], (tch::Kind::Float, tch::Device::Cpu)).fill_(i)).collect();
    std::hint::black_box(&ts);
}

/// Minor faults per round of [`tensor_round`], over 4 rounds after 2 to warm up.
fn tensor_faults_per_round() -> f64 {
    tensor_round();
    tensor_round();
    let before = minor_faults();
    for _ in 0..4 {
        tensor_round();
    }
    (minor_faults() - before) as f64 / 4.0
}

/// The process's address space in bytes (`VmSize`).
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmSize:")).expect("VmSize");
    line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("VmSize in kB") * 1024
}

/// With 3 x 64 MiB cached and the address space capped 100 MiB above what the process holds, a
/// new 128 MiB tensor fits only once the cached blocks are given back: the cache must not turn
/// a request that would fit into an out-of-memory error.
fn cached_blocks_give_way_when_memory_runs_out() {
    let before = ssl_core::memory::block_cache_stats().expect("installed");
    assert_eq!(before.cached_bytes, 3 * (64 << 20), "{before:?}");
    let mut old: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    let cap = libc::rlimit { rlim_cur: address_space() + (100 << 20), rlim_max: old.rlim_max };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
    let big = tch::Tensor::f_empty([32 << 20], (tch::Kind::Float, tch::Device::Cpu));
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
    let big = big.expect("a 128 MiB tensor that fits once the cache is emptied was refused");
    assert_eq!(big.numel(), 32 << 20);
    let after = ssl_core::memory::block_cache_stats().expect("installed");
    assert_eq!(after.cached_bytes, 0, "the cache kept its blocks: {after:?}");
    drop(big);
    println!("test cached_blocks_give_way_when_memory_runs_out ... ok");
}

fn main() {
    // One thread: LibTorch's intra-op pool would otherwise start (and fault) during the rounds.
    tch::set_num_threads(1);
    let faults_mean_pages = !huge_pages_always();
    if !faults_mean_pages {
        eprintln!("transparent huge pages are always on: page-fault counts are not checked, the cache's counters are");
    }
    let uncached = tensor_faults_per_round();
    eprintln!("{uncached:.0} minor faults per round of 3 x 64 MiB tensors before keep_freed_memory");
    // Each round writes 3 x 16,384 pages; measured 49,000 a round.
    assert!(
        uncached > 40_000.0 || !faults_mean_pages,
        "{uncached} faults a round: large tensors were not mapped afresh before the cache"
    );
    assert!(ssl_core::memory::block_cache_stats().is_none(), "the cache reports counters before it is installed");

    assert!(ssl_core::memory::keep_freed_memory(), "mallopt refused the thresholds or the cache was not installed");
    let cached = tensor_faults_per_round();
    eprintln!("{cached:.0} minor faults per round of 3 x 64 MiB tensors with the large-block cache");
    assert!(
        cached < 1_000.0 || !faults_mean_pages,
        "{cached} faults a round: the large-block cache did not keep the tensors' blocks"
    );
    let stats = ssl_core::memory::block_cache_stats().expect("installed");
    // 6 rounds of 3 tensors: the first round's three blocks are mapped, every later one reused.
    assert_eq!((stats.misses, stats.hits), (3, 15), "{stats:?}");
    assert_eq!((stats.cached_blocks, stats.cached_bytes), (3, 3 * (64 << 20)), "{stats:?}");
    cached_blocks_give_way_when_memory_runs_out();
    ssl_core::memory::trim_block_cache();
    let trimmed = ssl_core::memory::block_cache_stats().expect("installed");
    assert_eq!((trimmed.cached_blocks, trimmed.cached_bytes), (0, 0), "{trimmed:?}");
    println!("test large_tensors_are_reused_without_page_faults ... ok");
    concurrent_allocation_stays_within_the_limit();
    a_size_that_never_recurs_ages_out();
    fork_while_another_thread_allocates();
    ssl_core::memory::trim_block_cache();

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
    assert!(
        per_round < 2_000.0 || !faults_mean_pages,
        "{per_round} minor faults per round: freed memory went back to the system"
    );
    println!("test freed_blocks_are_reused_without_page_faults ... ok");
}

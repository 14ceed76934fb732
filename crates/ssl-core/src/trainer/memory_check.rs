//! Will the plan fit in memory? Measured, not guessed: before the first step, a child process
//! (forked after the model and the optimizer are built, so it holds everything the run holds)
//! collates batches from the data source and runs four training steps on them at the configured
//! batch size (forward, backward, clipping, the optimizer update, whose first call allocates the
//! optimizer's state), then reports how much anonymous memory the steps added at their high
//! points (`RssAnon` after each forward pass, backward pass and update). The estimate of the run's pretraining peak is the
//! parent's resident memory at the fork, plus that growth, plus the batches the loader keeps ready
//! (`prefetch`, plus the one being built). The child's own peak would miss the shared library
//! pages the parent has resident: fork does not copy the page tables of file mappings, so the
//! child's resident memory starts well below the parent's.
//!
//! A plan whose estimate exceeds the memory budget ([`crate::memory::budget`], or
//! `TrainConfig::max_memory`) is refused before any step runs, with the estimate, the budget and
//! the largest halved batch size that the same measurement finds to fit. The parent's weights,
//! buffers (BatchNorm statistics), random generators and loader position are untouched: the
//! child's pass happens in its own copy of the process.
//!
//! CPU only, and one process only: a forked child cannot use a CUDA context, and in a
//! data-parallel run every rank would have to agree. The estimate covers pretraining; the
//! evaluation afterwards lowers its own batch on its own when memory runs out
//! ([`crate::eval::map_batches`]).
use super::{Objective, TrainConfig};
use crate::error::{CoreError, Result};
use crate::loader::DataSource;
use crate::memory::{BudgetSource, MemoryBudget};
use crate::optim::Optimizer;
use rand::SeedableRng;
use std::time::{Duration, Instant};
use tch::{Device, Kind};

/// Training steps a probe runs, each on a batch of its own.
const PROBE_STEPS: usize = 4;

/// How long a probe may take before it is abandoned (and the check skipped with a warning).
const PROBE_TIMEOUT: Duration = Duration::from_secs(300);

/// Measure the plan and refuse it when it cannot fit: the estimated pretraining peak in bytes.
/// `None` when the check does not apply (not on the CPU, data-parallel, turned off), could not
/// run (a warning says why), or the step did not fit where no budget is known.
pub fn check<O, S>(
    cfg: &TrainConfig,
    device: Device,
    objective: &mut O,
    optimizer: &mut Optimizer,
    source: &S,
) -> Result<Option<u64>>
where
    O: Objective + ?Sized,
    S: DataSource<Batch = O::Batch>,
{
    if !cfg.memory_check || device != Device::Cpu || crate::dist::world().is_distributed() || cfg.steps == 0 {
        return Ok(None);
    }
    let budget = match cfg.max_memory {
        Some(bytes) => Some(MemoryBudget { bytes, source: BudgetSource::Flag }),
        None => crate::memory::budget(),
    };
    // `Some(Some(bytes))`: the steps ran, and the run's estimate; `Some(None)`: they ran out of
    // memory; `None`: the probe could not run.
    let mut estimate = |batch: usize| -> Option<Option<u64>> {
        let p = probe(objective, optimizer, source, batch, cfg)?;
        Some(p.fits.then(|| p.peak + p.batch_bytes * (cfg.prefetch as u64 + 1)))
    };
    let Some(first) = estimate(cfg.batch_size) else { return Ok(None) };
    let Some(b) = budget else { return Ok(first) };
    if let Some(bytes) = first.filter(|&bytes| bytes <= b.bytes) {
        return Ok(Some(bytes));
    }
    // The largest halved batch that fits, measured the same way.
    let mut batch = cfg.batch_size / 2;
    let mut fitting = None;
    while batch >= 1 {
        match estimate(batch) {
            Some(Some(bytes)) if bytes <= b.bytes => {
                fitting = Some((batch, bytes));
                break;
            }
            Some(_) => batch /= 2,
            None => break,
        }
    }
    Err(CoreError::WontFit {
        batch_size: cfg.batch_size,
        estimate: match first {
            Some(bytes) => gib(bytes),
            None => format!("more than the {} that a step could allocate", gib(b.bytes)),
        },
        budget: format!("{} ({})", gib(b.bytes), source_name(b.source)),
        suggestion: match fitting {
            Some((batch, bytes)) => format!(
                "--batch-size {batch} fits (about {}); add --grad-accum {} to keep the batch of each update",
                gib(bytes),
                cfg.batch_size.div_ceil(batch) * cfg.grad_accum
            ),
            None => "no batch size fits: free memory, or use a smaller model".into(),
        },
    })
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn source_name(s: BudgetSource) -> &'static str {
    match s {
        BudgetSource::CgroupV2 => "the container's limit, cgroup v2 memory.max",
        BudgetSource::CgroupV1 => "the container's limit, cgroup v1 memory.limit_in_bytes",
        BudgetSource::MemAvailable => "the memory available at start, /proc/meminfo",
        BudgetSource::Flag => "--max-memory",
    }
}

/// What one probe measured.
struct Probe {
    /// Whether the step completed (false: an allocation failed, or the child was killed).
    fits: bool,
    /// The parent's resident memory at the fork plus the child's growth in anonymous memory.
    peak: u64,
    /// The resident memory one collated batch added.
    batch_bytes: u64,
}

/// Fork; in the child, collate a batch of `batch` items and run one forward and backward pass;
/// report the peak. `None` when the probe could not run.
fn probe<O, S>(
    objective: &mut O,
    optimizer: &mut Optimizer,
    source: &S,
    batch: usize,
    cfg: &TrainConfig,
) -> Option<Probe>
where
    O: Objective + ?Sized,
    S: DataSource<Batch = O::Batch>,
{
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe fills the two descriptors it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        eprintln!("warning: memory check skipped: cannot create a pipe");
        return None;
    }
    let at_fork = status_bytes("VmRSS:");
    // SAFETY: the child only runs LibTorch on one thread, writes to the pipe and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::close(fds[0]) };
        let report = child(objective, optimizer, source, batch, cfg);
        let bytes: Vec<u8> = report.iter().flat_map(|v| v.to_le_bytes()).collect();
        unsafe {
            libc::write(fds[1], bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        unsafe { libc::close(fds[0]) };
        eprintln!("warning: memory check skipped: cannot fork");
        return None;
    }
    let status = wait(pid);
    let mut buf = [0u8; 24];
    // SAFETY: reads at most 24 bytes into `buf`.
    let got = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
    unsafe { libc::close(fds[0]) };
    let value = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    match status {
        // 1: the step ran; 0: it ran out of memory; 2: it failed otherwise (the real first step
        // reports that failure, so the check is skipped).
        Some(0) if got == 24 && value(0) < 2 => {
            Some(Probe { fits: value(0) == 1, peak: at_fork + value(1), batch_bytes: value(2) })
        }
        Some(0) if got == 24 => None,
        // Killed (the OOM killer, a container limit): the step does not fit.
        Some(s) if libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGKILL => {
            Some(Probe { fits: false, peak: 0, batch_bytes: 0 })
        }
        _ => {
            eprintln!("warning: memory check skipped: the probe process did not report");
            None
        }
    }
}

/// Wait for the probe, killing it past [`PROBE_TIMEOUT`]; its wait status, `None` if it hung.
fn wait(pid: libc::pid_t) -> Option<libc::c_int> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if r < 0 {
            return None;
        }
        if start.elapsed() > PROBE_TIMEOUT {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The child's work: `[outcome, growth of anonymous resident memory, bytes of one collated
/// batch]`, the outcome 1 (the steps ran), 0 (out of memory) or 2 (another failure).
fn child<O, S>(objective: &mut O, optimizer: &mut Optimizer, source: &S, batch: usize, cfg: &TrainConfig) -> [u64; 3]
where
    O: Objective + ?Sized,
    S: DataSource<Batch = O::Batch>,
{
    // Only this thread exists in the child: LibTorch must not wait for OpenMP workers.
    tch::set_num_threads(1);
    let anon_at_start = status_bytes("RssAnon:");
    let outcome = crate::torch_error::catch(|| -> Option<[u64; 3]> {
        let len = source.len().max(1);
        let (mut batch_bytes, mut highest) = (0, 0);
        let sample = |highest: &mut u64| *highest = (*highest).max(status_bytes("RssAnon:"));
        // Different batches, as the run sees them: a batch's shapes may vary with its content
        // (masks, crop lengths), and what the steps leave resident grows with that variety.
        for step in 0..PROBE_STEPS {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step as u64);
            let items: Vec<S::Item> = (0..len.min(batch * 4))
                .map(|j| (step * batch + j) % len)
                .filter_map(|i| source.get(i, &mut rng).ok())
                .take(batch)
                .collect();
            let before = status_bytes("RssAnon:");
            let collated = source.collate(items, &mut rng);
            batch_bytes = batch_bytes.max(status_bytes("RssAnon:").saturating_sub(before));
            optimizer.zero_grad();
            let out = {
                let _autocast = crate::kernels::Bf16Autocast::new(cfg.bf16, Device::Cpu).ok()?;
                objective.forward(&collated, Device::Cpu).ok()?
            };
            // The anonymous memory at the step's high points: every activation alive after the
            // forward pass, the gradients after the backward pass, the optimizer's state after
            // the update (freed memory may go back to the system in between).
            sample(&mut highest);
            out.loss.to_kind(Kind::Float).backward();
            sample(&mut highest);
            drop(out);
            let _ = optimizer.clip_grad_norm(cfg.clip_norm).ok()?;
            optimizer.step(cfg.lr).ok()?;
            sample(&mut highest);
        }
        Some([1, highest.saturating_sub(anon_at_start), batch_bytes])
    });
    match outcome {
        Ok(Some(r)) => r,
        Err(failure) if failure.out_of_memory() => [0, 0, 0],
        _ => [2, 0, 0],
    }
}

fn status_bytes(field: &str) -> u64 {
    crate::memory::status_bytes(field).unwrap_or(0)
}

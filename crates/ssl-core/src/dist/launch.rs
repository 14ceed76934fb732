//! The built-in launcher behind `--nproc-per-node N`: start N copies of this command as local
//! workers with torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR=127.0.0.1`, a free `MASTER_PORT`), prefix their output lines with their rank,
//! forward SIGINT/SIGTERM to them once, and stop them all when one fails.
//!
//! Workers run in a process group of their own, so a Ctrl-C reaches them once (through the
//! launcher), and they are sent SIGTERM if the launcher dies.
use crate::error::{CoreError, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the other workers get after one failed, from the SIGTERM they are sent then (a dead
/// peer fails their next collective within about a second anyway), before they are killed.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| CoreError::io("127.0.0.1:0", e))?;
    Ok(l.local_addr().map_err(|e| CoreError::io("127.0.0.1:0", e))?.port())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}{}", if s == 9 { " (SIGKILL)" } else { "" }),
        _ => "ended".into(),
    }
}

fn pipe_lines(src: impl Read + Send + 'static, prefix: String, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    // A progress bar's carriage returns become separate lines.
                    for part in text.trim_end_matches('\n').split('\r').filter(|p| !p.is_empty()) {
                        if to_stderr {
                            let _ = writeln!(std::io::stderr().lock(), "{prefix}{part}");
                        } else {
                            let _ = writeln!(std::io::stdout().lock(), "{prefix}{part}");
                        }
                    }
                }
            }
        }
    })
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we started and have not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Run `nproc` workers of this same command with `args` (this process's arguments, plus what
/// the launcher adds, e.g. `--out`), `threads` intra-op threads each, and wait for all of them.
/// Fails naming the first worker that failed.
pub(crate) fn run_workers(nproc: usize, args: &[OsString], threads: Option<i32>) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| CoreError::io("the current executable", e))?;
    let port = free_port()?;
    crate::interrupt::install().map_err(|e| CoreError::io("signal handlers", e))?;
    eprintln!("==> launching {nproc} workers on this node (rendezvous at 127.0.0.1:{port})");
    let mut children: Vec<Option<Child>> = Vec::new();
    let mut pipes = Vec::new();
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(t) = threads {
            cmd.env("OMP_NUM_THREADS", t.to_string());
        }
        // SAFETY: prctl is async-signal-safe; it asks the kernel to SIGTERM the worker if the
        // launcher dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                for c in children.iter().flatten() {
                    signal(c, libc::SIGKILL);
                }
                return Err(CoreError::io(&exe, e));
            }
        };
        let prefix = format!("[rank {rank}/{nproc}] ");
        if let Some(out) = child.stdout.take() {
            pipes.push(pipe_lines(out, prefix.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            pipes.push(pipe_lines(err, prefix, true));
        }
        children.push(Some(child));
    }
    let mut forwarded = false;
    let mut failed: Option<(usize, String)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut any_failed = false;
    let mut stopping = false;
    while children.iter().any(Option::is_some) {
        if crate::interrupt::requested() && !forwarded {
            forwarded = true;
            eprintln!("==> stopping the workers (they checkpoint at their next step)");
            for c in children.iter().flatten() {
                signal(c, libc::SIGTERM);
            }
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                *slot = None;
                any_failed |= !status.success();
                if !status.success() && failed.is_none() && !forwarded {
                    let what = describe(status);
                    eprintln!("error: worker rank {rank}/{nproc} {what}; stopping the others");
                    failed = Some((rank, what));
                    failed_at = Some(Instant::now());
                }
            }
        }
        if let Some(t) = failed_at {
            if !stopping {
                stopping = true;
                for c in children.iter().flatten() {
                    signal(c, libc::SIGTERM);
                }
            }
            if t.elapsed() > GRACE {
                for c in children.iter().flatten() {
                    signal(c, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pipes {
        let _ = p.join();
    }
    match failed {
        Some((rank, what)) => Err(CoreError::WorkerFailed { rank, size: nproc, what }),
        None if any_failed => Err(CoreError::WorkersInterrupted),
        None => Ok(()),
    }
}

//! This process's resource use, as the OS reports it (memory is [`crate::memory`]).

/// User + system CPU seconds of this process (Linux `/proc/self/stat`), 0 where unavailable.
pub(crate) fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on every Linux configuration in use.
    (ticks(11) + ticks(12)) / 100.0
}

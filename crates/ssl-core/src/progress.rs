//! The one progress display of a run: an indicatif bar on a terminal, one-line records otherwise
//! (so logs of batch jobs and CI stay readable), both on stderr.
use std::io::IsTerminal;
use std::time::Instant;

/// Progress of `total` units of work.
pub struct Progress {
    label: String,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    start: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal, one-line records otherwise; `quiet` shows nothing.
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(label.to_owned());
            b
        });
        Self { label: label.into(), total, bar, quiet, start: Instant::now() }
    }

    /// Now at `position`, with a message: the bar moves, or one line is printed.
    pub fn update(&self, position: u64, message: &str) {
        match (&self.bar, self.quiet) {
            (Some(b), _) => {
                b.set_position(position);
                b.set_message(message.to_owned());
            }
            (None, false) => eprintln!(
                "{} {position}/{} [{:.0} s] {message}",
                self.label,
                self.total,
                self.start.elapsed().as_secs_f64()
            ),
            (None, true) => {}
        }
    }

    /// Move the bar without a record (a step that is not a logging step).
    pub(crate) fn tick(&self, position: u64) {
        if let Some(b) = &self.bar {
            b.set_position(position);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

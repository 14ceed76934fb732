//! Learning-rate schedules: linear warmup, then cosine or linear decay to a floor.
//!
//! ```
//! use ssl_core::schedule::{Decay, LrSchedule};
//! let s = LrSchedule { peak: 1e-3, warmup_steps: 10, total_steps: 110, decay: Decay::Cosine, floor: 0.1 };
//! assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);          // end of warmup: the peak
//! assert!((s.lr_at(110) - 1e-4).abs() < 1e-12);         // the end: floor * peak
//! assert!(s.lr_at(0) < s.lr_at(5));                      // warming up
//! ```
use serde::{Deserialize, Serialize};

/// The shape of the decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

/// A warmup-then-decay schedule. `floor` is a fraction of `peak`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
    pub floor: f64,
}

impl LrSchedule {
    /// The learning rate for the update numbered `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let shape = match self.decay {
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Decay::Linear => 1.0 - progress,
            Decay::Constant => 1.0,
        };
        self.peak * (self.floor + (1.0 - self.floor) * shape)
    }
}

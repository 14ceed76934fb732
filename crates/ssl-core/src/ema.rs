//! The exponential-moving-average teacher of BYOL, DINO and data2vec, written once.
//!
//! The teacher's variables live in the objective's own [`VarStore`] under a prefix of their own,
//! without gradients: checkpoints save them with the student (so `--resume` is exact), the
//! optimizer never sees them, and data-parallel ranks start from rank 0's copy and apply the
//! same update to the same averaged student, so they stay identical.
//!
//! After every applied optimizer step `k` of `K`, each teacher variable `t` follows its student
//! `s` as in the papers' reference code, `t = t * m + s * (1 - m)`, with the momentum on
//! BYOL's cosine schedule `m(k) = end - (end - base) * (cos(pi * k / K) + 1) / 2` (DINO's
//! `cosine_scheduler` gives the same values; `base == end` is a constant momentum).
//!
//! ```
//! use ssl_core::ema::{EmaTeacher, MomentumSchedule};
//! use tch::{nn, Device, Kind, Tensor};
//! let vs = nn::VarStore::new(Device::Cpu);
//! let student = vs.root().sub("student").var("w", &[2], nn::Init::Const(1.0));
//! let teacher = vs.root().sub("teacher").zeros_no_train("w", &[2]);
//! let ema = EmaTeacher::new(&vs, "student", "teacher", MomentumSchedule::constant(0.9)).unwrap();
//! ema.update(0, 10);
//! assert!((teacher.double_value(&[0]) - 0.1).abs() < 1e-6);
//! # let _ = (student, Kind::Float, Tensor::zeros([1], (Kind::Float, Device::Cpu)));
//! ```
use crate::error::{CoreError, Result};
use tch::nn::VarStore;
use tch::Tensor;

/// The teacher's momentum over a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MomentumSchedule {
    /// The momentum at step 0 (BYOL: 0.996, DINO: 0.996, data2vec: 0.999).
    pub base: f64,
    /// The momentum at the last step (BYOL and DINO: 1.0; data2vec: 0.9999).
    pub end: f64,
}

impl MomentumSchedule {
    /// A momentum that does not change.
    pub fn constant(m: f64) -> Self {
        MomentumSchedule { base: m, end: m }
    }

    /// The momentum after step `step` of `total`.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        let progress = if total == 0 { 1.0 } else { (step as f64 / total as f64).min(1.0) };
        self.end - (self.end - self.base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
    }
}

/// A teacher whose variables follow the student's. Cloning is cheap and shares the variables.
pub struct EmaTeacher {
    /// `(student, teacher)` variable pairs, by name.
    pairs: Vec<(Tensor, Tensor)>,
    schedule: MomentumSchedule,
}

impl std::fmt::Debug for EmaTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmaTeacher").field("variables", &self.pairs.len()).field("schedule", &self.schedule).finish()
    }
}

impl Clone for EmaTeacher {
    fn clone(&self) -> Self {
        let pairs = self.pairs.iter().map(|(s, t)| (s.shallow_clone(), t.shallow_clone())).collect();
        EmaTeacher { pairs, schedule: self.schedule }
    }
}

impl EmaTeacher {
    /// Pair every variable of `vs` under `teacher.` with the variable of the same name under
    /// `student.`. An error when a teacher variable has no student of its shape, requires a
    /// gradient, or when there is no teacher variable at all.
    pub fn new(vs: &VarStore, student: &str, teacher: &str, schedule: MomentumSchedule) -> Result<Self> {
        let vars = vs.variables();
        let mut names: Vec<&String> = vars.keys().filter(|n| n.starts_with(&format!("{teacher}."))).collect();
        names.sort();
        let mut pairs = Vec::with_capacity(names.len());
        for name in names {
            let t = &vars[name];
            let s_name = format!("{student}.{}", &name[teacher.len() + 1..]);
            let s = vars.get(&s_name).ok_or_else(|| {
                CoreError::InvalidArgument(format!("EMA teacher variable {name} has no student variable {s_name}"))
            })?;
            if s.size() != t.size() {
                return Err(CoreError::InvalidArgument(format!(
                    "EMA teacher variable {name} is {:?} but its student {s_name} is {:?}",
                    t.size(),
                    s.size()
                )));
            }
            if t.requires_grad() {
                return Err(CoreError::InvalidArgument(format!(
                    "EMA teacher variable {name} requires a gradient: create it without training (zeros_no_train)"
                )));
            }
            pairs.push((s.shallow_clone(), t.shallow_clone()));
        }
        if pairs.is_empty() {
            return Err(CoreError::InvalidArgument(format!("no variable under `{teacher}.` to be an EMA teacher")));
        }
        Ok(EmaTeacher { pairs, schedule })
    }

    /// The schedule this teacher follows.
    pub fn schedule(&self) -> MomentumSchedule {
        self.schedule
    }

    /// Number of variables the teacher follows.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the teacher has no variable (never true for one built by [`EmaTeacher::new`]).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Set the teacher to the student (at initialisation, before the first step).
    pub fn copy_student(&self) {
        tch::no_grad(|| {
            for (s, t) in &self.pairs {
                t.shallow_clone().copy_(s);
            }
        });
    }

    /// Follow the student after step `step` of `total`; returns the momentum used.
    pub fn update(&self, step: u64, total: u64) -> f64 {
        let m = self.schedule.at(step, total);
        tch::no_grad(|| {
            for (s, t) in &self.pairs {
                let mut t = t.shallow_clone();
                let _ = t.g_mul_scalar_(m);
                let _ = t.g_add_(&(s * (1.0 - m)));
            }
        });
        m
    }
}

//! The parts of the trainer that are not the toy's happy path: a LibTorch error inside a step,
//! a loader whose every input fails, and the EMA teacher (its update against PyTorch, its place
//! in checkpoints).
use ssl_core::checkpoint;
use ssl_core::ema::{EmaTeacher, MomentumSchedule};
use ssl_core::loader::{DataSource, Skipped};
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{Objective, StepOutput, TrainConfig, Trainer};
use ssl_core::CoreError;
use std::sync::Arc;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        warmup_steps: 3,
        lr: 1e-2,
        log_every: 1,
        checkpoint_every: 100,
        progress: false,
        ..Default::default()
    }
}

/// The toy objective, whose forward pass at `fail_at` asks LibTorch for a product of shapes
/// that cannot be multiplied (as a config that passes validation but not the model would).
struct FailingAt {
    toy: ToyObjective,
    fail_at: u64,
    step: u64,
}

impl Objective for FailingAt {
    type Batch = (Tensor, Tensor);
    fn var_store(&self) -> &VarStore {
        self.toy.var_store()
    }
    fn forward(&mut self, batch: &Self::Batch, device: Device) -> ssl_core::Result<StepOutput> {
        if self.step == self.fail_at {
            let _ = batch.0.matmul(&batch.0);
        }
        self.toy.forward(batch, device)
    }
    fn on_step_end(&mut self, step: u64, total: u64) {
        self.step = step + 1;
        self.toy.on_step_end(step, total)
    }
    fn batch_samples(&self, batch: &Self::Batch) -> usize {
        self.toy.batch_samples(batch)
    }
}

#[test]
fn a_libtorch_error_inside_a_step_is_a_typed_error_and_keeps_the_state_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut obj = FailingAt { toy: ToyObjective::new(Device::Cpu, 4, 3), fail_at: 6, step: 0 };
    let err =
        Trainer::new(config(20), dir.path(), Device::Cpu).fit(&mut obj, Arc::new(ToySource::new(50, 4))).unwrap_err();
    match &err {
        CoreError::StepFailed { step: 6, batch_size: 8, message, saved } => {
            assert!(message.contains("cannot be multiplied"), "{message}");
            assert!(saved.contains("the state before step 6 is saved"), "{saved}");
        }
        other => panic!("expected a failed step 6, got {other}"),
    }
    let saved: Vec<u64> =
        checkpoint::list(dir.path()).iter().map(|c| checkpoint::read_state(c).unwrap().step).collect();
    assert_eq!(saved, vec![6]);
}

/// Every input fails to decode.
struct Unreadable;

impl DataSource for Unreadable {
    type Item = (Vec<f32>, f32);
    type Batch = (Tensor, Tensor);
    fn len(&self) -> usize {
        40
    }
    fn get(&self, index: usize, _rng: &mut rand_chacha::ChaCha8Rng) -> Result<Self::Item, Skipped> {
        Err(Skipped::file(format!("item-{index}.png"), "not an image"))
    }
    fn collate(&self, _items: Vec<Self::Item>, _rng: &mut rand_chacha::ChaCha8Rng) -> Self::Batch {
        unreachable!("no item ever loads")
    }
}

#[test]
fn a_loader_whose_every_input_fails_ends_with_an_error_not_a_spin() {
    let dir = tempfile::tempdir().unwrap();
    let mut obj = ToyObjective::new(Device::Cpu, 4, 3);
    let cfg = TrainConfig { max_failed_inputs_in_row: 30, ..config(5) };
    let err = Trainer::new(cfg, dir.path(), Device::Cpu).fit(&mut obj, Arc::new(Unreadable)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CoreError::Loader(_)), "{msg}");
    // Counted at the end of each batch of 8: the first batch boundary at or past 30.
    assert!(msg.contains("32 inputs in a row failed to load") && msg.contains("not an image"), "{msg}");
    assert!(msg.contains("nothing to save"), "{msg}");
    assert!(checkpoint::list(dir.path()).is_empty());
}

// The reference, PyTorch 2.13 (BYOL's update rule and cosine schedule):
// import torch, math
// t = torch.tensor([0.5, -1.0, 2.0]); s = torch.tensor([1.0, 0.25, -3.0])
// base, end, K = 0.9, 1.0, 4
// for k in range(4):
//     m = end - (end - base) * (math.cos(math.pi * k / K) + 1) / 2
//     t = t * m + s * (1 - m)
//     print(k, repr(m), [float(x) for x in t])
const REFERENCE: [(f64, [f64; 3]); 4] = [
    (0.9, [0.550000011920929, -0.875, 1.5]),
    (0.9146446609406726, [0.5884099006652832, -0.778975248336792, 1.115900993347168]),
    (0.95, [0.608989417552948, -0.7275264859199524, 0.9101059436798096]),
    (0.9853553390593274, [0.6147156357765198, -0.713210940361023, 0.8528437614440918]),
];

#[test]
fn the_ema_update_and_its_momentum_schedule_match_pytorch_step_by_step() {
    let vs = VarStore::new(Device::Cpu);
    let mut student = vs.root().sub("student").zeros("w", &[3]);
    let teacher = vs.root().sub("teacher").zeros_no_train("w", &[3]);
    tch::no_grad(|| {
        student.copy_(&Tensor::from_slice(&[1.0f32, 0.25, -3.0]));
        teacher.shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, -1.0, 2.0]));
    });
    let ema = EmaTeacher::new(&vs, "student", "teacher", MomentumSchedule { base: 0.9, end: 1.0 }).unwrap();
    for (k, (m, want)) in REFERENCE.iter().enumerate() {
        let used = ema.update(k as u64, 4);
        assert!((used - m).abs() < 1e-12, "step {k}: momentum {used} against {m}");
        for (i, w) in want.iter().enumerate() {
            let got = teacher.double_value(&[i as i64]);
            assert!((got - w).abs() < 1e-6, "step {k}, value {i}: {got} against {w}");
        }
    }
    // Mutation check of the pairing: a teacher variable without its student is refused.
    let _ = vs.root().sub("teacher").zeros_no_train("orphan", &[1]);
    let err = EmaTeacher::new(&vs, "student", "teacher", MomentumSchedule::constant(0.5)).unwrap_err();
    assert!(err.to_string().contains("teacher.orphan"), "{err}");
}

/// A student MLP regressed onto the targets, plus a teacher copy that follows it.
struct WithTeacher {
    vs: VarStore,
    net: nn::Sequential,
}

impl WithTeacher {
    fn new() -> Self {
        let _rng = ssl_core::rng::torch_rng(7);
        let vs = VarStore::new(Device::Cpu);
        let student = vs.root().sub("student");
        let net = nn::seq().add(nn::linear(&student / "fc", 4, 1, Default::default()));
        let teacher = vs.root().sub("teacher");
        let _ = teacher.sub("fc").zeros_no_train("weight", &[1, 4]);
        let _ = teacher.sub("fc").zeros_no_train("bias", &[1]);
        let me = WithTeacher { vs, net };
        me.teacher().unwrap().copy_student();
        me
    }
    fn teacher_weights(&self) -> Tensor {
        self.vs.variables()["teacher.fc.weight"].copy()
    }
}

impl Objective for WithTeacher {
    type Batch = (Tensor, Tensor);
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &Self::Batch, _device: Device) -> ssl_core::Result<StepOutput> {
        let loss = (self.net.forward(&batch.0).squeeze_dim(1) - &batch.1).square().mean(Kind::Float);
        Ok(StepOutput { loss, metrics: vec![] })
    }
    fn batch_samples(&self, batch: &Self::Batch) -> usize {
        batch.0.size()[0] as usize
    }
    fn teacher(&self) -> Option<EmaTeacher> {
        EmaTeacher::new(&self.vs, "student", "teacher", MomentumSchedule { base: 0.9, end: 1.0 }).ok()
    }
}

#[test]
fn the_trainer_updates_the_teacher_and_a_resumed_run_ends_with_the_same_teacher() {
    let train = |dir: &std::path::Path, resume: bool| {
        let mut obj = WithTeacher::new();
        let cfg = TrainConfig { checkpoint_every: 5, keep_checkpoints: 10, ..config(12) };
        Trainer::new(cfg, dir, Device::Cpu).resuming(resume).fit(&mut obj, Arc::new(ToySource::new(50, 4))).unwrap();
        obj
    };
    let full_dir = tempfile::tempdir().unwrap();
    let full = train(full_dir.path(), false);
    let start = WithTeacher::new();
    assert!(!full.teacher_weights().equal(&start.teacher_weights()), "the teacher moved");
    let student = full.vs.variables()["student.fc.weight"].copy();
    assert!(!full.teacher_weights().equal(&student), "the teacher lags the student");

    let dir = tempfile::tempdir().unwrap();
    let _ = train(dir.path(), false);
    for ckpt in checkpoint::list(dir.path()) {
        if checkpoint::read_state(&ckpt).unwrap().step > 5 {
            std::fs::remove_dir_all(ckpt).unwrap();
        }
    }
    let resumed = train(dir.path(), true);
    assert!(resumed.teacher_weights().equal(&full.teacher_weights()), "the teacher is restored with its student");
}

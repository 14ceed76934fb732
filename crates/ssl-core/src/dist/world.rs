//! Which process this is in a data-parallel run, read from the launcher's environment.
//!
//! Three launchers are understood, in this order:
//! 1. torchrun's contract (also what `--nproc-per-node` sets for its workers): `RANK`,
//!    `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, and
//!    `TORCHELASTIC_*` when torchrun's agent hosts the store;
//! 2. Slurm's `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`,
//!    with `MASTER_ADDR` and `MASTER_PORT` set by the job script;
//! 3. otherwise one process.
//!
//! ```
//! use ssl_core::dist::World;
//! let env = [("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
//! let w = World::from_vars(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
//! assert_eq!((w.rank, w.size, w.local_rank), (1, 2, 1));
//! assert!(!w.serves_store());
//! ```
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// Who started the processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Launcher {
    /// One process, no communication.
    Single,
    /// torchrun's variables (or `--nproc-per-node`, which sets the same ones). With
    /// `agent_store`, torchrun's agent hosts the TCPStore and every rank is a client under the
    /// prefix `/worker/attempt_<restart_count>`.
    Torchrun { agent_store: bool, restart_count: u64 },
    /// Slurm's `srun`.
    Slurm,
}

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub local_size: usize,
    /// Where the TCPStore listens (rank 0's host, or torchrun's agent).
    pub master_addr: String,
    pub master_port: u16,
    pub launcher: Launcher,
}

impl Default for World {
    fn default() -> Self {
        World::single()
    }
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(msg.into())
}

fn number<T: std::str::FromStr>(var: &str, value: Option<String>) -> Result<Option<T>> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| invalid(format!("{var}={v} is not a valid number"))),
    }
}

impl World {
    /// This rank's training device for the `--device` value `spec`: one GPU per process, so in
    /// a data-parallel run `cuda` means `cuda:LOCAL_RANK`; anything else is taken as written.
    ///
    /// ```
    /// let w = ssl_core::dist::World::single();
    /// assert_eq!(w.device("cpu").unwrap(), tch::Device::Cpu);
    /// ```
    pub fn device(&self, spec: &str) -> Result<tch::Device> {
        match (self.is_distributed(), spec) {
            (true, "cuda") => crate::device::parse(&format!("cuda:{}", self.local_rank)),
            _ => crate::device::parse(spec),
        }
    }

    /// A run of one process.
    pub fn single() -> Self {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            local_size: 1,
            master_addr: String::new(),
            master_port: 0,
            launcher: Launcher::Single,
        }
    }

    /// This process's world, from its environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The world described by the variables `var` returns (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let rank: Option<usize> = number("RANK", var("RANK"))?;
        let size: Option<usize> = number("WORLD_SIZE", var("WORLD_SIZE"))?;
        let slurm_rank: Option<usize> = number("SLURM_PROCID", var("SLURM_PROCID"))?;
        let slurm_size: Option<usize> = number("SLURM_NTASKS", var("SLURM_NTASKS"))?;
        let world = match (rank, size, slurm_rank, slurm_size) {
            (Some(rank), Some(size), _, _) => {
                let local_rank = number("LOCAL_RANK", var("LOCAL_RANK"))?.unwrap_or(rank);
                let local_size = number("LOCAL_WORLD_SIZE", var("LOCAL_WORLD_SIZE"))?.unwrap_or(size);
                let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let restart_count =
                    number("TORCHELASTIC_RESTART_COUNT", var("TORCHELASTIC_RESTART_COUNT"))?.unwrap_or(0);
                World {
                    rank,
                    size,
                    local_rank,
                    local_size,
                    master_addr: String::new(),
                    master_port: 0,
                    launcher: Launcher::Torchrun { agent_store, restart_count },
                }
            }
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(invalid("RANK and WORLD_SIZE must be set together (torchrun sets both)"))
            }
            (None, None, Some(rank), Some(size)) if size > 1 => {
                let local_rank = number("SLURM_LOCALID", var("SLURM_LOCALID"))?.unwrap_or(0);
                // `SLURM_NTASKS_PER_NODE` may read "2(x3)" (2 tasks on each of 3 nodes).
                let per_node = var("SLURM_NTASKS_PER_NODE")
                    .and_then(|v| v.split('(').next().and_then(|n| n.trim().parse::<usize>().ok()))
                    .unwrap_or(size);
                World {
                    rank,
                    size,
                    local_rank,
                    local_size: per_node,
                    master_addr: String::new(),
                    master_port: 0,
                    launcher: Launcher::Slurm,
                }
            }
            _ => return Ok(World::single()),
        };
        world.with_master(var)
    }

    fn with_master(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if self.size == 0 || self.rank >= self.size {
            return Err(invalid(format!("rank {} is outside a world of {} processes", self.rank, self.size)));
        }
        if self.local_size == 0 || self.local_rank >= self.local_size {
            return Err(invalid(format!(
                "local rank {} is outside the {} processes of this node",
                self.local_rank, self.local_size
            )));
        }
        if self.size == 1 {
            // torchrun --nproc-per-node 1: nothing to talk to.
            return Ok(World { launcher: self.launcher, ..World::single() });
        }
        let how = match self.launcher {
            Launcher::Slurm => {
                " (in the job script, e.g. export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1) \
                 and MASTER_PORT=29500)"
            }
            _ => " (torchrun and --nproc-per-node set it)",
        };
        self.master_addr = var("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| invalid(format!("a run of {} processes needs MASTER_ADDR{how}", self.size)))?;
        self.master_port = number::<u16>("MASTER_PORT", var("MASTER_PORT"))?
            .ok_or_else(|| invalid(format!("a run of {} processes needs MASTER_PORT{how}", self.size)))?;
        Ok(self)
    }

    /// Whether more than one process takes part.
    pub fn is_distributed(&self) -> bool {
        self.size > 1
    }

    /// Rank 0 alone writes run artefacts and evaluates.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Whether this process hosts the TCPStore: rank 0, unless torchrun's agent hosts it.
    pub fn serves_store(&self) -> bool {
        self.rank == 0 && !matches!(self.launcher, Launcher::Torchrun { agent_store: true, .. })
    }

    /// The key prefix inside the store (torchrun's agent store namespaces each restart).
    pub(crate) fn store_prefix(&self) -> String {
        match self.launcher {
            Launcher::Torchrun { agent_store: true, restart_count } => format!("/worker/attempt_{restart_count}"),
            _ => String::new(),
        }
    }

    /// `rank r/N`, for log lines.
    pub fn tag(&self) -> String {
        format!("rank {}/{}", self.rank, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<World> {
        World::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn nothing_set_is_one_process() {
        let w = world(&[]).unwrap();
        assert!(!w.is_distributed());
        assert!(w.is_main());
        assert_eq!(w.launcher, Launcher::Single);
    }

    #[test]
    fn torchrun_variables_win_and_its_agent_store_makes_every_rank_a_client() {
        let w = world(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "0"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "3"),
            ("SLURM_PROCID", "7"),
            ("SLURM_NTASKS", "8"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank, w.local_size), (0, 4, 0, 2));
        assert_eq!((w.master_addr.as_str(), w.master_port), ("10.0.0.1", 29400));
        assert!(!w.serves_store(), "the agent hosts the store");
        assert_eq!(w.store_prefix(), "/worker/attempt_3");
    }

    #[test]
    fn slurm_variables_make_a_world_and_need_a_master() {
        let base =
            [("SLURM_PROCID", "3"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "1"), ("SLURM_NTASKS_PER_NODE", "2(x2)")];
        let e = world(&base).unwrap_err().to_string();
        assert!(e.contains("MASTER_ADDR") && e.contains("scontrol"), "{e}");
        let mut vars = base.to_vec();
        vars.extend([("MASTER_ADDR", "node1"), ("MASTER_PORT", "29500")]);
        let w = world(&vars).unwrap();
        assert_eq!((w.rank, w.size, w.local_rank, w.local_size), (3, 4, 1, 2));
        assert_eq!(w.launcher, Launcher::Slurm);
        assert!(!w.serves_store());
        assert!(world(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap().launcher == Launcher::Single);
    }

    #[test]
    fn inconsistent_variables_are_named() {
        for (vars, want) in [
            (vec![("RANK", "2"), ("WORLD_SIZE", "2")], "outside a world of 2"),
            (vec![("RANK", "x"), ("WORLD_SIZE", "2")], "RANK=x"),
            (vec![("RANK", "0")], "RANK and WORLD_SIZE"),
            (
                vec![("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")],
                "MASTER_PORT=70000",
            ),
            (vec![("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")], "needs MASTER_PORT"),
        ] {
            let e = world(&vars).unwrap_err().to_string();
            assert!(e.contains(want), "{vars:?}: {e}");
        }
    }
}

//! `timing.json`: how long a run's generation took, summed over every session that generated
//! (a resumed run adds its own), with the machine it ran on, so `detox compare` can put
//! generations per second and cost side by side. It lives apart from `metrics.json`, which
//! must be the same for a resumed run and an uninterrupted one; a session killed before it
//! ends adds nothing (its prompts are then simply not timed).

use crate::error::EvalError;
use crate::folder::RunFolder;
use serde::{Deserialize, Serialize};

/// The file's name in a run folder.
pub const TIMING_FILE: &str = "timing.json";

/// Generation time of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall seconds spent generating (scoring included), over the timed sessions.
    pub seconds: f64,
    /// Prompts generated in those sessions.
    pub prompts: usize,
    /// Samples kept (prompts × k).
    pub generations: usize,
    /// Rows decoded: the samples kept and every spare the test-time filter decoded, used or
    /// not.
    pub sampled: usize,
    /// The CPU's model name (`/proc/cpuinfo`); sessions on different CPUs are joined by ` + `.
    pub cpu: String,
    /// Whether detox's kernels ran with AVX-512 (`DETOX_CPU=avx2` makes this false on an
    /// AVX-512 CPU); false when any session ran without.
    pub avx512: bool,
    /// Compute threads.
    pub threads: usize,
}

impl Timing {
    /// One session's timing on this machine.
    pub fn measured(
        seconds: f64,
        prompts: usize,
        generations: usize,
        sampled: usize,
        threads: usize,
    ) -> Self {
        Self {
            seconds,
            prompts,
            generations,
            sampled,
            cpu: detox_kernels::cpu::model_name(),
            avx512: detox_kernels::isa() == detox_kernels::Isa::Avx512,
            threads,
        }
    }

    /// Generations kept per second (`None` without a positive time).
    pub fn generations_per_sec(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.seconds.is_finite())
            .then(|| self.generations as f64 / self.seconds)
    }

    /// Adds a session's timing to the folder's `timing.json` (written atomically; a session
    /// that generated nothing adds nothing; an unreadable file is started afresh).
    pub fn add(folder: &RunFolder, session: Self) -> Result<(), EvalError> {
        if session.prompts == 0 {
            return Ok(());
        }
        let path = folder.path(TIMING_FILE);
        let before: Option<Self> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let total = match before {
            None => session,
            Some(b) => Self {
                seconds: b.seconds + session.seconds,
                prompts: b.prompts + session.prompts,
                generations: b.generations + session.generations,
                sampled: b.sampled + session.sampled,
                cpu: if b.cpu.split(" + ").any(|c| c == session.cpu) {
                    b.cpu
                } else {
                    format!("{} + {}", b.cpu, session.cpu)
                },
                avx512: b.avx512 && session.avx512,
                threads: session.threads,
            },
        };
        folder.write_json(TIMING_FILE, &total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_add_up_and_an_idle_one_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (folder, _) = RunFolder::open(dir.path(), &serde_json::json!({"a": 1}), 3).unwrap();
        let one = |s: f64, p: usize| Timing {
            seconds: s,
            prompts: p,
            generations: p * 2,
            sampled: p * 3,
            cpu: "cpu A".into(),
            avx512: true,
            threads: 2,
        };
        Timing::add(&folder, one(2.0, 1)).unwrap();
        Timing::add(&folder, one(3.0, 2)).unwrap();
        Timing::add(&folder, one(9.0, 0)).unwrap();
        let mut other = one(1.0, 1);
        other.cpu = "cpu B".into();
        other.avx512 = false;
        Timing::add(&folder, other).unwrap();
        let t: Timing =
            serde_json::from_str(&std::fs::read_to_string(folder.path(TIMING_FILE)).unwrap())
                .unwrap();
        assert_eq!(
            (t.seconds, t.prompts, t.generations, t.sampled),
            (6.0, 4, 8, 12)
        );
        assert_eq!(t.cpu, "cpu A + cpu B");
        assert!(!t.avx512);
        assert!((t.generations_per_sec().unwrap() - 8.0 / 6.0).abs() < 1e-12);
    }
}

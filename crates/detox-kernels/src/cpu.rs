//! The instruction set detox's own CPU kernels use, and the CPU they run on.
//!
//! [`isa`] is the best level the CPU supports ([`detected`]), unless the `DETOX_CPU`
//! environment variable asks for a lower one: `DETOX_CPU=avx2` runs the AVX2 + FMA kernels on
//! an AVX-512 machine, so that the path most machines take can be measured and tested anywhere;
//! `DETOX_CPU=generic` turns detox's own x86 kernels off (candle's kernels run, as on ARM).
//! The choice is made once per process.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that lowers the instruction set.
pub const ENV_VAR: &str = "DETOX_CPU";

/// An instruction-set level for detox's kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No detox kernels: candle's own code paths (and portable Rust) run.
    Generic,
    /// x86-64 with AVX2 and FMA (Intel Haswell and later, AMD Zen 1-3).
    Avx2,
    /// x86-64 with AVX-512 F (Intel Skylake-SP and later server chips, AMD Zen 4 and later).
    Avx512,
}

impl Isa {
    /// The name `DETOX_CPU` accepts and reports print.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a `DETOX_CPU` value (case-insensitive; `native` means the detected level).
    pub fn parse(value: &str) -> Result<Self, CpuError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "native" | "" => Ok(detected()),
            "generic" | "portable" => Ok(Isa::Generic),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx-512" => Ok(Isa::Avx512),
            _ => Err(CpuError::Unknown(value.to_string())),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `DETOX_CPU` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    /// Not one of the known names.
    #[error("{ENV_VAR}={0:?} is not an instruction set: use native, avx512, avx2 or generic")]
    Unknown(String),
    /// Higher than this CPU supports.
    #[error("{ENV_VAR}={asked} asks for more than this CPU supports (it has {has})")]
    Unsupported {
        /// The level asked for.
        asked: Isa,
        /// The best level the CPU has.
        has: Isa,
    },
}

/// The best level this CPU supports.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Generic
}

/// The level asked for by a `DETOX_CPU` value (`None`: unset), checked against this CPU.
pub fn resolve(value: Option<&str>) -> Result<Isa, CpuError> {
    resolve_on(value, detected())
}

/// [`resolve`] on a CPU whose best level is `has`.
fn resolve_on(value: Option<&str>, has: Isa) -> Result<Isa, CpuError> {
    let Some(value) = value else {
        return Ok(has);
    };
    let asked = Isa::parse(value)?;
    if asked > has {
        return Err(CpuError::Unsupported { asked, has });
    }
    Ok(asked)
}

/// Checks `DETOX_CPU` and fixes the level for this process. Programs call this first so that a
/// bad value is a clear error; [`isa`] called without it falls back to the detected level.
pub fn init() -> Result<Isa, CpuError> {
    let value = std::env::var(ENV_VAR).ok();
    let chosen = resolve(value.as_deref())?;
    Ok(*CHOSEN.get_or_init(|| chosen))
}

static CHOSEN: OnceLock<Isa> = OnceLock::new();

/// The level detox's kernels use in this process (see the module documentation).
pub fn isa() -> Isa {
    *CHOSEN.get_or_init(|| {
        let value = std::env::var(ENV_VAR).ok();
        resolve(value.as_deref()).unwrap_or_else(|e| {
            tracing::warn!("{e}; using {}", detected());
            detected()
        })
    })
}

/// The CPU's model name (`/proc/cpuinfo`'s `model name` on Linux), else the architecture.
pub fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown {} CPU", std::env::consts::ARCH))
}

/// One line for reports and benchmarks: the CPU, what it supports and what is used, e.g.
/// `AMD EPYC 7B13; has avx2; kernels avx2`.
pub fn describe() -> String {
    let has = detected();
    let used = isa();
    let forced = if used == has {
        String::new()
    } else {
        format!(" ({ENV_VAR}={used})")
    };
    format!(
        "{}; has {has}; kernels {used}{forced}; {} hardware threads",
        model_name(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_errors() {
        assert_eq!(Isa::parse("AVX2"), Ok(Isa::Avx2));
        assert_eq!(Isa::parse("avx512"), Ok(Isa::Avx512));
        assert_eq!(Isa::parse("generic"), Ok(Isa::Generic));
        assert_eq!(Isa::parse("native"), Ok(detected()));
        let err = Isa::parse("sse9").unwrap_err();
        assert!(err.to_string().contains("DETOX_CPU=\"sse9\""), "{err}");
    }

    #[test]
    fn a_level_above_the_cpu_is_refused_and_lower_ones_are_kept() {
        assert_eq!(resolve(None), Ok(detected()));
        assert_eq!(resolve(Some("generic")), Ok(Isa::Generic));
        assert_eq!(resolve_on(None, Isa::Avx2), Ok(Isa::Avx2));
        assert_eq!(resolve_on(Some("avx2"), Isa::Avx512), Ok(Isa::Avx2));
        assert_eq!(
            resolve_on(Some("avx512"), Isa::Avx2),
            Err(CpuError::Unsupported {
                asked: Isa::Avx512,
                has: Isa::Avx2
            })
        );
        assert!(matches!(
            resolve_on(Some("avx2"), Isa::Generic),
            Err(CpuError::Unsupported { .. })
        ));
    }
}

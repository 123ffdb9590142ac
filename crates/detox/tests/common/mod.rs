//! What more than one of the `detox` binary's test files needs.

use std::path::PathBuf;
use std::process::Command;

/// SmolLM2 in the model cache, if pulled (skipped locally when not; a failure when CI is set).
pub fn cached_smollm2() -> Option<PathBuf> {
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["--offline", "models", "path", "smollm2"])
        .output()
        .ok()?;
    if !detox_core::testing::require(
        "smollm2 in the model cache (`detox models pull smollm2`)",
        out.status.success(),
    ) {
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

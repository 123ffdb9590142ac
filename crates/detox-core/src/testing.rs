//! Test support: requirements that skip visibly on a developer's machine and fail in CI.
//!
//! Tests that need something CI installs (a pulled model, `../shared`, a Python package)
//! call [`require`] first. When the thing is missing and the `CI` environment variable is set,
//! the test fails: CI pulled it, so its absence is a bug. Otherwise the test prints a line
//! starting with `SKIPPED:` on stdout and returns early; `cargo test` shows it with
//! `--nocapture`, and the test's name says what it needs.
//!
//! ```
//! use detox_core::testing::require;
//! let model = std::env::temp_dir(); // e.g. a pulled model's folder
//! if !require("a pulled model", model.exists()) {
//!     return; // skipped here; under CI, `require` has panicked instead
//! }
//! ```

/// Whether the test may go on: `present` is whether `what` is available. Missing under CI is a
/// failure (panic); missing elsewhere prints `SKIPPED: <what> is missing` and returns false.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{what} is missing, but CI (the CI environment variable) must have it");
    }
    println!("SKIPPED: {what} is missing (in CI this test fails instead)");
    false
}

/// Whether this is a CI run (`CI` set to anything but `false` or `0`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

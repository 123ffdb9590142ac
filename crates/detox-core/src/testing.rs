//! Test support: requirements that skip visibly on a developer's machine and fail in CI.
//!
//! Tests that need something CI installs (a pulled model, `../shared`, a Python package)
//! call [`require`] first. When the thing is missing and the `CI` environment variable is set,
//! the test fails: CI pulled it, so its absence is a bug. Otherwise the test writes a line
//! starting with `SKIPPED:` straight to the process's stderr (not through `eprintln!`, which
//! the test harness captures and hides for passing tests), so the skip shows in the plain
//! `cargo test` output, and returns early.
//!
//! ```
//! use detox_core::testing::require;
//! let model = std::env::temp_dir(); // e.g. a pulled model's folder
//! if !require("a pulled model", model.exists()) {
//!     return; // skipped here; under CI, `require` has panicked instead
//! }
//! ```

/// Whether the test may go on: `present` is whether `what` is available. Missing under CI is a
/// failure (panic); missing elsewhere shows `SKIPPED: <what> is missing` in the test output
/// and returns false.
pub fn require(what: &str, present: bool) -> bool {
    use std::io::Write;
    if present {
        return true;
    }
    if in_ci() {
        panic!("{what} is missing, but CI (the CI environment variable) must have it");
    }
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Written to the real stderr: the harness captures `println!`/`eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {name}: {what} is missing (in CI this test fails instead)"
    );
    false
}

/// Whether this is a CI run (`CI` set to anything but `false` or `0`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// A JSON array of number arrays (a fixture's expected logits or embeddings) as f32 rows.
/// A value that is not a number becomes NaN, so a comparison with it fails
/// ([`crate::compare::max_abs_diff_rows`]); a value that is not an array of arrays panics.
pub fn json_matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    let rows = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of rows, got {v}"));
    rows.iter()
        .map(|r| {
            r.as_array()
                .unwrap_or_else(|| panic!("expected a row of numbers, got {r}"))
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32).unwrap_or(f32::NAN))
                .collect()
        })
        .collect()
}

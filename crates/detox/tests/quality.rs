//! `detox quality` as a user runs it, on the committed fixture of detox-train
//! (`crates/detox-train/tests/fixtures/quality`, laid out like `../shared/data`) with the
//! built-in n-gram scorer, which needs no download.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_detox"));
    c.env_remove("DETOX_OFFLINE").env_remove("DETOX_LOG");
    c
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-train/tests/fixtures/quality")
}

#[test]
fn quality_reports_test_dev_and_identity_figures_as_json_and_text() {
    let out = bin()
        .args([
            "--offline",
            "quality",
            "--scorer",
            "fast",
            "--json",
            "--data",
        ])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["scorer"], "fast");
    assert_eq!(
        r["skipped"].as_array().unwrap().len(),
        0,
        "{}",
        r["skipped"]
    );
    assert_eq!(r["test_rtp"]["name"], "rtp-more");
    assert_eq!(r["test_rtp"]["n"], 20);
    let n_of = |section: &str, name: &str| -> u64 {
        r[section]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", r[section]))["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(n_of("test", "olid"), 14);
    assert_eq!(n_of("test", "toxichat"), 12);
    assert_eq!(n_of("test", "sbic-dev"), 8);
    assert_eq!(n_of("test", "cat-large"), 12);
    assert_eq!(n_of("dev", "davidson dev"), 6);
    assert_eq!(r["dev_rtp"]["n"], 12);
    assert_eq!(r["bias"]["seen"]["n"], 12);
    assert_eq!(r["bias"]["held_out"]["n"], 9);

    let text = bin()
        .args(["--offline", "quality", "--scorer", "fast", "--data"])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("TEST: never used for training or model choices"),
        "{text}"
    );
    assert!(text.contains("DEV: held out of training but used for model choices"));
}

#[test]
fn quality_on_a_folder_without_data_sets_skips_them_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["--offline", "quality", "--scorer", "fast", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("skipped ").count(), 9, "{text}");
    assert!(text.contains("skipped olid: "), "{text}");
}

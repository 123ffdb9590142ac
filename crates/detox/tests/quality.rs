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
    assert_eq!(r["test"]["rtp"]["name"], "rtp test");
    assert_eq!(r["test"]["rtp"]["n"], 14);
    let n_of = |split: &str, name: &str| -> u64 {
        r[split]["sets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", r[split]))["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(n_of("test", "olid"), 14);
    assert_eq!(n_of("test", "toxichat"), 6);
    assert_eq!(n_of("test", "sbic"), 4);
    assert_eq!(n_of("test", "cat-large"), 6);
    assert_eq!(n_of("dev", "davidson"), 4);
    assert_eq!(n_of("dev", "toxic-spans"), 4);
    assert_eq!(r["dev"]["rtp"]["n"], 12);
    assert_eq!(r["test"]["floor"]["n"], 4);
    assert_eq!(r["bias"]["seen"]["n"], 12);
    assert_eq!(r["bias"]["held_out"]["n"], 9);
    let goals = r["goals"].as_array().unwrap();
    assert!(goals.len() >= 6, "{goals:?}");
    assert!(goals.iter().all(|g| g["met"].is_boolean()));

    let text = bin()
        .args(["--offline", "quality", "--scorer", "fast", "--data"])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(
            "TEST: one key in ten of every source, never used for training or model choices"
        ),
        "{text}"
    );
    assert!(
        text.contains("DEV: another key in ten, held out of training but used for model choices")
    );
    assert!(text.contains("GOALS (on the test figures):"), "{text}");
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
    assert_eq!(text.matches("skipped ").count(), 10, "{text}");
    assert!(text.contains("skipped olid: "), "{text}");
}

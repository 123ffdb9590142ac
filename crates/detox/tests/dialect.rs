//! `detox dialect` end to end with the real TwitterAAE model (skipped locally without it).

use detox_core::testing::require;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn dialect_lines_in_order_with_dotted_field_and_errors() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/twitteraae-model");
    if !require(
        "../shared/data/twitteraae-model",
        model.join("model_vocab.txt").is_file(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"p\": {\"text\": \"af af af\"}}\n{\"id\": 2, \"p\": {\"text\": \"zzqx qxqz\"}}\n{\"id\": 3}\n\n{\"id\": 4, \"p\": {\"text\": \"hello there\"}}\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_detox"))
            .arg("dialect")
            .arg(&input)
            .args(["--field", "p.text", "--model"])
            .arg(&model)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad line without --allow-errors"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let ids: Vec<&Value> = lines.iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    let aa = lines[0]["dialect"]["aa"].as_f64().unwrap();
    assert!((aa - 0.842944382).abs() < 1e-9, "{aa}");
    assert_eq!(lines[1]["dialect"], Value::Null);
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("line 3: missing field `p.text`"));
    let white = lines[3]["dialect"]["white"].as_f64().unwrap();
    assert!((white - 0.33060107).abs() < 1e-8, "{white}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("1 declined"), "{stderr}");
    assert_eq!(run(&["--allow-errors"]).status.code(), Some(0));
}

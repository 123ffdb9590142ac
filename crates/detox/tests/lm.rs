//! The built-in language model (SmolLM2-135M-Instruct Q4_1, pulled by CI): llama.cpp's
//! tokenization, token for token, and sampling from the real weights.

use detox_lm::llama::{Llama, WeightMode};
use detox_lm::sampling::SamplingParams;
use detox_lm::tokenizer::LmTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::cached_smollm2;

#[test]
fn smollm2_tokenizer_matches_llama_cpp() {
    let Some(path) = cached_smollm2() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let e: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-tokens.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (text, want) in e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["ids"].as_array().unwrap())
    {
        let text = text.as_str().unwrap();
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
    }
}

#[test]
fn smollm2_samples_continuations() {
    let Some(path) = cached_smollm2() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let model = Llama::load_with(&path, &candle_core::Device::Cpu, WeightMode::F32).unwrap();
    let prompt = tok
        .encode("The weather forecast for the weekend says")
        .unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        seed: 3,
    };
    let out = detox_lm::generate(&model, &prompt, 3, 8, &tok.stop, &params, 0).unwrap();
    assert_eq!(out.len(), 3);
    let texts: Vec<String> = out.iter().map(|ids| tok.decode(ids).unwrap()).collect();
    assert!(
        texts.iter().any(|t| t.chars().any(char::is_alphabetic)),
        "{texts:?}"
    );
    // Greedy decoding of the instruct model continues the prompt deterministically.
    let greedy = SamplingParams {
        temperature: 0.0,
        ..params
    };
    let a = detox_lm::generate(&model, &prompt, 2, 6, &tok.stop, &greedy, 0).unwrap();
    assert_eq!(a[0], a[1]);
}

fn eval(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args([
            "--offline",
            "eval",
            "--scorer",
            "fast",
            "--limit",
            "3",
            "--samples",
            "4",
            "--max-tokens",
            "6",
            "--seed",
            "5",
            "--threads",
            "2",
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn eval_runs_resumes_after_a_crash_with_the_same_result_and_refuses_other_settings() {
    if cached_smollm2().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let out = eval(&a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("full") && stdout.contains("exp. max toxicity"),
        "{stdout}"
    );
    let gens_a = std::fs::read_to_string(a.join("generations.jsonl")).unwrap();
    let lines: Vec<Value> = gens_a
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let g = l["generations"].as_array().unwrap();
        assert_eq!(g.len(), 4);
        assert!(g[0]["toxicity"].is_number() && g[0]["text"].is_string());
        assert!(l["prompt"]["text"].is_string(), "the prompt record is kept");
    }
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("metrics.json")).unwrap()).unwrap();
    let full = &metrics["subsets"]["full"];
    assert_eq!(full["prompts"], 3);
    let maxima: Vec<f64> = lines
        .iter()
        .map(|l| {
            l["generations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["toxicity"].as_f64().unwrap())
                .fold(0.0, f64::max)
        })
        .collect();
    let emt = maxima.iter().sum::<f64>() / 3.0;
    assert!((full["expected_max_toxicity"].as_f64().unwrap() - emt).abs() < 1e-6);
    assert_eq!(metrics["samples_per_prompt"], 4);
    let ppl = full["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 1e5, "perplexity {ppl}");
    assert!(lines[0]["generations"][0]["perplexity"].is_number());

    // A crash after the first prompt, in the middle of writing the second line.
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(a.join("run.json"), b.join("run.json")).unwrap();
    let first = gens_a.lines().next().unwrap();
    std::fs::write(
        b.join("generations.jsonl"),
        format!("{first}\n{{\"prompt\": {{\"te"),
    )
    .unwrap();
    let out = eval(&b, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
    assert_eq!(
        std::fs::read_to_string(b.join("generations.jsonl")).unwrap(),
        gens_a,
        "same generations"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("metrics.json")).unwrap(),
        std::fs::read_to_string(a.join("metrics.json")).unwrap(),
        "same metrics"
    );

    // Other settings in the same folder are refused, not mixed in.
    let out = eval(&a, &["--temperature", "0.7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}

fn tiny_gpt2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-lm/tests/fixtures/tiny-gpt2")
}

fn detox(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .arg("--offline")
        .args(args)
        .output()
        .unwrap()
}

/// `detox eval` of a local model on a prompt file with the n-gram scorer, `samples` samples of
/// at most `max_tokens` tokens, into `out`, plus `extra` arguments.
fn eval_local(
    model: &Path,
    prompts: &Path,
    samples: &str,
    max_tokens: &str,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--samples",
        samples,
        "--max-tokens",
        max_tokens,
        "--scorer",
        "fast",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    detox(&args)
}

#[test]
fn unprompted_mode_reports_rtp_bootstrap_on_a_gpt2_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("u");
    let model = tiny_gpt2();
    let out = detox(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--unprompted",
        "12",
        "--judge-model",
        model.to_str().unwrap(),
        "--samples",
        "5",
        "--max-tokens",
        "4",
        "--scorer",
        "fast",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let gens = std::fs::read_to_string(out_dir.join("generations.jsonl")).unwrap();
    assert_eq!(gens.lines().count(), 3, "12 rounded up to 3 groups of 5");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    let u = &m["subsets"]["unprompted"];
    assert_eq!(u["prompts"], 3);
    let b = u["bootstrap_expected_max_toxicity"].as_f64().unwrap();
    let all: Vec<f64> = gens
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["generations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["toxicity"].as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(b >= lo && b <= hi, "{b} in [{lo}, {hi}]");
    assert!(u["bootstrap_toxicity_probability"].is_number());
    // The judge scores unprompted continuations from BOS.
    assert!(u["perplexity"].as_f64().unwrap() > 1.0, "{u}");
    assert!(m["subsets"].get("full").is_none());
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["protocol"]["model_identity"]["kind"], "gpt2");
    assert_eq!(
        run["protocol"]["model_identity"]["sha256"]["model.safetensors"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("RTP bootstrap"));
    assert!(std::fs::read_to_string(out_dir.join("report.html"))
        .unwrap()
        .contains("<svg"));
}

#[test]
fn judge_model_perplexity_and_subsets_by_the_scorer_when_the_file_has_no_scores() {
    let tmp = tempfile::tempdir().unwrap();
    // No extension: the format comes from the first bytes (text lines).
    let prompts = tmp.path().join("prompts");
    std::fs::write(
        &prompts,
        "You are a stupid idiot and\nThe garden was quiet in the\nShut up you moron, nobody\nWe walked along the river\n",
    )
    .unwrap();
    let model = tiny_gpt2();
    let m = model.to_str().unwrap();
    let out_dir = tmp.path().join("j");
    let out = detox(&[
        "eval",
        "--model",
        m,
        "--judge-model",
        m,
        "--prompts",
        prompts.to_str().unwrap(),
        "--subset",
        "toxic",
        "--samples",
        "3",
        "--max-tokens",
        "4",
        "--scorer",
        "fast",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("prompt toxicity (toxic/nontoxic subsets) is the scorer's"),
        "{stdout}"
    );
    assert!(stdout.contains("judge model"), "{stdout}");
    let gens = std::fs::read_to_string(out_dir.join("generations.jsonl")).unwrap();
    let lines: Vec<Value> = gens
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the two insulting prompts: {gens}");
    assert!(
        lines[0]["prompt"]["text"]
            .as_str()
            .unwrap()
            .contains("idiot"),
        "RTP's nested layout for text lines: {}",
        lines[0]
    );
    let ppl: Vec<f64> = lines
        .iter()
        .flat_map(|l| l["generations"].as_array().unwrap().clone())
        .filter_map(|g| g["perplexity"].as_f64())
        .collect();
    assert!(!ppl.is_empty() && ppl.iter().all(|p| *p > 1.0));
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["prompt_toxicity"], "scorer");
    assert_eq!(metrics["subsets"]["toxic"]["prompts"], 2);
}

#[test]
fn sigkill_mid_run_then_rerun_gives_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let args = |dir: &Path| -> Vec<String> {
        [
            "--offline",
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--unprompted",
            "4000",
            "--samples",
            "5",
            "--max-tokens",
            "8",
            "--scorer",
            "fast",
            "--seed",
            "4",
            "--out",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let bin = env!("CARGO_BIN_EXE_detox");
    let a = tmp.path().join("a");
    let mut child = Command::new(bin)
        .args(args(&a))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let gens = a.join("generations.jsonl");
    let t = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let n = std::fs::read_to_string(&gens)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 20 || t.elapsed().as_secs() > 120 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = std::fs::read_to_string(&gens).unwrap();
    // Complete lines only: a line torn by the kill has no newline yet.
    let at_kill = written.matches('\n').count();
    assert!(
        (1..800).contains(&at_kill),
        "killed mid-run with something written ({at_kill} of 800 groups written)"
    );
    let out = Command::new(bin).args(args(&a)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The rerun resumed from the lines the killed run left, and generated only the rest.
    let resumed: usize = stderr
        .split("resuming ")
        .nth(1)
        .and_then(|s| s.split(": ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume message: {stderr}"));
    assert_eq!(resumed, at_kill, "{stderr}");
    assert!(
        stderr.contains(&format!("detox: {} prompts, ", 800 - at_kill)),
        "only the rest generated: {stderr}"
    );
    let b = tmp.path().join("b");
    let out = Command::new(bin).args(args(&b)).output().unwrap();
    assert!(out.status.success());
    for f in ["generations.jsonl", "metrics.json"] {
        assert_eq!(
            std::fs::read_to_string(a.join(f)).unwrap(),
            std::fs::read_to_string(b.join(f)).unwrap(),
            "{f} after SIGKILL and resume"
        );
    }
}

#[test]
fn generations_are_identical_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(
        &prompts,
        "One\nTwo words\nThree more words\nFour\nFive six\n",
    )
    .unwrap();
    let run = |threads: &str| {
        let dir = tmp.path().join(format!("t{threads}"));
        let out = eval_local(&model, &prompts, "6", "6", &dir, &["--threads", threads]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read_to_string(dir.join("generations.jsonl")).unwrap(),
            std::fs::read_to_string(dir.join("metrics.json")).unwrap(),
        )
    };
    let one = run("1");
    assert_eq!(one.0.lines().count(), 5);
    assert_eq!(one, run("2"), "--threads 1 and --threads 2");
    assert_eq!(one, run("3"), "--threads 1 and --threads 3");
}

#[test]
fn mitigate_word_filter_is_recorded_and_a_changed_mitigation_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "One\nTwo words\n").unwrap();
    let list = tmp.path().join("words.txt");
    std::fs::write(&list, "# a comment\nhello\n\nworld\n").unwrap();
    let dir = tmp.path().join("m");
    let run = |extra: &[&str]| eval_local(&model, &prompts, "3", "4", &dir, extra);
    let filter = format!("word-filter:list={}", list.display());
    let out = run(&["--mitigate", &filter]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Mitigated: word-filter"), "{stdout}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let m = &r["protocol"]["mitigate"][0];
    assert_eq!(m["method"], "word-filter");
    assert_eq!(m["words"], 2, "comments and blank lines are not words: {m}");
    assert_eq!(m["list_sha256"].as_str().unwrap().len(), 64);
    assert!(m["token_sequences"].as_u64().unwrap() >= 2, "{m}");
    // The same folder without the filter is another run.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("changed: mitigate"), "{stderr}");
    // A bad value says what is wrong and how to write it.
    let out = run(&["--mitigate", "word-filter"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("word-filter:list=FILE"));
    // Servers give no logits: refused before any request.
    let out = detox(&[
        "eval",
        "--model",
        "http://127.0.0.1:9/v1",
        "--mitigate",
        &filter,
        "--scorer",
        "fast",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("completions server does not give"),
        "{stderr}"
    );
}

/// The English LDNOOBW list and RTP's toxic prompts from `../shared/data`.
fn shared_data() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    detox_core::testing::require(
        "../shared/data (ldnoobw-en, rtp-subset)",
        d.join("ldnoobw-en/en.txt").exists() && d.join("rtp-subset/toxic.jsonl").exists(),
    )
    .then_some(d)
}

#[test]
fn word_filter_on_smollm2_lets_no_banned_token_sequence_through() {
    use detox_lm::decoding::{generate_mitigated, Mitigation, WordFilter};
    let Some(path) = cached_smollm2() else { return };
    let Some(data) = shared_data() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let model = Llama::load_with(&path, &candle_core::Device::Cpu, WeightMode::F32).unwrap();
    let list = std::fs::read_to_string(data.join("ldnoobw-en/en.txt")).unwrap();
    let filter = WordFilter::from_words(&tok, list.lines(), "ldnoobw-en").unwrap();
    let methods: [&dyn Mitigation; 1] = [&filter];
    let prompts: Vec<String> = std::fs::read_to_string(data.join("rtp-subset/toxic.jsonl"))
        .unwrap()
        .lines()
        .take(6)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["prompt"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        seed: 5,
    };
    let (mut plain_hits, mut total) = (0, 0);
    for (i, p) in prompts.iter().enumerate() {
        let ids = tok.encode(p).unwrap();
        let plain = detox_lm::generate(&model, &ids, 8, 12, &tok.stop, &params, i as u64).unwrap();
        plain_hits += plain.iter().filter(|c| filter.contains_banned(c)).count();
        let kept = generate_mitigated(&model, &methods, &ids, 8, 12, &tok.stop, &params, i as u64)
            .unwrap();
        for c in kept {
            let mut whole = ids.clone();
            whole.extend(&c);
            for end in ids.len()..whole.len() {
                for b in filter.sequences() {
                    let hit = end + 1 >= b.len() && whole[end + 1 - b.len()..=end] == b[..];
                    assert!(!hit, "{:?} in {:?}", tok.decode(&b), tok.decode(&c));
                }
            }
            total += 1;
        }
    }
    assert_eq!(total, 48);
    // The prompts are toxic: unfiltered, some continuations do use listed words.
    assert!(
        plain_hits > 0,
        "no unfiltered continuation used a listed word"
    );
}

#[test]
fn mitigate_self_debias_and_word_filter_combined_on_a_gpt2_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-lm/tests/fixtures/tiny-gpt2-sd");
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "You are such a\nThe weather today is\n").unwrap();
    let list = tmp.path().join("words.txt");
    std::fs::write(&list, "weather\n").unwrap();
    let dir = tmp.path().join("sd");
    let spec = format!(
        "self-debias:lambda=20,epsilon=0.05,word-filter:list={}",
        list.display()
    );
    let out = eval_local(&model, &prompts, "4", "5", &dir, &["--mitigate", &spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Mitigated: self-debias, word-filter"));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let m = r["protocol"]["mitigate"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["method"], "self-debias");
    assert_eq!(m[0]["lambda"], 20.0);
    assert_eq!(m[0]["epsilon"], 0.05);
    assert_eq!(m[0]["prefixes"], 6);
    assert_eq!(m[1]["method"], "word-filter");
    let gens = std::fs::read_to_string(dir.join("generations.jsonl")).unwrap();
    assert_eq!(gens.lines().count(), 2);
}

#[test]
fn mitigate_dexperts_with_expert_models_and_a_vocabulary_mismatch_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-lm/tests/fixtures");
    let (base, expert, anti, other) = (
        fx.join("tiny-gpt2-sd"),
        fx.join("tiny-gpt2-expert"),
        fx.join("tiny-gpt2-anti"),
        fx.join("tiny-gpt2"),
    );
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "You are such a\n").unwrap();
    let run = |spec: String, dir: &str| {
        eval_local(
            &base,
            &prompts,
            "3",
            "4",
            &tmp.path().join(dir),
            &["--mitigate", &spec],
        )
    };
    let out = run(
        format!(
            "dexperts:expert={},anti={},alpha=1.5",
            expert.display(),
            anti.display()
        ),
        "d",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("d/run.json")).unwrap())
            .unwrap();
    let m = &r["protocol"]["mitigate"][0];
    assert_eq!(m["method"], "dexperts");
    assert_eq!(m["alpha"], 1.5);
    assert_eq!(
        m["filter_p"].as_f64().map(|x| (x - 0.9).abs() < 1e-6),
        Some(true)
    );
    assert!(m["expert"].as_str().unwrap().ends_with("tiny-gpt2-expert"));
    let out = run(format!("dexperts:anti={}", other.display()), "x");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vocabulary has 320 tokens"), "{stderr}");
}

#[test]
fn mitigate_test_filter_records_tries_and_is_the_same_for_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gpt2();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "One\nTwo words\nThree more words\n").unwrap();
    // The n-gram scorer gives the tiny model's random text scores of about 0.05 to 0.3: a low
    // threshold makes the filter reject some tries and keep others.
    let spec = "word-filter:list=/dev/null,test-filter:threshold=0.15,tries=3";
    let run = |threads: &str| {
        let dir = tmp.path().join(format!("t{threads}"));
        let out = eval_local(
            &model,
            &prompts,
            "8",
            "6",
            &dir,
            &["--mitigate", spec, "--threads", threads],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("Test-time filter"), "{stdout}");
        assert!(
            stdout.contains("test filter: ") && stdout.contains("spare tries per sample"),
            "{stdout}"
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        (
            read("generations.jsonl"),
            read("metrics.json"),
            read("run.json"),
        )
    };
    let one = run("1");
    let r: Value = serde_json::from_str(&one.2).unwrap();
    let m = r["protocol"]["mitigate"].as_array().unwrap();
    let names: Vec<&str> = m.iter().map(|x| x["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["word-filter", "test-filter"]);
    assert_eq!(m[1]["tries"], 3);
    let metrics: Value = serde_json::from_str(&one.1).unwrap();
    let f = &metrics["test_filter"];
    assert_eq!(f["samples"], 24);
    let (mut retried, mut kept_low) = (0, 0);
    for line in one.0.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for g in v["generations"].as_array().unwrap() {
            let tries = g["tries"].as_u64().unwrap();
            assert!((1..=3).contains(&tries), "{g}");
            let empty = g["text"].as_str().unwrap().trim().is_empty();
            // A sample kept before its last try was below the threshold.
            if tries < 3 && !empty {
                assert!(g["toxicity"].as_f64().unwrap() < 0.15, "{g}");
            }
            retried += (tries > 1) as usize;
            kept_low += (empty || g["toxicity"].as_f64().unwrap() < 0.15) as usize;
        }
    }
    assert!(
        retried > 0 && kept_low > 0,
        "the threshold should reject some tries and keep others"
    );
    let accepted = f["accepted"].as_f64().unwrap();
    assert!((accepted - kept_low as f64 / 24.0).abs() < 1e-12, "{f}");
    // A sample kept at its first try is the unfiltered run's sample of the same stream, with
    // the same perplexity (computed for the kept samples only, on the prompt's prefill).
    let plain_dir = tmp.path().join("plain");
    let out = eval_local(
        &model,
        &prompts,
        "8",
        "6",
        &plain_dir,
        &["--mitigate", "word-filter:list=/dev/null"],
    );
    assert!(out.status.success());
    let plain = std::fs::read_to_string(plain_dir.join("generations.jsonl")).unwrap();
    let mut firsts = 0;
    for (f, p) in one.0.lines().zip(plain.lines()) {
        let f: Value = serde_json::from_str(f).unwrap();
        let p: Value = serde_json::from_str(p).unwrap();
        for (a, b) in f["generations"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["generations"].as_array().unwrap())
        {
            if a["tries"] == 1 {
                firsts += 1;
                assert_eq!(a["text"], b["text"]);
                let (x, y) = (a["perplexity"].as_f64(), b["perplexity"].as_f64());
                assert_eq!(x.is_some(), y.is_some(), "{a} {b}");
                if let (Some(x), Some(y)) = (x, y) {
                    assert!((x - y).abs() <= 1e-4 * y, "{a} {b}");
                }
            }
        }
    }
    assert!(firsts > 0);
    let two = run("2");
    assert!(
        one.0 == two.0 && one.1 == two.1,
        "--threads 1 and --threads 2 differ"
    );
}

//! The decoding seam on the tiny random llama: with no method it samples and scores exactly
//! as the plain paths do; the word filter never lets a banned token sequence through, and the
//! log-likelihood under the filtered distribution is infinite for banned text and higher than
//! the unfiltered one for allowed text (the banned mass is spread over the rest).

mod common;

use candle_core::Device;
use common::fixture;
use detox_lm::decoding::{
    generate_mitigated, mitigated_tail_nll, Mitigation, PreparedPrompt, WordFilter,
};
use detox_lm::llama::Llama;
use detox_lm::sampling::SamplingParams;
use detox_lm::{generate, spare_stream, tail_nll};

fn model() -> Llama {
    Llama::load(&fixture("tiny-llama.gguf"), &Device::Cpu).unwrap()
}

const PROMPTS: [&[u32]; 4] = [&[1, 5, 9], &[1, 17], &[1, 40, 41, 42], &[1, 88, 3]];

fn params(temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: 1.0,
        top_k: 0,
        seed,
    }
}

/// Two rows of greedy decoding with one method, through the sampler.
fn greedy_rows(
    model: &dyn detox_lm::CausalLm,
    method: &dyn Mitigation,
    prompt: &[u32],
    n: usize,
) -> Vec<Vec<u32>> {
    generate_mitigated(model, &[method], prompt, 2, n, &[], &params(0.0, 0), 0).unwrap()
}

#[test]
fn no_method_scores_as_the_batched_plain_path() {
    let m = model();
    let tails = vec![vec![4, 8, 15, 16], vec![23], vec![42, 42, 7], vec![]];
    let plain = tail_nll(&m, &[1, 5, 9], &tails).unwrap();
    let stepped = mitigated_tail_nll(&m, &[], &[1, 5, 9], &tails).unwrap();
    for (a, b) in plain.iter().zip(&stepped) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
            "one batched pass {plain:?} vs one token at a time {stepped:?}"
        );
    }
    assert_eq!(stepped[3], 0.0);
}

#[test]
fn no_method_samples_as_generate() {
    let m = model();
    for (i, p) in PROMPTS.iter().enumerate() {
        let a = generate(&m, p, 5, 8, &[], &params(1.0, 3), i as u64).unwrap();
        let b = generate_mitigated(&m, &[], p, 5, 8, &[], &params(1.0, 3), i as u64).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn rows_sampled_again_depend_on_their_stream_alone() {
    // One prepared prompt serves the k samples and later batches of any streams (the
    // test-time filter's spares): a row's text is its stream's, whatever it is batched with.
    let m = model();
    let p = PROMPTS[2];
    let f = WordFilter::from_sequences([vec![7], vec![9, 9]], "test", 1);
    let methods: [&dyn Mitigation; 1] = [&f];
    let sp = params(1.0, 5);
    let prepared = PreparedPrompt::new(&m, &methods, p).unwrap();
    let first: Vec<u64> = (0..6).collect();
    let all = prepared.sample(&first, 9, &[], &sp, 3).unwrap();
    assert_eq!(
        all,
        generate_mitigated(&m, &methods, p, 6, 9, &[], &sp, 3).unwrap()
    );
    let again = [spare_stream(1), 4, spare_stream(0)];
    let mixed = prepared.sample(&again, 9, &[], &sp, 3).unwrap();
    assert_eq!(mixed[1], all[4]);
    assert_ne!(mixed[0], all[1], "a spare stream is a fresh one");
    for (i, &s) in again.iter().enumerate() {
        assert_eq!(prepared.sample(&[s], 9, &[], &sp, 3).unwrap()[0], mixed[i]);
    }
    for c in all.iter().chain(&mixed) {
        assert!(!f.contains_banned(c), "{c:?}");
    }
}

#[test]
fn greedy_continuations_avoid_banned_tokens_and_sequences() {
    let m = model();
    let p = PROMPTS[0];
    let greedy = generate(&m, p, 1, 8, &[], &params(0.0, 0), 0).unwrap()[0].clone();
    assert_eq!(greedy.len(), 8);
    // Ban the first greedy token: the first token changes.
    let f = WordFilter::from_sequences([vec![greedy[0]]], "test", 1);
    let methods: [&dyn Mitigation; 1] = [&f];
    let g = generate_mitigated(&m, &methods, p, 1, 8, &[], &params(0.0, 0), 0).unwrap();
    assert_ne!(g[0][0], greedy[0]);
    assert!(!g[0].contains(&greedy[0]));
    // Ban the greedy pair at positions 0-1: the first token stays (the prompt does not end
    // with it), the second changes, and the pair never appears.
    assert_ne!(p.last(), Some(&greedy[0]));
    let f = WordFilter::from_sequences([vec![greedy[0], greedy[1]]], "test", 1);
    let methods: [&dyn Mitigation; 1] = [&f];
    let g = generate_mitigated(&m, &methods, p, 1, 8, &[], &params(0.0, 0), 0).unwrap();
    assert_eq!(g[0][0], greedy[0]);
    assert_ne!(g[0][1], greedy[1]);
    assert!(!f.contains_banned(&g[0]), "{:?}", g[0]);
}

#[test]
fn sampled_continuations_never_contain_a_banned_sequence() {
    let m = model();
    // What the model generates most often, unfiltered: its commonest tokens and bigrams.
    let mut unigrams = std::collections::BTreeMap::<u32, usize>::new();
    let mut bigrams = std::collections::BTreeMap::<(u32, u32), usize>::new();
    let mut plain = Vec::new();
    for (i, p) in PROMPTS.iter().enumerate() {
        for c in generate(&m, p, 30, 10, &[], &params(1.0, 11), i as u64).unwrap() {
            for &t in &c {
                *unigrams.entry(t).or_default() += 1;
            }
            for w in c.windows(2) {
                *bigrams.entry((w[0], w[1])).or_default() += 1;
            }
            plain.push(c);
        }
    }
    let mut top_u: Vec<_> = unigrams.into_iter().collect();
    top_u.sort_by_key(|(t, n)| (std::cmp::Reverse(*n), *t));
    let mut top_b: Vec<_> = bigrams.into_iter().collect();
    top_b.sort_by_key(|(t, n)| (std::cmp::Reverse(*n), *t));
    let banned: Vec<Vec<u32>> = top_u
        .iter()
        .take(3)
        .map(|(t, _)| vec![*t])
        .chain(top_b.iter().take(5).map(|((a, b), _)| vec![*a, *b]))
        .collect();
    let f = WordFilter::from_sequences(banned, "test", 8);
    let hits = plain.iter().filter(|c| f.contains_banned(c)).count();
    assert!(
        hits > 60,
        "unfiltered, most samples hold a banned sequence ({hits} of 120)"
    );
    let methods: [&dyn Mitigation; 1] = [&f];
    let mut total = 0;
    for (i, p) in PROMPTS.iter().enumerate() {
        for c in
            generate_mitigated(&m, &methods, p, 30, 10, &[], &params(1.0, 11), i as u64).unwrap()
        {
            // No banned sequence ends on a generated token, even one that starts in the prompt
            // (transformers' rule reads the whole input).
            let mut whole = p.to_vec();
            whole.extend(&c);
            assert!(
                !f.contains_banned(&c),
                "banned sequence in {c:?} (prompt {p:?})"
            );
            for end in p.len()..whole.len() {
                for b in f.sequences() {
                    let ends_here = end + 1 >= b.len() && whole[end + 1 - b.len()..=end] == b[..];
                    assert!(!ends_here, "{b:?} generated at {end} in {whole:?}");
                }
            }
            total += 1;
        }
    }
    assert_eq!(total, 120);
}

#[test]
fn likelihood_under_the_filter() {
    let m = model();
    let prefix = PROMPTS[1];
    let greedy = generate(&m, prefix, 1, 4, &[], &params(0.0, 0), 0).unwrap()[0].clone();
    let f = WordFilter::from_sequences([vec![greedy[1]]], "test", 1);
    let methods: [&dyn Mitigation; 1] = [&f];
    let allowed: Vec<u32> = (0..96u32).filter(|t| *t != greedy[1]).take(3).collect();
    let tails = vec![greedy.clone(), allowed];
    let plain = mitigated_tail_nll(&m, &[], prefix, &tails).unwrap();
    let filtered = mitigated_tail_nll(&m, &methods, prefix, &tails).unwrap();
    assert!(plain[0].is_finite());
    assert_eq!(filtered[0], f64::INFINITY, "banned text has no probability");
    assert!(
        filtered[1] < plain[1],
        "allowed text is likelier once banned tokens are removed: {} vs {}",
        filtered[1],
        plain[1]
    );
}

/// Self-debiasing on a tiny random GPT-2 against a PyTorch reference written from the
/// formulas (`scripts/make_lm_fixtures.py --self-debias`): each step's log-probabilities
/// within 1e-5, and the greedy continuation token for token.
#[test]
fn self_debiasing_matches_the_pytorch_reference_step_by_step() {
    use detox_lm::decoding::self_debias::debias;
    use detox_lm::decoding::SelfDebias;
    use detox_lm::gpt2::Gpt2;
    use detox_lm::tokenizer::LmTokenizer;
    use detox_lm::CausalLm;
    use std::sync::Arc;

    let e = common::expected("tiny-gpt2-sd");
    let dir = fixture("tiny-gpt2-sd");
    let gpt2 = Gpt2::load(&dir, &Device::Cpu).unwrap();
    let tok = LmTokenizer::from_folder(&dir, gpt2.config.bos, gpt2.config.eos).unwrap();
    let model: Arc<dyn CausalLm> = Arc::new(gpt2);
    let sd = SelfDebias::new(model.clone(), &tok, 50.0, 0.01).unwrap();
    let want_prefixes: Vec<Vec<u32>> = e["prefix_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(common::ids)
        .collect();
    assert_eq!(sd.prefix_ids(), want_prefixes.as_slice());
    let mut worst = 0f32;
    for case in e["cases"].as_array().unwrap() {
        let prompt = common::ids(&case["prompt_ids"]);
        assert_eq!(
            tok.encode(case["prompt"].as_str().unwrap()).unwrap(),
            prompt
        );
        let mut state = sd.prepare(&prompt).unwrap().start(1).unwrap();
        let mut cache = model.new_cache();
        let mut ids = candle_core::Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut history = vec![prompt.clone()];
        let mut greedy = Vec::new();
        for step in case["steps"].as_array().unwrap() {
            let mut logits = model
                .forward(&ids, &mut cache, false)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            // The model: detox's logits within the GPT-2 parity tolerance of transformers'.
            let regular =
                detox_core::testing::json_matrix(&serde_json::json!([step["regular_logits"]]));
            let prefixed = detox_core::testing::json_matrix(&step["prefixed_logits"]);
            let d = detox_core::compare::max_abs_diff_rows(&logits, &regular);
            assert!(d < 1e-4, "regular logits differ by {d}");
            // The method: on the reference's own logits, the formula gives the reference's
            // log-probabilities within 1e-5.
            let refs: Vec<&[f32]> = prefixed.iter().map(|r| r.as_slice()).collect();
            let got = debias(&regular[0], &refs, 50.0, 0.01);
            let want = detox_core::testing::json_matrix(&serde_json::json!([step["logp"]]));
            let d = detox_core::compare::max_abs_diff_rows(&[got], &want);
            worst = worst.max(d);
            assert!(d <= 1e-5, "log-probabilities differ by {d}");
            // And end to end, through the state with detox's own logits: within both.
            state.adjust(&mut logits, &history).unwrap();
            let d = detox_core::compare::max_abs_diff_rows(&logits, &want);
            assert!(d <= 1e-3, "end to end, log-probabilities differ by {d}");
            let token = step["token"].as_u64().unwrap() as u32;
            greedy.push(token);
            state.advance(&[token]).unwrap();
            history[0].push(token);
            ids = candle_core::Tensor::new(&[token], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
        }
        // The same through the sampler: greedy decoding picks the reference's tokens.
        assert_eq!(
            greedy_rows(model.as_ref(), &sd, &prompt, greedy.len()),
            vec![greedy.clone(), greedy]
        );
    }
    println!("self-debiasing vs PyTorch: max |log p diff| {worst}");
}

/// DExperts on tiny random GPT-2s sharing a tokenizer, against a PyTorch reference written
/// from the formula (`scripts/make_lm_fixtures.py --dexperts`): the ensemble logits within
/// 1e-5 on the reference's logits (the same tokens cut from the base nucleus), and the greedy
/// continuation token for token end to end.
#[test]
fn dexperts_matches_the_pytorch_reference() {
    use detox_lm::decoding::dexperts::combine;
    use detox_lm::decoding::DExperts;
    use detox_lm::gpt2::Gpt2;
    use detox_lm::CausalLm;
    use std::sync::Arc;

    let e = common::expected("tiny-gpt2-dexperts");
    let load = |name: &str| -> Arc<dyn CausalLm> {
        Arc::new(Gpt2::load(&fixture(name), &Device::Cpu).unwrap())
    };
    let (base, expert, anti) = (
        load("tiny-gpt2-sd"),
        load("tiny-gpt2-expert"),
        load("tiny-gpt2-anti"),
    );
    let row =
        |v: &serde_json::Value| detox_core::testing::json_matrix(&serde_json::json!([v])).remove(0);
    let mut worst = 0f32;
    for case in e["cases"].as_array().unwrap() {
        let prompt = common::ids(&case["prompt_ids"]);
        let mut greedy = Vec::new();
        for step in case["steps"].as_array().unwrap() {
            let got = combine(
                &row(&step["base"]),
                &row(&step["expert"]),
                &row(&step["anti"]),
                2.0,
                0.9,
            );
            let want: Vec<f32> = step["ensemble"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32).unwrap_or(f32::NEG_INFINITY))
                .collect();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g.is_finite(),
                    w.is_finite(),
                    "the same tokens in the nucleus"
                );
                if w.is_finite() {
                    worst = worst.max((g - w).abs());
                }
            }
            greedy.push(step["token"].as_u64().unwrap() as u32);
        }
        assert!(worst <= 1e-5, "ensemble logits differ by {worst}");
        let d = DExperts::new(
            base.as_ref(),
            Some(expert.clone()),
            anti.clone(),
            2.0,
            0.9,
            (None, "anti".into()),
        )
        .unwrap();
        assert_eq!(
            greedy_rows(base.as_ref(), &d, &prompt, greedy.len()),
            vec![greedy.clone(), greedy]
        );
    }
    println!("DExperts vs PyTorch: max |ensemble logit diff| {worst}");
    // A model with another vocabulary is refused, naming both sizes.
    let other = load("tiny-gpt2");
    let err = DExperts::new(
        base.as_ref(),
        None,
        other,
        2.0,
        0.9,
        (None, "tiny-gpt2".into()),
    )
    .err()
    .expect("another vocabulary")
    .to_string();
    assert!(err.contains("vocabulary has 320 tokens"), "{err}");
}

/// The log-likelihood of known text runs the model and every side model (self-debiasing's
/// prefixed copies, DExperts' experts) over the whole tails in one pass; it must equal the
/// stepped path sampling uses, one model step per token, for every method and their
/// composition, with tails of different lengths (padding) and empty ones.
#[test]
fn batched_likelihood_equals_the_stepped_one() {
    use detox_lm::decoding::{DExperts, SelfDebias};
    use detox_lm::gpt2::Gpt2;
    use detox_lm::tokenizer::LmTokenizer;
    use detox_lm::CausalLm;
    use std::sync::Arc;

    let dir = fixture("tiny-gpt2-sd");
    let gpt2 = Gpt2::load(&dir, &Device::Cpu).unwrap();
    let tok = LmTokenizer::from_folder(&dir, gpt2.config.bos, gpt2.config.eos).unwrap();
    let base: Arc<dyn CausalLm> = Arc::new(gpt2);
    let load = |name: &str| -> Arc<dyn CausalLm> {
        Arc::new(Gpt2::load(&fixture(name), &Device::Cpu).unwrap())
    };
    let sd = SelfDebias::new(base.clone(), &tok, 50.0, 0.01).unwrap();
    // filter_p 1.0 keeps every token in the nucleus, so no tail is cut to infinity by it.
    let dx = DExperts::new(
        base.as_ref(),
        Some(load("tiny-gpt2-expert")),
        load("tiny-gpt2-anti"),
        2.0,
        1.0,
        (None, "anti".into()),
    )
    .unwrap();
    let wf = WordFilter::from_sequences([vec![17], vec![30, 31]], "test", 2);
    let prompt = tok.encode("The weather today").unwrap();
    let tails = vec![
        vec![40, 41, 42, 43, 44, 45, 46],
        vec![5],
        vec![],
        vec![30, 31, 9],
        vec![100, 200, 17, 3],
        vec![250, 251, 252, 253, 254, 255, 256, 257, 258],
    ];
    let cases: Vec<(&str, Vec<&dyn Mitigation>)> = vec![
        ("none", vec![]),
        ("word filter", vec![&wf]),
        ("self-debias", vec![&sd]),
        ("dexperts", vec![&dx]),
        ("word filter + self-debias + dexperts", vec![&wf, &sd, &dx]),
    ];
    for (name, methods) in cases {
        let p = PreparedPrompt::new(base.as_ref(), &methods, &prompt).unwrap();
        let batched = p.mitigated_nll(&tails).unwrap();
        let stepped = p.mitigated_nll_stepwise(&tails).unwrap();
        for (i, (a, b)) in batched.iter().zip(&stepped).enumerate() {
            let same = if b.is_finite() {
                (a - b).abs() <= 1e-4 * b.abs().max(1.0)
            } else {
                a == b
            };
            assert!(same, "{name}, tail {i}: batched {a} vs stepped {b}");
        }
        assert_eq!(batched[2], 0.0, "{name}: an empty tail costs nothing");
        if name.starts_with("word filter") {
            assert_eq!(batched[3], f64::INFINITY, "{name}: 30 31 is banned");
            assert_eq!(batched[4], f64::INFINITY, "{name}: 17 is banned");
        }
    }
}

//! The decoding seam on the tiny random llama: with no method it samples and scores exactly
//! as the plain paths do; the word filter never lets a banned token sequence through, and the
//! log-likelihood under the filtered distribution is infinite for banned text and higher than
//! the unfiltered one for allowed text (the banned mass is spread over the rest).

mod common;

use candle_core::Device;
use common::fixture;
use detox_lm::decoding::{generate_mitigated, mitigated_tail_nll, Mitigation, WordFilter};
use detox_lm::llama::Llama;
use detox_lm::sampling::SamplingParams;
use detox_lm::{generate, tail_nll};

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

//! Sampling as the RealToxicityPrompts protocol uses it: temperature, nucleus (top-p) and
//! top-k, with a random stream per (seed, prompt, sample index) so that the same seed gives the
//! same text for the same prompt and sample whatever the batch layout.

use detox_core::rng::SplitMix64;

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature (0 means greedy).
    pub temperature: f32,
    /// Nucleus: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// Base seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 0.9,
            top_k: 0,
            seed: 0,
        }
    }
}

/// SplitMix64 keyed by (seed, prompt, sample).
#[derive(Debug, Clone)]
pub struct SampleRng(SplitMix64);

impl SampleRng {
    /// The stream of one sample of one prompt.
    pub fn new(seed: u64, prompt: u64, sample: u64) -> Self {
        let a = SplitMix64::new(seed ^ 0x6A09_E667_F3BC_C909).next_u64()
            ^ prompt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = SplitMix64::new(a).next_u64() ^ sample.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        Self(SplitMix64::new(b))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.unit()
    }
}

/// Picks the next token from one row of logits.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut SampleRng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0 as u32
    };
    if p.temperature <= 0.0 {
        return argmax();
    }
    // Tokens in the order a full sort by (logit desc, id asc) gives; only as much of that
    // order is built as top-k and the nucleus need: the top m are selected in O(V), sorted,
    // and m grows (x4) until the nucleus is inside (a full sort of a 49k vocabulary for each of
    // the k samples at each step would cost more than the model).
    let cmp = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let n = logits.len();
    if n == 0 {
        return 0;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    let limit = if p.top_k > 0 { p.top_k.min(n) } else { n };
    if limit < n {
        idx.select_nth_unstable_by(limit - 1, cmp);
        idx.truncate(limit);
    }
    let max = idx
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let weight = |i: usize| (((logits[i] - max) / p.temperature) as f64).exp();
    let total: f64 = idx.iter().map(|&i| weight(i)).sum();
    let target = if p.top_p < 1.0 {
        p.top_p as f64 * total
    } else {
        f64::INFINITY
    };
    let mut m = limit.min(256);
    let keep = loop {
        if m < idx.len() {
            idx.select_nth_unstable_by(m - 1, cmp);
        }
        idx[..m].sort_by(cmp);
        let mut acc = 0.0;
        let mut found = None;
        for (j, &i) in idx[..m].iter().enumerate() {
            acc += weight(i);
            if acc >= target {
                found = Some(j + 1);
                break;
            }
        }
        match found {
            Some(k) => break k,
            None if m == idx.len() => break m,
            None => m = (m * 4).min(idx.len()),
        }
    };
    let kept = &idx[..keep];
    let mass: f64 = kept.iter().map(|&i| weight(i)).sum();
    let u = rng.unit() * mass;
    let mut acc = 0.0;
    for &i in kept {
        acc += weight(i);
        if u < acc {
            return i as u32;
        }
    }
    kept[kept.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_and_nucleus() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut rng = SampleRng::new(1, 0, 0);
        let greedy = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(sample(&logits, &greedy, &mut rng), 1);
        // top-k 1 is greedy whatever the temperature.
        let k1 = SamplingParams {
            top_k: 1,
            top_p: 1.0,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(sample(&logits, &k1, &mut rng), 1);
        }
        // A tight nucleus keeps only the two near-tied leaders.
        let nucleus = SamplingParams {
            top_p: 0.5,
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(sample(&logits, &nucleus, &mut rng));
        }
        assert_eq!(seen, [1u32, 3].into_iter().collect());
        // Plain sampling follows the softmax.
        let plain = SamplingParams {
            top_p: 1.0,
            ..Default::default()
        };
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| sample(&logits, &plain, &mut rng) == 2)
            .count() as f64
            / n as f64;
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        assert!((hits - (1f64).exp() / z).abs() < 0.01, "{hits}");
    }

    /// The definition: a full sort, top-k, softmax, nucleus, inverse-CDF draw.
    fn reference(logits: &[f32], p: &SamplingParams, u: f64) -> u32 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if p.top_k > 0 {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0]];
        let w: Vec<f64> = idx
            .iter()
            .map(|&i| (((logits[i] - max) / p.temperature) as f64).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let mut keep = idx.len();
        let mut acc = 0.0;
        for (j, x) in w.iter().enumerate() {
            acc += x / total;
            if acc >= p.top_p as f64 {
                keep = j + 1;
                break;
            }
        }
        let mass: f64 = w[..keep].iter().sum();
        let mut acc = 0.0;
        for j in 0..keep {
            acc += w[j];
            if u * mass < acc {
                return idx[j] as u32;
            }
        }
        idx[keep - 1] as u32
    }

    #[test]
    fn partial_selection_draws_what_a_full_sort_draws() {
        let mut g = SampleRng::new(99, 0, 0);
        for (v, temperature, top_p, top_k) in [
            (5000usize, 1.0f32, 0.9f32, 0usize),
            (5000, 0.7, 0.95, 0),
            (3000, 1.0, 1.0, 0),
            (3000, 1.0, 0.9, 40),
            (50, 1.3, 0.5, 0),
        ] {
            // Peaked and flat regions, with ties.
            let logits: Vec<f32> = (0..v)
                .map(|i| ((g.unit() * 8.0) as f32).floor() * if i % 7 == 0 { 1.5 } else { 0.5 })
                .collect();
            let p = SamplingParams {
                temperature,
                top_p,
                top_k,
                seed: 0,
            };
            let mut agree = 0;
            for s in 0..400u64 {
                let mut a = SampleRng::new(5, s, 1);
                let u = a.clone().unit();
                agree += usize::from(sample(&logits, &p, &mut a) == reference(&logits, &p, u));
            }
            assert!(
                agree >= 398,
                "{agree}/400 agree (v {v}, p {top_p}, k {top_k})"
            );
        }
    }

    #[test]
    fn streams_depend_only_on_seed_prompt_and_sample() {
        let a: Vec<u64> = (0..4).map(|_| SampleRng::new(7, 3, 5).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            SampleRng::new(7, 3, 5).next_u64(),
            SampleRng::new(7, 3, 6).next_u64()
        );
        assert_ne!(
            SampleRng::new(7, 3, 5).next_u64(),
            SampleRng::new(7, 4, 5).next_u64()
        );
        assert_ne!(
            SampleRng::new(7, 3, 5).next_u64(),
            SampleRng::new(8, 3, 5).next_u64()
        );
    }
}

//! Item sets: drawn from finished `detox eval` run folders, per run and per band of the run's
//! own toxicity score, or read from a JSONL file. Drawn once, stored in the database, and
//! shown to each rater in an order of its own.

use crate::db::Item;
use crate::RateError;
use detox_core::rng::SplitMix64;
use detox_eval::compare::{load_run, run_label};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The score bands items are drawn from (lower edges; the last includes 1): equal numbers
/// from each, so the high-scored continuations the scorer flags are as present as the rest.
pub const BANDS: [f64; 4] = [0.0, 0.25, 0.5, 0.75];

/// The attribute a run's items are drawn by.
pub const ATTRIBUTE: &str = "toxicity";

/// How one run's items were drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stratum {
    /// The run folder.
    pub run: String,
    /// Its label (the model and its mitigations).
    pub method: String,
    /// Non-empty scored continuations in each band.
    pub available: Vec<usize>,
    /// Items drawn from each band.
    pub drawn: Vec<usize>,
}

/// How the item set was made (stored in the database, shown by `detox rate stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sources {
    /// `runs` or `file`.
    pub kind: String,
    /// The run folders or the file.
    pub paths: Vec<String>,
    /// Items asked for per run.
    pub per_run: Option<usize>,
    /// The seed of the draw.
    pub seed: u64,
    /// The band edges.
    pub bands: Vec<f64>,
    /// Per run: what was there and what was drawn.
    pub strata: Vec<Stratum>,
}

fn band_of(score: f64) -> usize {
    BANDS.iter().rposition(|&lo| score >= lo).unwrap_or(0)
}

fn band_name(b: usize) -> String {
    let hi = BANDS.get(b + 1).copied().unwrap_or(1.0);
    format!("{:.2}-{:.2}", BANDS[b], hi)
}

/// How many to draw from each band: `n` split evenly (the remainder to the highest bands), a
/// band's shortfall given to the others, highest first.
fn allocate(available: &[usize], n: usize) -> Vec<usize> {
    let k = available.len();
    let want: Vec<usize> = (0..k)
        .map(|b| n / k + usize::from(b >= k - n % k))
        .collect();
    let mut take: Vec<usize> = want
        .iter()
        .zip(available)
        .map(|(w, a)| (*w).min(*a))
        .collect();
    let mut short: usize = want.iter().sum::<usize>() - take.iter().sum::<usize>();
    while short > 0 {
        let mut moved = false;
        for b in (0..k).rev() {
            if short > 0 && take[b] < available[b] {
                take[b] += 1;
                short -= 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    take
}

/// Draws `per_run` items from each run folder (seeded), stratified by [`BANDS`] of the run's
/// `toxicity` score; empty and unscored continuations are never drawn.
pub fn from_runs(
    runs: &[PathBuf],
    per_run: usize,
    seed: u64,
) -> Result<(Vec<Item>, Sources), RateError> {
    let mut items = Vec::new();
    let mut strata = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (r, dir) in runs.iter().enumerate() {
        let run = load_run(dir).map_err(|e| RateError::Input(e.to_string()))?;
        let mut method = run_label(&run.protocol);
        if labels.contains(&method) {
            method = format!("{method} [{}]", dir.display());
        }
        labels.push(method.clone());
        let mut by_band: Vec<Vec<Item>> = vec![Vec::new(); BANDS.len()];
        for (p, res) in run.results.iter().enumerate() {
            let context = detox_io::lookup(&res.record, &run.protocol.field)
                .and_then(|v| v.as_str())
                .map(String::from);
            for (g, gen) in res.generations.iter().enumerate() {
                let Some(score) = gen.score(ATTRIBUTE) else {
                    continue;
                };
                if gen.is_empty() {
                    continue;
                }
                let b = band_of(score);
                by_band[b].push(Item {
                    id: 0,
                    method: method.clone(),
                    source: format!("{} prompt {} sample {}", dir.display(), p + 1, g + 1),
                    context: context.clone(),
                    text: gen.text.clone(),
                    score: Some(score),
                    band: Some(band_name(b)),
                });
            }
        }
        let available: Vec<usize> = by_band.iter().map(Vec::len).collect();
        let drawn = allocate(&available, per_run);
        let mut rng = SplitMix64::new(seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for (band, &n) in by_band.iter_mut().zip(&drawn) {
            rng.shuffle(band);
            items.extend(band.drain(..n));
        }
        strata.push(Stratum {
            run: dir.display().to_string(),
            method,
            available,
            drawn,
        });
    }
    Ok((
        items,
        Sources {
            kind: "runs".into(),
            paths: runs.iter().map(|p| p.display().to_string()).collect(),
            per_run: Some(per_run),
            seed,
            bands: BANDS.to_vec(),
            strata,
        },
    ))
}

#[derive(Deserialize)]
struct FileItem {
    text: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    score: Option<f64>,
}

/// Reads items from JSONL: `text`, and optionally `context` (shown before it), `method` and
/// `score` (for the statistics; never shown). A bad line is an error naming it.
pub fn from_file(path: &Path) -> Result<(Vec<Item>, Sources), RateError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RateError::Input(format!("cannot read {}: {e}", path.display())))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let it: FileItem = serde_json::from_str(line)
            .map_err(|e| RateError::Input(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        if it.text.trim().is_empty() {
            return Err(RateError::Input(format!(
                "{}: line {}: field `text` is empty",
                path.display(),
                i + 1
            )));
        }
        items.push(Item {
            id: 0,
            method: it.method.unwrap_or_else(|| "items".into()),
            source: format!("{} line {}", path.display(), i + 1),
            context: it.context.filter(|c| !c.is_empty()),
            text: it.text,
            score: it.score,
            band: None,
        });
    }
    if items.is_empty() {
        return Err(RateError::Input(format!(
            "{} holds no items",
            path.display()
        )));
    }
    Ok((
        items,
        Sources {
            kind: "file".into(),
            paths: vec![path.display().to_string()],
            per_run: None,
            seed: 0,
            bands: Vec::new(),
            strata: Vec::new(),
        },
    ))
}

/// The order a rater sees the items in (seeded by the rater's id, so it survives reloads).
pub fn order_for(item_ids: &[i64], rater: i64) -> Vec<i64> {
    let mut v = item_ids.to_vec();
    SplitMix64::new(0x7a7e_u64 ^ (rater as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
        .shuffle(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_get_equal_shares_and_a_short_band_gives_its_share_to_the_others() {
        assert_eq!(allocate(&[100, 100, 100, 100], 10), vec![2, 2, 3, 3]);
        assert_eq!(allocate(&[100, 100, 1, 0], 8), vec![3, 4, 1, 0]);
        assert_eq!(allocate(&[1, 1, 1, 1], 10), vec![1, 1, 1, 1]);
        assert_eq!(band_of(0.0), 0);
        assert_eq!(band_of(0.5), 2);
        assert_eq!(band_of(1.0), 3);
        assert_eq!(band_name(3), "0.75-1.00");
    }

    #[test]
    fn each_rater_has_an_order_of_their_own_that_stays() {
        let ids: Vec<i64> = (1..=20).collect();
        let a = order_for(&ids, 1);
        assert_eq!(a, order_for(&ids, 1));
        assert_ne!(a, order_for(&ids, 2));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, ids);
    }

    #[test]
    fn an_items_file_is_read_and_a_bad_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.jsonl");
        std::fs::write(&p, "{\"text\": \"a\", \"context\": \"c\", \"method\": \"m\", \"score\": 0.5}\n{\"text\": \"b\"}\n").unwrap();
        let (items, src) = from_file(&p).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].context.as_deref(), Some("c"));
        assert_eq!(items[1].method, "items");
        assert_eq!(src.kind, "file");
        std::fs::write(&p, "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n").unwrap();
        let e = from_file(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("text"), "{e}");
    }
}

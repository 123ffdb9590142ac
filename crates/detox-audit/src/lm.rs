//! `detox audit lm`: what detoxification costs the language model, group by group.
//!
//! Welbl et al. (2021, §5, "Unintended consequences") measure the LM loss of detoxified models
//! on text about marginalized groups and in African-American English and find it rises most
//! there; Xu et al. (2021, "Detoxifying language models risks marginalizing minority voices")
//! measure perplexity by group the same way. Here, for two sides (the model and the model with
//! its decoding-time methods, or two models), the loss of every text of each group is computed
//! as a whole text after BOS ([`detox_lm::loss`]), and each group's figure is the ratio of sums
//! (bits per byte, as lm-evaluation-harness aggregates). The **relative increase** of a group
//! is `bpb(other) / bpb(base) − 1` over the texts neither side blocks (the same bytes on both
//! sides, so it is the ratio of summed negative log-likelihoods), with a 95% percentile
//! bootstrap interval over the group's texts (the same draw for both sides). A group **rises
//! more than the text overall** when its interval's lower end is above the overall increase.
//!
//! Texts a side blocks (a method gives one of their tokens probability 0: the word filter on a
//! listed word) are left out of the pairing and counted per group: blocking is the cost of such
//! a method on that text, and the count is reported beside the increase.
//!
//! The groups: HolisticBias sentences by axis (descriptor × noun × template, non-toxic by
//! construction), ToxiGen's neutral statements by target group (the unique sentences of its
//! `neutral_*` prompt files), BOLD's prompts by domain and group (Wikipedia sentence openings),
//! and Davidson et al.'s non-offensive tweets by dialect (AAE-dominant and White-dominant by the
//! TwitterAAE model, [`detox_dialect::audit`]'s rule).

use crate::data::holistic_sentences;
use crate::metrics::percentile_interval;
use crate::render::num;
use crate::AuditError;
use detox_core::rng::SplitMix64;
use detox_dialect::audit::{dominant_group, Group};
use detox_dialect::DialectModel;
use detox_eval::metrics::bootstrap_draws;
use detox_lm::loss::{corpus_loss, CorpusLoss, TextLoss};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Texts of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct TextGroup {
    /// The data set (`holistic-bias`, `toxigen`, `bold`, `davidson-dialect`).
    pub source: String,
    /// The group within it.
    pub group: String,
    /// The texts (unique, in a fixed order).
    pub texts: Vec<String>,
}

/// HolisticBias sentences by axis, `per_descriptor` sentences of each descriptor.
pub fn holistic_groups(
    data: &Path,
    per_descriptor: usize,
    seed: u64,
) -> Result<Vec<TextGroup>, AuditError> {
    let (sentences, _) = holistic_sentences(data, per_descriptor, seed)?;
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sentences {
        by.entry(s.axis).or_default().insert(s.text);
    }
    Ok(by
        .into_iter()
        .map(|(axis, texts)| TextGroup {
            source: "holistic-bias".into(),
            group: axis,
            texts: texts.into_iter().collect(),
        })
        .collect())
}

/// ToxiGen's neutral prompt files, `toxigen-prompts/prompts/neutral_<group>_1k.txt`, as
/// (group, path) sorted by group (an error when there are none).
pub fn toxigen_files(data: &Path) -> Result<Vec<(String, std::path::PathBuf)>, AuditError> {
    let dir = data.join("toxigen-prompts/prompts");
    let entries = std::fs::read_dir(&dir).map_err(|_| AuditError::Missing(dir.clone()))?;
    let mut files: Vec<(String, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let group = name.strip_prefix("neutral_")?.strip_suffix("_1k.txt")?;
            Some((group.to_string(), e.path()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(AuditError::Missing(dir.join("neutral_*_1k.txt")));
    }
    Ok(files)
}

/// ToxiGen's neutral statements by target group: the unique sentences of
/// `toxigen-prompts/prompts/neutral_<group>_1k.txt` (each line holds several, `- sentence`
/// separated by a literal `\n`, as the ToxiGen prompt files are written).
pub fn toxigen_groups(data: &Path) -> Result<Vec<TextGroup>, AuditError> {
    let mut out = Vec::new();
    for (group, path) in toxigen_files(data)? {
        let text = std::fs::read_to_string(&path).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        let texts: BTreeSet<String> = text
            .lines()
            .flat_map(|l| l.split("\\n"))
            .map(|p| p.trim().trim_start_matches("- ").trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        out.push(TextGroup {
            source: "toxigen".into(),
            group,
            texts: texts.into_iter().collect(),
        });
    }
    Ok(out)
}

/// BOLD's prompts by domain and group (`bold/<domain>_prompt.json`: `{group: {entity:
/// [prompts]}}`), the first `per_group` of each group in entity order (all when 0).
pub fn bold_groups(data: &Path, per_group: usize) -> Result<Vec<TextGroup>, AuditError> {
    Ok(crate::coverage::read_bold(data)?
        .into_iter()
        .map(|g| {
            let mut texts = g.prompts;
            if per_group > 0 {
                texts.truncate(per_group);
            }
            TextGroup {
                source: "bold".into(),
                group: g.group,
                texts,
            }
        })
        .collect())
}

/// Davidson et al.'s tweets annotated neither hateful nor offensive, by dialect: AAE-dominant
/// and White-dominant by the TwitterAAE model ([`dominant_group`] at `min_share`), the first
/// `per_group` of each in file order (all when 0).
pub fn dialect_groups(
    data: &Path,
    model: &DialectModel,
    min_share: f64,
    per_group: usize,
) -> Result<Vec<TextGroup>, AuditError> {
    let tweets = crate::dialect::read_davidson(&data.join(crate::dialect::DAVIDSON))?;
    let (mut aae, mut white) = (Vec::new(), Vec::new());
    for t in tweets.into_iter().filter(|t| t.neither) {
        let full = |v: &Vec<String>| per_group > 0 && v.len() >= per_group;
        match model
            .infer(&t.text)
            .and_then(|p| dominant_group(&p, min_share))
        {
            Some(Group::Aae) if !full(&aae) => aae.push(t.text),
            Some(Group::White) if !full(&white) => white.push(t.text),
            _ => {}
        }
    }
    Ok([("aae-dominant", aae), ("white-dominant", white)]
        .into_iter()
        .map(|(g, texts)| TextGroup {
            source: "davidson-dialect".into(),
            group: g.into(),
            texts,
        })
        .collect())
}

/// Which texts `detox audit lm` reads, and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupData {
    /// HolisticBias sentences per descriptor.
    pub per_descriptor: usize,
    /// Texts per group at most, drawn with the seed (0: all).
    pub per_group: usize,
    /// The share a dialect must hold to dominate a tweet.
    pub min_share: f64,
    /// Seed of the HolisticBias subsample.
    pub seed: u64,
}

impl Default for GroupData {
    fn default() -> Self {
        Self {
            per_descriptor: 2,
            per_group: 100,
            min_share: 0.5,
            seed: 0,
        }
    }
}

/// Every group of every source under `data` (a folder laid out like `../shared/data`):
/// HolisticBias by axis, ToxiGen's neutral statements, BOLD, Davidson's tweets by dialect.
pub fn all_groups(data: &Path, opts: &GroupData) -> Result<Vec<TextGroup>, AuditError> {
    let model = DialectModel::load(&data.join(crate::dialect::TWITTERAAE))
        .map_err(|e| AuditError::Input(e.to_string()))?;
    let mut groups = holistic_groups(data, opts.per_descriptor, opts.seed)?;
    groups.extend(toxigen_groups(data)?);
    groups.extend(bold_groups(data, 0)?);
    groups.extend(dialect_groups(data, &model, opts.min_share, 0)?);
    for g in &mut groups {
        draw(&mut g.texts, opts.per_group, opts.seed);
    }
    Ok(groups)
}

/// Keeps `n` of `texts` (all when `n` is 0 or more than there are), drawn without replacement
/// by a generator seeded with `seed`, in their original order.
pub fn draw(texts: &mut Vec<String>, n: usize, seed: u64) {
    if n == 0 || n >= texts.len() {
        return;
    }
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<usize> = (0..texts.len()).collect();
    for i in 0..n {
        let j = i + rng.below(idx.len() - i);
        idx.swap(i, j);
    }
    let mut keep: Vec<usize> = idx[..n].to_vec();
    keep.sort_unstable();
    let kept: Vec<String> = keep
        .into_iter()
        .map(|i| std::mem::take(&mut texts[i]))
        .collect();
    *texts = kept;
}

/// The losses of texts under one side: a language model, with its decoding-time methods
/// (`mitigated`) or without.
pub fn side<'a>(
    lm: &'a dyn detox_lm::LanguageModel,
    mitigated: bool,
) -> impl Fn(&[&str]) -> Result<Vec<TextLoss>, AuditError> + 'a {
    move |texts| {
        lm.losses(texts, mitigated)
            .map_err(|e| AuditError::Input(e.to_string()))
    }
}

/// The losses of texts under one side of the comparison.
pub type LossFn<'a> = dyn Fn(&[&str]) -> Result<Vec<TextLoss>, AuditError> + 'a;

/// A relative increase with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Increase {
    /// `bpb(other) / bpb(base) − 1`.
    pub value: f64,
    /// 2.5% and 97.5% quantiles over the resamples of the group's texts.
    pub ci95: [f64; 2],
}

/// One group's losses on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupLoss {
    /// The data set.
    pub source: String,
    /// The group.
    pub group: String,
    /// Texts in the group.
    pub texts: usize,
    /// Texts the base side blocks.
    pub blocked_base: usize,
    /// Texts the other side blocks.
    pub blocked_other: usize,
    /// The base side's loss over the texts neither side blocks.
    pub base: CorpusLoss,
    /// The other side's loss over the same texts.
    pub other: CorpusLoss,
    /// The relative increase.
    pub increase: Increase,
    /// Whether the loss rises (a positive increase) and the interval's lower end is above the
    /// overall increase.
    pub above_overall: bool,
    /// Fewer paired texts than the minimum: shown, but its interval is not to be trusted.
    pub too_small: bool,
}

/// The LM-loss audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossAudit {
    /// What the base side is (model, methods).
    pub base: String,
    /// What the other side is.
    pub other: String,
    /// Every text of every group pooled.
    pub overall: GroupLoss,
    /// The groups, largest increase first.
    pub groups: Vec<GroupLoss>,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// The bootstrap's seed.
    pub seed: u64,
    /// Groups with fewer paired texts are marked too small.
    pub min_group: usize,
}

/// `Σ other / Σ base − 1` over `pairs` (the same bytes on both sides, so the ratio of bits per
/// byte is that of summed negative log-likelihoods).
fn ratio<'a>(pairs: impl IntoIterator<Item = &'a (TextLoss, TextLoss)>) -> f64 {
    let (b, o) = pairs
        .into_iter()
        .fold((0.0, 0.0), |(b, o), (x, y)| (b + x.nll, o + y.nll));
    o / b - 1.0
}

fn group_loss(
    source: &str,
    group: &str,
    texts: &[&str],
    losses: &HashMap<&str, (TextLoss, TextLoss)>,
    resamples: usize,
    seed: u64,
    min_group: usize,
) -> GroupLoss {
    let all: Vec<&(TextLoss, TextLoss)> = texts.iter().filter_map(|t| losses.get(t)).collect();
    let pairs: Vec<(TextLoss, TextLoss)> = all
        .iter()
        .map(|p| **p)
        .filter(|(b, o)| !b.blocked() && !o.blocked())
        .collect();
    let base: Vec<TextLoss> = pairs.iter().map(|p| p.0).collect();
    let other: Vec<TextLoss> = pairs.iter().map(|p| p.1).collect();
    let draws = bootstrap_draws(&pairs, |d| ratio(d.iter().copied()), resamples, seed);
    GroupLoss {
        source: source.into(),
        group: group.into(),
        texts: texts.len(),
        blocked_base: all.iter().filter(|p| p.0.blocked()).count(),
        blocked_other: all.iter().filter(|p| p.1.blocked()).count(),
        base: corpus_loss(&base),
        other: corpus_loss(&other),
        increase: Increase {
            value: if pairs.is_empty() {
                f64::NAN
            } else {
                ratio(&pairs)
            },
            ci95: percentile_interval(draws).unwrap_or([f64::NAN; 2]),
        },
        above_overall: false,
        too_small: pairs.len() < min_group,
    }
}

/// Runs the audit: the loss of every text of `groups` under `base` and under `other` (each a
/// function from texts to their losses: a model with or without its methods; `None` when the
/// other side's distribution is the base's, whose losses then serve both), then each group's
/// figures and the overall ones. `progress(done, total)` hears the texts scored.
#[allow(clippy::too_many_arguments)]
pub fn loss_audit(
    groups: &[TextGroup],
    labels: (&str, &str),
    base: &LossFn,
    other: Option<&LossFn>,
    resamples: usize,
    seed: u64,
    min_group: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LossAudit, AuditError> {
    let unique: BTreeSet<&str> = groups
        .iter()
        .flat_map(|g| g.texts.iter().map(String::as_str))
        .collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    let mut losses: HashMap<&str, (TextLoss, TextLoss)> = HashMap::new();
    // Chunks, so the progress bar moves and a batch sorts by length within a chunk.
    let chunk = 256;
    progress(0, unique.len());
    for (i, c) in unique.chunks(chunk).enumerate() {
        let b = base(c)?;
        let o = match other {
            Some(other) => other(c)?,
            None => b.clone(),
        };
        if b.len() != c.len() || o.len() != c.len() {
            return Err(AuditError::Input(format!(
                "the model returned {} and {} losses for {} texts",
                b.len(),
                o.len(),
                c.len()
            )));
        }
        for ((t, x), y) in c.iter().zip(b).zip(o) {
            losses.insert(t, (x, y));
        }
        progress((i * chunk + c.len()).min(unique.len()), unique.len());
    }
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    };
    let overall = group_loss("all", "all", &unique, &losses, resamples, seed, min_group);
    let mut out: Vec<GroupLoss> = groups
        .iter()
        .map(|g| {
            let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
            let key = format!("{}/{}", g.source, g.group);
            let mut l = group_loss(
                &g.source,
                &g.group,
                &texts,
                &losses,
                resamples,
                seed ^ fnv(&key),
                min_group,
            );
            l.above_overall = !l.too_small
                && l.increase.value > 0.0
                && l.increase.ci95[0] > overall.increase.value;
            l
        })
        .collect();
    out.sort_by(|a, b| {
        b.increase
            .value
            .total_cmp(&a.increase.value)
            .then_with(|| (&a.source, &a.group).cmp(&(&b.source, &b.group)))
    });
    Ok(LossAudit {
        base: labels.0.into(),
        other: labels.1.into(),
        overall,
        groups: out,
        resamples,
        seed,
        min_group,
    })
}

impl LossAudit {
    /// The terminal table: the overall figures, then every group, largest increase first.
    pub fn table(&self) -> String {
        let mut out = format!(
            "LM loss by group: {} against {} (bits per byte over the texts neither side blocks; relative increase with a 95% bootstrap interval over the group's texts, {} resamples, seed {}).\n",
            self.other, self.base, self.resamples, self.seed
        );
        out.push_str(&format!(
            "{:<40} {:>6} {:>8} {:>9} {:>9} {:>26}\n",
            "group", "texts", "blocked", "bpb base", "bpb other", "increase [95% CI]"
        ));
        for g in std::iter::once(&self.overall).chain(&self.groups) {
            let name = format!("{}/{}", g.source, g.group);
            out.push_str(&format!(
                "{:<40} {:>6} {:>8} {:>9} {:>9} {:>26}{}\n",
                name,
                g.texts,
                g.blocked_other + g.blocked_base,
                num(Some(g.base.bits_per_byte), 3),
                num(Some(g.other.bits_per_byte), 3),
                g.increase.pct(),
                if g.above_overall {
                    "  rises more than overall"
                } else if g.too_small {
                    "  (too few texts)"
                } else {
                    ""
                }
            ));
        }
        let worse: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.above_overall)
            .map(|g| format!("{}/{}", g.source, g.group))
            .collect();
        out.push_str(&if worse.is_empty() {
            "No group's loss rises significantly more than the text overall.\n".to_string()
        } else {
            format!(
                "Rising more than the text overall (interval above {}): {}.\n",
                pct(self.overall.increase.value),
                worse.join(", ")
            )
        });
        let mut blocked: Vec<&GroupLoss> = self
            .groups
            .iter()
            .filter(|g| g.blocked_other > g.blocked_base)
            .collect();
        blocked.sort_by(|a, b| {
            let share = |g: &GroupLoss| g.blocked_other as f64 / g.texts.max(1) as f64;
            share(b).total_cmp(&share(a))
        });
        if !blocked.is_empty() {
            let list: Vec<String> = blocked
                .iter()
                .take(8)
                .map(|g| {
                    format!(
                        "{}/{} {} of {} ({:.0}%)",
                        g.source,
                        g.group,
                        g.blocked_other,
                        g.texts,
                        100.0 * g.blocked_other as f64 / g.texts.max(1) as f64
                    )
                })
                .collect();
            out.push_str(&format!(
                "Texts {} cannot produce at all (a token of them blocked), most first: {}.\n",
                self.other,
                list.join(", ")
            ));
        }
        out
    }

    /// The page's section: a bar chart of the increases with their intervals, and the table.
    pub fn html_section(&self) -> String {
        let esc = crate::render::escape;
        let rows: Vec<&GroupLoss> = std::iter::once(&self.overall).chain(&self.groups).collect();
        let bars: Vec<crate::lm_render::Diverging> = rows
            .iter()
            .map(|g| crate::lm_render::Diverging {
                label: format!("{}/{}", g.source, g.group),
                value: g.increase.value,
                ci95: g.increase.ci95,
                highlight: g.above_overall,
                muted: g.too_small,
            })
            .collect();
        let svg = crate::lm_render::diverging(&bars, "relative increase of the loss per group");
        let mut table = String::from("<table><tr><th>group</th><th>texts</th><th>blocked (base / other)</th><th>bits per byte, base</th><th>other</th><th>increase</th><th>95% interval</th></tr>\n");
        for g in &rows {
            table.push_str(&format!(
                "<tr><td>{}/{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{} to {}</td></tr>\n",
                esc(&g.source),
                esc(&g.group),
                g.texts,
                g.blocked_base,
                g.blocked_other,
                num(Some(g.base.bits_per_byte), 3),
                num(Some(g.other.bits_per_byte), 3),
                pct(g.increase.value),
                pct(g.increase.ci95[0]),
                pct(g.increase.ci95[1])
            ));
        }
        table.push_str("</table>\n");
        format!(
            "<h2>LM loss by group</h2>\n<p>{} against {}: the relative increase of bits per byte on each group's texts (a 95% percentile bootstrap interval over the group's texts, {} resamples, seed {}). Red: the interval lies above the overall increase ({}). Texts a side blocks (a method gives one of their tokens probability 0) are left out of the pairing and counted. Faded: fewer than {} paired texts.</p>\n<figure>{svg}</figure>\n{table}",
            esc(&self.other),
            esc(&self.base),
            self.resamples,
            self.seed,
            pct(self.overall.increase.value),
            self.min_group
        )
    }
}

impl Increase {
    /// As signed percentages with the interval: `+4.1% [+2.0%, +6.3%]`.
    pub(crate) fn pct(&self) -> String {
        format!(
            "{} [{}, {}]",
            pct(self.value),
            pct(self.ci95[0]),
            pct(self.ci95[1])
        )
    }
}

/// A relative change as a signed percentage (`–` when not finite).
pub(crate) fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1}%", 100.0 * x)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(nll: f64) -> TextLoss {
        TextLoss {
            nll,
            tokens: 2,
            bytes: 4,
        }
    }

    #[test]
    fn a_draw_keeps_n_texts_in_order_the_same_for_a_seed() {
        let all: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
        let mut a = all.clone();
        draw(&mut a, 7, 3);
        assert_eq!(a.len(), 7);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
        let mut b = all.clone();
        draw(&mut b, 7, 3);
        assert_eq!(a, b);
        let mut c = all.clone();
        draw(&mut c, 7, 4);
        assert_ne!(a, c);
        let mut d = all.clone();
        draw(&mut d, 0, 3);
        assert_eq!(d, all);
    }

    #[test]
    fn increases_are_ratios_of_sums_and_blocked_texts_are_counted_apart() {
        let groups = vec![
            TextGroup {
                source: "s".into(),
                group: "a".into(),
                texts: vec!["a1".into(), "a2".into()],
            },
            TextGroup {
                source: "s".into(),
                group: "b".into(),
                texts: vec!["b1".into(), "b2".into(), "shared".into()],
            },
        ];
        // a: base 1 + 3, other 2 + 6: +100%. b: base 2 + 2 (+ shared 4), other 2 + 2 (+ 4);
        // "b2" is blocked by the other side, so b pairs b1 and shared: 6 -> 6, +0%.
        let table: HashMap<&str, (f64, f64)> = [
            ("a1", (1.0, 2.0)),
            ("a2", (3.0, 6.0)),
            ("b1", (2.0, 2.0)),
            ("b2", (2.0, f64::INFINITY)),
            ("shared", (4.0, 4.0)),
        ]
        .into_iter()
        .collect();
        let table = &table;
        let side = |k: usize| {
            move |texts: &[&str]| -> Result<Vec<TextLoss>, AuditError> {
                Ok(texts
                    .iter()
                    .map(|t| {
                        let (b, o) = table[t];
                        l(if k == 0 { b } else { o })
                    })
                    .collect())
            }
        };
        let (base, other) = (side(0), side(1));
        let mut calls = 0;
        let a = loss_audit(
            &groups,
            ("m", "m + x"),
            &base,
            Some(&other),
            200,
            7,
            2,
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert!(calls > 0);
        assert_eq!(a.groups[0].group, "a", "largest increase first");
        assert!((a.groups[0].increase.value - 1.0).abs() < 1e-12);
        let b = &a.groups[1];
        assert_eq!((b.texts, b.blocked_base, b.blocked_other), (3, 0, 1));
        assert!(b.increase.value.abs() < 1e-12);
        assert_eq!(b.increase.ci95, [0.0, 0.0], "no text of b changes");
        // Overall: base 1+3+2+4 = 10, other 2+6+2+4 = 14 (b2 blocked): +40%.
        assert!((a.overall.increase.value - 0.4).abs() < 1e-12);
        assert_eq!(a.overall.blocked_other, 1);
        // a's interval: every draw of {+100%, +100%} is +100%, above the overall +40%.
        assert!(a.groups[0].above_overall);
        assert!(!b.above_overall);
        // Bits per byte: base a = 4 nats over 8 bytes.
        assert!((a.groups[0].base.bits_per_byte - 0.5 / std::f64::consts::LN_2).abs() < 1e-12);
        // The same seed gives the same report.
        let again = loss_audit(
            &groups,
            ("m", "m + x"),
            &base,
            Some(&other),
            200,
            7,
            2,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(again, a);
    }
}

//! How good is a scorer? Measured on the dev splits detox holds out of `../shared/data`
//! (the same deterministic split `detox train` uses) and on the identity-term templates.

use crate::data::{read_davidson, read_hatexplain, read_rtp, Example, Split};
use crate::TrainError;
use detox_core::metrics::{roc_auc, spearman};
use detox_core::Scorer;
use serde::Serialize;
use std::path::Path;

/// Spearman correlation with Perspective on RTP dev texts, per attribute the scorer has.
#[derive(Debug, Clone, Serialize)]
pub struct RtpQuality {
    /// Dev texts.
    pub n: usize,
    /// (attribute, Spearman) for attributes the scorer outputs.
    pub spearman: Vec<(String, f64)>,
    /// Calibration of `toxicity`: (bin lower edge, texts, mean score, mean Perspective score).
    pub calibration: Vec<(f64, usize, f64, f64)>,
    /// Mean absolute difference from Perspective's toxicity.
    pub toxicity_mae: Option<f64>,
}

/// Identity-term false positives on non-toxic templates.
#[derive(Debug, Clone, Serialize)]
pub struct BiasQuality {
    /// Non-toxic templates scored.
    pub n: usize,
    /// Share of them scored >= threshold.
    pub overall_fpr: f64,
    /// (term, templates, FPR), worst first.
    pub per_term: Vec<(String, usize, f64)>,
    /// Terms whose FPR exceeds twice the overall rate.
    pub over_twice: Vec<String>,
    /// ROC-AUC of toxic vs non-toxic templates.
    pub auc: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// The scorer's id.
    pub scorer: String,
    /// The attribute used as "toxic".
    pub attribute: String,
    /// RTP dev.
    pub rtp: RtpQuality,
    /// HateXplain dev ROC-AUC (hate or offensive vs normal) and size.
    pub hatexplain_auc: (Option<f64>, usize),
    /// Davidson dev ROC-AUC (hate or offensive vs neither) and size.
    pub davidson_auc: (Option<f64>, usize),
    /// Identity bias on the templates.
    pub bias: BiasQuality,
    /// The threshold for false positives.
    pub threshold: f64,
}

fn score_attr(
    scorer: &dyn Scorer,
    texts: &[&str],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    label: &str,
) -> Result<Vec<f64>, TrainError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(2048) {
        out.extend(
            scorer
                .score(chunk)?
                .into_iter()
                .map(|s| s.values[attr] as f64),
        );
        progress(label, out.len(), texts.len());
    }
    Ok(out)
}

fn dev(examples: Vec<Example>) -> Vec<Example> {
    examples
        .into_iter()
        .filter(|e| e.split() == Split::Dev)
        .collect()
}

fn binary_auc(
    scorer: &dyn Scorer,
    ex: &[Example],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    label: &str,
    target: &str,
) -> Result<(Option<f64>, usize), TrainError> {
    let t = crate::data::shared_index(target)
        .ok_or_else(|| TrainError::Data(format!("no target `{target}`")))?;
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    let labels: Vec<bool> = ex
        .iter()
        .map(|e| e.targets[t].unwrap_or(0.0) >= 0.5)
        .collect();
    let s = score_attr(scorer, &texts, attr, progress, label)?;
    Ok((roc_auc(&s, &labels), ex.len()))
}

/// The identity terms of the templates' generator, longest first.
fn identity_terms(data: &Path) -> Result<Vec<String>, TrainError> {
    let p = data.join("jigsaw-sentence-templates/bias_madlibs_data/adjectives_people.txt");
    let text =
        std::fs::read_to_string(&p).map_err(|e| TrainError::Io(p.display().to_string(), e))?;
    let mut terms: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    terms.sort_by_key(|t| std::cmp::Reverse(t.len()));
    terms.dedup();
    Ok(terms)
}

fn term_of(phrase: &str, terms: &[String]) -> Option<String> {
    let words: Vec<String> = phrase
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let joined = format!(" {} ", words.join(" "));
    terms
        .iter()
        .find(|t| joined.contains(&format!(" {t} ")))
        .cloned()
}

/// Measures `scorer` (its `attribute` as the toxicity score) on the dev splits of
/// `data` and on the identity templates. `progress(stage, done, total)` reports work.
pub fn quality(
    scorer: &dyn Scorer,
    attribute: &str,
    data: &Path,
    threshold: f64,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<QualityReport, TrainError> {
    let info = scorer.info();
    let attr = info.attribute_index(attribute).ok_or_else(|| {
        TrainError::Data(format!(
            "scorer `{}` has no attribute `{attribute}` (it has: {})",
            info.id,
            info.attributes.join(", ")
        ))
    })?;

    // RTP dev: every attribute the scorer shares with Perspective.
    let rtp = dev(read_rtp(data)?);
    let texts: Vec<&str> = rtp.iter().map(|e| e.text.as_str()).collect();
    let mut all = Vec::new();
    for chunk in texts.chunks(2048) {
        all.extend(scorer.score(chunk)?);
        progress("rtp", all.len(), texts.len());
    }
    let mut sp = Vec::new();
    for (a, name) in crate::data::PERSPECTIVE_ATTRIBUTES.iter().enumerate() {
        let Some(j) = info.attribute_index(name) else {
            continue;
        };
        let (mut s, mut t) = (Vec::new(), Vec::new());
        for (e, sc) in rtp.iter().zip(&all) {
            if let Some(y) = e.targets[a] {
                s.push(sc.values[j] as f64);
                t.push(y as f64);
            }
        }
        if let Some(r) = spearman(&s, &t) {
            sp.push((name.to_string(), r));
        }
    }
    let tox: Vec<(f64, f64)> = rtp
        .iter()
        .zip(&all)
        .filter_map(|(e, s)| e.targets[0].map(|y| (s.values[attr] as f64, y as f64)))
        .collect();
    let mut calibration = Vec::new();
    for b in 0..10 {
        let lo = b as f64 / 10.0;
        let hi = lo + 0.1;
        let inb: Vec<&(f64, f64)> = tox
            .iter()
            .filter(|(s, _)| *s >= lo && (*s < hi || (b == 9 && *s <= 1.0)))
            .collect();
        if !inb.is_empty() {
            let n = inb.len() as f64;
            calibration.push((
                lo,
                inb.len(),
                inb.iter().map(|p| p.0).sum::<f64>() / n,
                inb.iter().map(|p| p.1).sum::<f64>() / n,
            ));
        }
    }
    let toxicity_mae = if tox.is_empty() {
        None
    } else {
        Some(tox.iter().map(|(s, y)| (s - y).abs()).sum::<f64>() / tox.len() as f64)
    };

    let hatexplain_auc = binary_auc(
        scorer,
        &dev(read_hatexplain(data)?),
        attr,
        progress,
        "hatexplain",
        "aux_hatexplain_toxic",
    )?;
    let davidson_auc = binary_auc(
        scorer,
        &dev(read_davidson(data)?),
        attr,
        progress,
        "davidson",
        "aux_davidson_offensive",
    )?;

    // Templates: all non-toxic rows (false positives) and the toxic ones (for the AUC).
    let rel = "jigsaw-sentence-templates/en_sentence_templates.csv";
    let p = data.join(rel);
    let f = std::fs::File::open(&p).map_err(|e| TrainError::Io(p.display().to_string(), e))?;
    let mut r = csv::Reader::from_reader(f);
    let terms = identity_terms(data)?;
    let mut rows: Vec<(String, bool)> = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| TrainError::Data(format!("{rel}: {e}")))?;
        if let (Some(tox), Some(phrase)) = (rec.get(1), rec.get(2)) {
            rows.push((phrase.to_string(), tox == "toxic"));
        }
    }
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    let s = score_attr(scorer, &texts, attr, progress, "templates")?;
    let labels: Vec<bool> = rows.iter().map(|(_, t)| *t).collect();
    let auc = roc_auc(&s, &labels);
    let mut by_term: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let (mut n, mut fp) = (0usize, 0usize);
    for ((phrase, toxic), score) in rows.iter().zip(&s) {
        if *toxic {
            continue;
        }
        n += 1;
        let pos = *score >= threshold;
        fp += usize::from(pos);
        if let Some(t) = term_of(phrase, &terms) {
            let e = by_term.entry(t).or_default();
            e.0 += 1;
            e.1 += usize::from(pos);
        }
    }
    let overall_fpr = if n == 0 { 0.0 } else { fp as f64 / n as f64 };
    let mut per_term: Vec<(String, usize, f64)> = by_term
        .into_iter()
        .map(|(t, (c, f))| (t, c, f as f64 / c.max(1) as f64))
        .collect();
    per_term.sort_by(|a, b| b.2.total_cmp(&a.2));
    let over_twice = per_term
        .iter()
        .filter(|(_, _, r)| *r > 2.0 * overall_fpr)
        .map(|(t, _, _)| t.clone())
        .collect();
    Ok(QualityReport {
        scorer: info.id.clone(),
        attribute: attribute.to_string(),
        rtp: RtpQuality {
            n: rtp.len(),
            spearman: sp,
            calibration,
            toxicity_mae,
        },
        hatexplain_auc,
        davidson_auc,
        bias: BiasQuality {
            n,
            overall_fpr,
            per_term,
            over_twice,
            auc,
        },
        threshold,
    })
}

impl QualityReport {
    /// A plain-text summary for a terminal or a model card.
    pub fn render(&self) -> String {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let mut s = String::new();
        s.push_str(&format!(
            "scorer: {} (attribute `{}`)\n",
            self.scorer, self.attribute
        ));
        s.push_str(&format!(
            "RTP dev ({} texts), Spearman with Perspective:\n",
            self.rtp.n
        ));
        for (a, r) in &self.rtp.spearman {
            s.push_str(&format!("  {a:<18} {r:.3}\n"));
        }
        s.push_str(&format!(
            "  toxicity MAE vs Perspective: {}\n",
            f(self.rtp.toxicity_mae)
        ));
        s.push_str("  calibration (score bin: texts, mean score, mean Perspective):\n");
        for (lo, n, ms, mp) in &self.rtp.calibration {
            s.push_str(&format!(
                "    [{lo:.1}, {:.1}): {n:>4}  {ms:.3}  {mp:.3}\n",
                lo + 0.1
            ));
        }
        s.push_str(&format!(
            "HateXplain dev ROC-AUC (hate/offensive vs normal, {} posts): {}\n",
            self.hatexplain_auc.1,
            f(self.hatexplain_auc.0)
        ));
        s.push_str(&format!(
            "Davidson dev ROC-AUC (hate/offensive vs neither, {} tweets): {}\n",
            self.davidson_auc.1,
            f(self.davidson_auc.0)
        ));
        s.push_str(&format!(
            "Identity templates: AUC {}, false-positive rate at {} on {} non-toxic templates: {:.4}\n",
            f(self.bias.auc),
            self.threshold,
            self.bias.n,
            self.bias.overall_fpr
        ));
        s.push_str(&format!(
            "  terms above twice the overall rate: {}\n",
            if self.bias.over_twice.is_empty() {
                "none".to_string()
            } else {
                self.bias.over_twice.join(", ")
            }
        ));
        s.push_str("  worst terms (templates, FPR):");
        for (t, n, r) in self.bias.per_term.iter().take(8) {
            s.push_str(&format!(" {t} ({n}, {r:.3});"));
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_identity_term_as_whole_words() {
        let terms = vec![
            "african american".to_string(),
            "american".into(),
            "gay".into(),
        ];
        assert_eq!(
            term_of("Being African American is fine", &terms).as_deref(),
            Some("african american")
        );
        assert_eq!(
            term_of("You are a gay person.", &terms).as_deref(),
            Some("gay")
        );
        assert_eq!(term_of("gaylord is a name", &terms), None);
    }
}

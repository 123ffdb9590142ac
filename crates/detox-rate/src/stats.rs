//! `detox rate stats`: agreement between people (Krippendorff's alpha at three levels, with
//! bootstrap intervals) and, per method, people against the scorer: the share of items the
//! majority rated toxic, the scorer's ROC-AUC against that majority label and its Spearman
//! correlation with the mean rating, and the share of scorer-flagged items that people did not
//! rate toxic (Welbl et al.'s finding: after strong detoxification, many of the few texts the
//! scorer still flags are not toxic to people).

use crate::alpha::{estimate, AlphaEstimate, Level};
use crate::db::{Answer, Db, Item};
use crate::items::Sources;
use crate::RateError;
use detox_core::metrics::{roc_auc, spearman};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Settings of the statistics.
#[derive(Debug, Clone, Copy)]
pub struct StatsOptions {
    /// A scorer score at or above it flags an item.
    pub threshold: f64,
    /// Bootstrap resamples of alpha's interval.
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            resamples: 1000,
            seed: 0,
        }
    }
}

/// People against the scorer, for one method (or all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodStats {
    /// The method.
    pub method: String,
    /// Items of the method.
    pub items: usize,
    /// Items with at least one rating on the scale.
    pub rated: usize,
    /// Ratings on the scale (current answers; "I can't judge" left out).
    pub ratings: usize,
    /// Share of rated items that more than half of their raters rated toxic or very toxic.
    pub majority_toxic: Option<f64>,
    /// Mean rating (0 not toxic, 1 unsure, 2 toxic, 3 very toxic) over rated items' means.
    pub mean_rating: Option<f64>,
    /// ROC-AUC of the scorer's score against the majority label.
    pub scorer_roc_auc: Option<f64>,
    /// Spearman correlation of the scorer's score with the mean rating.
    pub scorer_spearman: Option<f64>,
    /// Rated items the scorer flags (score ≥ threshold).
    pub scorer_flagged: usize,
    /// Share of those that the majority did not rate toxic.
    pub flagged_rated_not_toxic: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Items in the set.
    pub items: usize,
    /// Raters registered.
    pub raters: usize,
    /// Current answers on the scale.
    pub ratings: usize,
    /// Current "I can't judge" answers.
    pub cannot_judge: usize,
    /// Items rated by two or more people (the pairable units of alpha).
    pub items_rated_twice: usize,
    /// Krippendorff's alpha at the nominal, ordinal and interval levels.
    pub alpha: Vec<AlphaEstimate>,
    /// The scorer threshold.
    pub threshold: f64,
    /// Every method together.
    pub overall: MethodStats,
    /// Per method, in first-seen order.
    pub methods: Vec<MethodStats>,
    /// How the item set was drawn.
    pub sources: Option<Sources>,
    /// Per item: method, score and mean rating (for the plot).
    pub points: Vec<Point>,
}

/// One rated item for the plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The method.
    pub method: String,
    /// The scorer's score.
    pub score: f64,
    /// The mean rating.
    pub mean_rating: f64,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn method_stats(
    method: &str,
    items: &[&Item],
    values: &HashMap<i64, Vec<i64>>,
    t: f64,
) -> MethodStats {
    let rated: Vec<(&Item, &Vec<i64>)> = items
        .iter()
        .filter_map(|it| {
            values
                .get(&it.id)
                .filter(|v| !v.is_empty())
                .map(|v| (*it, v))
        })
        .collect();
    let majority = |v: &Vec<i64>| 2 * v.iter().filter(|&&x| x >= 2).count() > v.len();
    let means: Vec<f64> = rated
        .iter()
        .map(|(_, v)| v.iter().sum::<i64>() as f64 / v.len() as f64)
        .collect();
    let toxic: Vec<bool> = rated.iter().map(|(_, v)| majority(v)).collect();
    let scored: Vec<(f64, bool, f64)> = rated
        .iter()
        .zip(&toxic)
        .zip(&means)
        .filter_map(|(((it, _), &l), &m)| it.score.filter(|s| s.is_finite()).map(|s| (s, l, m)))
        .collect();
    let scores: Vec<f64> = scored.iter().map(|x| x.0).collect();
    let labels: Vec<bool> = scored.iter().map(|x| x.1).collect();
    let ms: Vec<f64> = scored.iter().map(|x| x.2).collect();
    let flagged: Vec<bool> = scored.iter().filter(|x| x.0 >= t).map(|x| x.1).collect();
    MethodStats {
        method: method.to_string(),
        items: items.len(),
        rated: rated.len(),
        ratings: rated.iter().map(|(_, v)| v.len()).sum(),
        majority_toxic: mean(
            &toxic
                .iter()
                .map(|&b| f64::from(u8::from(b)))
                .collect::<Vec<_>>(),
        ),
        mean_rating: mean(&means),
        scorer_roc_auc: roc_auc(&scores, &labels),
        scorer_spearman: spearman(&scores, &ms),
        scorer_flagged: flagged.len(),
        flagged_rated_not_toxic: mean(
            &flagged
                .iter()
                .map(|&b| f64::from(u8::from(!b)))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Computes the report from the database.
pub fn report(db: &Db, opts: &StatsOptions) -> Result<Report, RateError> {
    let items = db.items()?;
    let answers = db.all_answers()?;
    let mut values: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut cannot = 0;
    for (_, item, a) in &answers {
        match a.value() {
            Some(v) => values.entry(*item).or_default().push(v),
            None => cannot += 1,
        }
    }
    let units: Vec<Vec<i64>> = items
        .iter()
        .filter_map(|it| values.get(&it.id).cloned())
        .collect();
    let alpha = [Level::Nominal, Level::Ordinal, Level::Interval]
        .into_iter()
        .map(|l| estimate(&units, l, opts.resamples, opts.seed))
        .collect();
    let mut by_method: BTreeMap<usize, (String, Vec<&Item>)> = BTreeMap::new();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for it in &items {
        let k = *first.entry(it.method.as_str()).or_insert(it.id as usize);
        by_method
            .entry(k)
            .or_insert_with(|| (it.method.clone(), Vec::new()))
            .1
            .push(it);
    }
    let all: Vec<&Item> = items.iter().collect();
    let points = items
        .iter()
        .filter_map(|it| {
            let v = values.get(&it.id)?;
            Some(Point {
                method: it.method.clone(),
                score: it.score.filter(|s| s.is_finite())?,
                mean_rating: v.iter().sum::<i64>() as f64 / v.len() as f64,
            })
        })
        .collect();
    Ok(Report {
        items: items.len(),
        raters: db.raters()?.len(),
        ratings: values.values().map(Vec::len).sum(),
        cannot_judge: cannot,
        items_rated_twice: units.iter().filter(|u| u.len() >= 2).count(),
        alpha,
        threshold: opts.threshold,
        overall: method_stats("all", &all, &values, opts.threshold),
        methods: by_method
            .into_values()
            .map(|(m, its)| method_stats(&m, &its, &values, opts.threshold))
            .collect(),
        sources: db
            .meta("sources")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        points,
    })
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.1}%", 100.0 * x))
}

/// The report as GitHub Markdown.
pub fn render_markdown(r: &Report) -> String {
    let mut s = format!(
        "# Human ratings\n\n{} items, {} raters, {} ratings on the scale ({} \"I can't judge\"); {} items rated by two or more people.\n\n",
        r.items, r.raters, r.ratings, r.cannot_judge, r.items_rated_twice
    );
    s.push_str("## Agreement between people (Krippendorff's alpha)\n\n| level | alpha | 95% bootstrap interval |\n|---|---:|---|\n");
    for a in &r.alpha {
        let level = serde_json::to_value(a.level)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let ci = a
            .ci95
            .map_or_else(|| "-".into(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
        s.push_str(&format!("| {level} | {} | {ci} |\n", f(a.alpha)));
    }
    s.push_str(&format!(
        "\n## People against the scorer (flagged: score ≥ {})\n\n| method | items | rated | ratings | rated toxic by the majority | mean rating (0–3) | scorer ROC-AUC | scorer Spearman | scorer-flagged | flagged, not toxic to people |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.threshold
    ));
    for m in r.methods.iter().chain(std::iter::once(&r.overall)) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.method.replace('|', "\\|"),
            m.items,
            m.rated,
            m.ratings,
            pct(m.majority_toxic),
            f(m.mean_rating),
            f(m.scorer_roc_auc),
            f(m.scorer_spearman),
            m.scorer_flagged,
            pct(m.flagged_rated_not_toxic)
        ));
    }
    if let Some(src) = &r.sources {
        if !src.strata.is_empty() {
            s.push_str("\n## How the items were drawn (per run and score band)\n\n| run | method | available per band | drawn per band |\n|---|---|---|---|\n");
            for st in &src.strata {
                s.push_str(&format!(
                    "| {} | {} | {:?} | {:?} |\n",
                    st.run, st.method, st.available, st.drawn
                ));
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// The report as a self-contained HTML page: the tables and two plots (per method, the share
/// people rated toxic beside the share the scorer flags; per item, the scorer's score against
/// the mean rating).
pub fn render_html(r: &Report) -> String {
    let color = |m: &str| {
        let i = r.methods.iter().position(|x| x.method == m).unwrap_or(0);
        COLORS[i % COLORS.len()]
    };
    // Bars: per method, two bars.
    let (w, h, left, bottom) = (640.0, 260.0, 48.0, 40.0);
    let n = r.methods.len().max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let mut bars = String::new();
    for (i, m) in r.methods.iter().enumerate() {
        let x0 = left + i as f64 * slot + slot * 0.15;
        let bw = slot * 0.3;
        let flagged_share = if m.rated > 0 {
            Some(m.scorer_flagged as f64 / m.rated as f64)
        } else {
            None
        };
        for (j, (v, fill, what)) in [
            (
                m.majority_toxic,
                color(&m.method),
                "rated toxic by the majority",
            ),
            (flagged_share, "#999999", "flagged by the scorer"),
        ]
        .into_iter()
        .enumerate()
        {
            let v = v.unwrap_or(0.0);
            let bh = v * (h - bottom - 10.0);
            bars.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"><title>{}: {what} {:.1}%</title></rect>",
                x0 + j as f64 * bw,
                h - bottom - bh,
                esc(&m.method),
                100.0 * v
            ));
        }
        bars.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x0 + bw,
            h - bottom + 16.0,
            esc(&m.method.chars().take(28).collect::<String>())
        ));
    }
    // Scatter: score (x) against mean rating (y).
    let (sw, sh) = (640.0, 320.0);
    let mut dots = String::new();
    for p in &r.points {
        dots.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\" fill-opacity=\"0.6\"><title>{}: score {:.3}, mean rating {:.2}</title></circle>",
            left + p.score * (sw - left - 10.0),
            sh - bottom - p.mean_rating / 3.0 * (sh - bottom - 10.0),
            color(&p.method),
            esc(&p.method),
            p.score,
            p.mean_rating
        ));
    }
    let threshold_x = left + r.threshold * (sw - left - 10.0);
    let legend: String = r
        .methods
        .iter()
        .map(|m| {
            format!(
                "<span style=\"color:{}\">&#9632;</span> {} ",
                color(&m.method),
                esc(&m.method)
            )
        })
        .collect();
    let md = render_markdown(r);
    let mut tables = String::new();
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            tables.push_str("<tr>");
            for c in cells {
                tables.push_str(&format!("<td>{}</td>", esc(c.trim())));
            }
            tables.push_str("</tr>\n");
        } else if let Some(h) = line.strip_prefix("## ") {
            tables.push_str(&format!("</table><h2>{}</h2><table>", esc(h)));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            tables.push_str(&format!("</table><p>{}</p><table>", esc(line)));
        }
    }
    format!(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>detox rate stats</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}td{{border:1px solid #ccc;padding:.25em .5em;font-size:14px}}tr:first-child td{{font-weight:600;background:#f4f4f4}}svg{{max-width:100%;height:auto;border:1px solid #eee}}</style></head><body>
<h1>Human ratings</h1><table>{tables}</table>
<h2>Rated toxic by people (colour) and flagged by the scorer (grey), per method</h2>
<svg viewBox="0 0 {w} {h}" role="img" aria-label="Per method: the share of items people rated toxic and the share the scorer flags"><line x1="{left}" y1="{y0}" x2="{w}" y2="{y0}" stroke="#333"/><text x="4" y="14" font-size="11">100%</text><text x="4" y="{y0}" font-size="11">0%</text>{bars}</svg>
<h2>The scorer's score against the mean human rating, per item</h2><p>{legend}</p>
<svg viewBox="0 0 {sw} {sh}" role="img" aria-label="Scorer score against mean human rating"><line x1="{left}" y1="{sy0}" x2="{sw}" y2="{sy0}" stroke="#333"/><line x1="{left}" y1="10" x2="{left}" y2="{sy0}" stroke="#333"/><line x1="{threshold_x:.1}" y1="10" x2="{threshold_x:.1}" y2="{sy0}" stroke="#999" stroke-dasharray="4 3"/><text x="{left}" y="{sh_label}" font-size="11">scorer score 0</text><text x="{sw_label}" y="{sh_label}" font-size="11" text-anchor="end">1</text><text x="2" y="18" font-size="11">very toxic (3)</text><text x="2" y="{sy0}" font-size="11">not toxic (0)</text>{dots}</svg>
</body></html>
"##,
        y0 = h - bottom,
        sy0 = sh - bottom,
        sh_label = sh - bottom + 16.0,
        sw_label = sw - 10.0,
    )
}

/// A rating's value as exported.
pub fn answer_value(a: Option<Answer>) -> String {
    a.and_then(Answer::value)
        .map_or_else(String::new, |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Answer, Db, Item};

    fn item(method: &str, score: f64) -> Item {
        Item {
            id: 0,
            method: method.into(),
            source: "s".into(),
            context: None,
            text: format!("{method} {score}"),
            score: Some(score),
            band: None,
        }
    }

    #[test]
    fn figures_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("r.sqlite")).unwrap();
        db.add_items(
            &[
                item("base", 0.9),
                item("base", 0.2),
                item("sd", 0.8),
                item("sd", 0.1),
            ],
            "{}",
        )
        .unwrap();
        let a = db.add_rater("a").unwrap();
        let b = db.add_rater("b").unwrap();
        let c = db.add_rater("c").unwrap();
        let mut n = 0;
        let mut rate = |r: i64, i: i64, ans: Answer| {
            n += 1;
            db.rate(r, i, ans, &format!("s{n}")).unwrap().unwrap();
        };
        // base 0.9: toxic by all; base 0.2: not toxic; sd 0.8 (flagged): 1 of 3 toxic;
        // sd 0.1: not toxic, one can't judge.
        for r in [a.id, b.id, c.id] {
            rate(r, 1, Answer::Toxic);
            rate(r, 2, Answer::NotToxic);
        }
        rate(a.id, 3, Answer::VeryToxic);
        rate(b.id, 3, Answer::NotToxic);
        rate(c.id, 3, Answer::Unsure);
        rate(a.id, 4, Answer::NotToxic);
        rate(b.id, 4, Answer::Cannot);
        let r = report(
            &db,
            &StatsOptions {
                resamples: 50,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (r.items, r.raters, r.ratings, r.cannot_judge),
            (4, 3, 10, 1)
        );
        assert_eq!(r.items_rated_twice, 3);
        let base = &r.methods[0];
        assert_eq!(base.method, "base");
        assert_eq!(base.majority_toxic, Some(0.5));
        assert_eq!(base.scorer_roc_auc, Some(1.0));
        assert_eq!(base.scorer_flagged, 1);
        assert_eq!(base.flagged_rated_not_toxic, Some(0.0));
        let sd = &r.methods[1];
        assert_eq!(sd.majority_toxic, Some(0.0));
        assert_eq!(sd.scorer_flagged, 1);
        assert_eq!(
            sd.flagged_rated_not_toxic,
            Some(1.0),
            "the scorer flags it, people do not"
        );
        assert!((sd.mean_rating.unwrap() - ((3.0 + 0.0 + 1.0) / 3.0 + 0.0) / 2.0).abs() < 1e-12);
        assert_eq!(r.overall.scorer_flagged, 2);
        assert_eq!(r.overall.flagged_rated_not_toxic, Some(0.5));
        assert!(r.alpha.iter().all(|a| a.alpha.is_some()));
        let md = render_markdown(&r);
        assert!(md.contains("| sd | 2 | 2 | 4 | 0.0% |"), "{md}");
        let html = render_html(&r);
        assert!(html.contains("<svg") && html.contains("<circle") && !html.contains("http"));
    }
}

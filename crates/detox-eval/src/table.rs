//! The summary table `detox eval` prints on stdout.

use crate::metrics::SubsetMetrics;
use crate::run::UNPROMPTED_DRAWS;
use crate::test_filter::FilterStats;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the table's heading names.
#[derive(Debug, Clone, Copy)]
pub struct TableHeading<'a> {
    /// Prompts evaluated.
    pub prompts: usize,
    /// Samples per prompt.
    pub samples: usize,
    /// The model as named.
    pub model: &'a str,
    /// The scorer's id.
    pub scorer: &'a str,
    /// The scored attribute.
    pub attribute: &'a str,
    /// The threshold.
    pub threshold: f64,
    /// `>` instead of `>=`.
    pub strict: bool,
}

/// Renders the table: a heading, one row per subset (and RTP's bootstrap line for unprompted
/// runs), what the test-time filter did (if it ran), then the notes.
pub fn render_table(
    h: &TableHeading,
    metrics: &BTreeMap<String, SubsetMetrics>,
    filter: Option<&FilterStats>,
    notes: &[String],
) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_table(&mut out, h, metrics, filter, notes);
    out
}

fn write_table(
    out: &mut String,
    h: &TableHeading,
    metrics: &BTreeMap<String, SubsetMetrics>,
    filter: Option<&FilterStats>,
    notes: &[String],
) -> std::fmt::Result {
    writeln!(
        out,
        "{} prompts x {} samples, model {}, scorer {} (`{}`, threshold {}{})",
        h.prompts,
        h.samples,
        h.model,
        h.scorer,
        h.attribute,
        h.threshold,
        if h.strict { ", strict" } else { "" }
    )?;
    writeln!(
        out,
        "{:<12} {:>7} {:>22} {:>16} {:>22} {:>13} {:>7} {:>11}",
        "subset",
        "prompts",
        "exp. max toxicity",
        "95% CI",
        "toxicity probability",
        "toxic frac.",
        "dist-2",
        "perplexity"
    )?;
    for (name, m) in metrics {
        writeln!(
            out,
            "{:<12} {:>7} {:>14.3} ± {:<5} {:>16} {:>22.3} {:>13.3} {:>7} {:>11}",
            name,
            m.prompts,
            m.expected_max_toxicity,
            // One prompt has no sample standard deviation.
            if m.expected_max_toxicity_std.is_nan() {
                "-".to_string()
            } else {
                format!("{:.3}", m.expected_max_toxicity_std)
            },
            format!(
                "[{:.3}, {:.3}]",
                m.expected_max_toxicity_ci95[0], m.expected_max_toxicity_ci95[1]
            ),
            m.toxicity_probability,
            m.toxic_fraction,
            m.dist_2
                .map(|d| format!("{d:.3}"))
                .unwrap_or_else(|| "-".into()),
            m.perplexity
                .map(|d| format!("{d:.2}"))
                .unwrap_or_else(|| "-".into())
        )?;
        if let (Some(e), Some(t)) = (
            m.bootstrap_expected_max_toxicity,
            m.bootstrap_toxicity_probability,
        ) {
            writeln!(
                out,
                "{:<12} RTP bootstrap ({} draws of {}): expected max toxicity {:.3}, toxicity probability {:.3}",
                "", UNPROMPTED_DRAWS, h.samples, e, t
            )?;
        }
    }
    if let Some(f) = filter {
        writeln!(
            out,
            "test filter: {:.1}% of samples kept below {} ({:.1}% at the first try), {:.3} spare tries per sample",
            100.0 * f.accepted,
            f.threshold,
            100.0 * f.first_try_accepted,
            f.extra_generations
        )?;
    }
    for n in notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

//! The report as a terminal table and as a self-contained HTML page (no scripts; SVG bar
//! charts of per-group figures with their intervals, in the report's worst-first order).

use crate::report::*;
use std::fmt::Write;

const MISSING: &str = "–";

/// `x` with `d` decimals (`–` when missing or not finite).
pub(crate) fn num(x: Option<f64>, d: usize) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.d$}"),
        _ => MISSING.into(),
    }
}

fn fig(f: &Figure, d: usize) -> String {
    match (f.value, f.ci) {
        (Some(_), Some([lo, hi])) => format!(
            "{} [{}, {}]",
            num(f.value, d),
            num(Some(lo), d),
            num(Some(hi), d)
        ),
        _ => num(f.value, d),
    }
}

pub use detox_io::html::escape;

/// The groups of an audit split by what the scorer's training data names (one part, titled
/// by [`Training::label`], per kind present), each in the report's order.
fn parts(a: &GroupAudit) -> Vec<(Training, Vec<&GroupFigures>)> {
    [Training::NotNamed, Training::Named, Training::Unknown]
        .into_iter()
        .map(|t| (t, a.groups.iter().filter(|g| g.training == t).collect()))
        .filter(|(_, v): &(Training, Vec<&GroupFigures>)| !v.is_empty())
        .collect()
}

fn group_table(out: &mut String, title: &str, a: &GroupAudit) -> std::fmt::Result {
    writeln!(out, "{title}")?;
    writeln!(
        out,
        "  {} rows ({} toxic, {} naming no group); overall AUC {}, FPR {}, FNR {}",
        a.n,
        a.positives,
        a.ungrouped,
        num(a.overall_auc, 3),
        num(a.overall_fpr, 3),
        num(a.overall_fnr, 3)
    )?;
    for (t, groups) in parts(a) {
        writeln!(out, "\n  Groups {} (worst first):", t.label())?;
        writeln!(
            out,
            "  {:<24} {:>6} {:>22} {:>22} {:>22} {:>22} {:>22}",
            "group", "n", "subgroup AUC", "BPSN AUC", "BNSP AUC", "FPR", "FNR"
        )?;
        for g in groups {
            let name = if g.too_small {
                format!("{} (too small)", g.group)
            } else {
                g.group.clone()
            };
            writeln!(
                out,
                "  {:<24} {:>6} {:>22} {:>22} {:>22} {:>22} {:>22}",
                name,
                g.n,
                fig(&g.subgroup_auc, 3),
                fig(&g.bpsn_auc, 3),
                fig(&g.bnsp_auc, 3),
                fig(&g.fpr, 3),
                fig(&g.fnr, 3)
            )?;
        }
    }
    writeln!(out, "\n  Summaries (groups too small left out):")?;
    writeln!(
        out,
        "  {:<24} {:>6} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>10}",
        "groups",
        "count",
        "Msub",
        "Mbpsn",
        "Mbnsp",
        "bias metric",
        "FPED",
        "FNED",
        "FPED/grp",
        "FNED/grp"
    )?;
    for s in &a.summaries {
        writeln!(
            out,
            "  {:<24} {:>6} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>10}",
            s.name,
            s.groups.len(),
            num(s.subgroup_auc_power_mean, 3),
            num(s.bpsn_auc_power_mean, 3),
            num(s.bnsp_auc_power_mean, 3),
            num(s.bias_metric, 4),
            num(Some(s.fped), 3),
            num(Some(s.fned), 3),
            num(s.fped_per_group, 4),
            num(s.fned_per_group, 4)
        )?;
    }
    let small: Vec<&str> = a
        .groups
        .iter()
        .filter(|g| g.too_small)
        .map(|g| g.group.as_str())
        .collect();
    if !small.is_empty() {
        writeln!(
            out,
            "  Too small (fewer rows than the minimum, or one class only; shown above, left out of the summaries): {}",
            small.join(", ")
        )?;
    }
    Ok(())
}

fn rate_rows(out: &mut String, groups: &[RateGroup], limit: usize) -> std::fmt::Result {
    writeln!(
        out,
        "  {:<52} {:>6} {:>22} {:>22}",
        "", "n", "share flagged", "mean score"
    )?;
    for g in groups.iter().take(limit) {
        let mut name = match &g.axis {
            Some(a) => format!("{} ({a})", g.name),
            None => g.name.clone(),
        };
        if g.too_small {
            name.push_str(" (too small)");
        }
        writeln!(
            out,
            "  {:<52} {:>6} {:>22} {:>22}",
            name,
            g.n,
            fig(&g.flagged, 3),
            fig(&g.mean_score, 3)
        )?;
    }
    if groups.len() > limit {
        writeln!(out, "  … {} more in audit.json", groups.len() - limit)?;
    }
    Ok(())
}

/// The terminal table: worst groups first, groups named in training apart from the rest.
pub fn table(r: &AuditReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_table(&mut out, r);
    out
}

fn write_table(out: &mut String, r: &AuditReport) -> std::fmt::Result {
    let s = &r.settings;
    writeln!(
        out,
        "Scorer {} ({}), flagged at >= {}; 95% intervals from {} bootstrap replicates (seed {}); groups under {} rows marked too small.",
        s.scorer, s.attribute, s.threshold, s.bootstrap, s.seed, s.min_group
    )?;
    if let Some(a) = &r.identity_terms {
        writeln!(out)?;
        group_table(out, "Identity terms (Dixon et al. 2018 templates)", a)?;
        if let Some(src) = &a.training_terms_source {
            writeln!(
                out,
                "  Terms named in training come from {src}: their figures are in sample."
            )?;
        }
    }
    if let Some(h) = &r.holistic_bias {
        writeln!(out)?;
        writeln!(
            out,
            "HolisticBias {} ({} of {} sentences, {} per descriptor): all non-toxic by construction, so only the share flagged (a false-positive rate) and the mean score apply.",
            h.version, h.n, h.total_sentences, h.per_descriptor
        )?;
        writeln!(
            out,
            "  All: share flagged {}, mean score {}",
            fig(&h.overall.flagged, 3),
            fig(&h.overall.mean_score, 3)
        )?;
        writeln!(out, "\n  Axes (worst first):")?;
        rate_rows(out, &h.axes, usize::MAX)?;
        writeln!(out, "\n  Descriptors (worst first):")?;
        rate_rows(out, &h.descriptors, 20)?;
        writeln!(out, "\n  Templates (worst first):")?;
        rate_rows(out, &h.templates, 8)?;
    }
    if let Some(a) = &r.file {
        writeln!(out)?;
        group_table(out, &format!("Groups of {}", a.source), a)?;
    }
    if let Some(d) = &r.dialect {
        writeln!(out)?;
        for line in dialect_lines(d) {
            writeln!(out, "{line}")?;
        }
    }
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

fn estimate(e: &Option<detox_dialect::audit::Estimate>, d: usize) -> String {
    match e {
        Some(e) => format!("{:.d$} [{:.d$}, {:.d$}]", e.value, e.low, e.high, d = d),
        None => "–".into(),
    }
}

/// The dialect section as lines of text (the table prints them, the page wraps them).
fn dialect_lines(d: &crate::dialect::DialectAudit) -> Vec<String> {
    let f = &d.figures;
    vec![
        format!(
            "Dialect (Sap et al. 2019) on {}: {} tweets with dialect proportions ({} declined by the model).",
            d.source, f.n, f.declined
        ),
        format!(
            "  Correlation of the score with the African-American English proportion (Pearson): {}",
            estimate(&f.pearson_aa_score, 3)
        ),
        format!(
            "  False-positive rate on tweets annotated neither hateful nor offensive: AAE-dominant {} ({} of {}), White-dominant {} ({} of {}); ratio {}",
            estimate(&f.fpr_aae.rate, 3),
            f.fpr_aae.flagged,
            f.fpr_aae.n,
            estimate(&f.fpr_white.rate, 3),
            f.fpr_white.flagged,
            f.fpr_white.n,
            estimate(&f.fpr_ratio, 2)
        ),
        format!("  {}.", d.rule),
    ]
}

/// One horizontal bar per row: (label, figure, muted, colour class).
struct Bar<'a> {
    label: String,
    figure: &'a Figure,
    muted: bool,
    class: &'static str,
}

/// A horizontal bar chart on [0, `max`] with interval whiskers.
fn bars(out: &mut String, title: &str, rows: &[Bar], max: f64) -> std::fmt::Result {
    let (left, width, row_h, top) = (230.0, 420.0, 16.0, 24.0);
    let h = top + row_h * rows.len() as f64 + 24.0;
    let x = |v: f64| left + width * (v / max).clamp(0.0, 1.0);
    writeln!(out, "<figure>")?;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {:.0} {h:.0}\" width=\"{:.0}\" role=\"img\" aria-label=\"{}\">",
        left + width + 70.0,
        left + width + 70.0,
        escape(title)
    )?;
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" font-size=\"10\" text-anchor=\"middle\">{3}</text>",
            x(v),
            h - 20.0,
            h - 8.0,
            num(Some(v), 2)
        )?;
    }
    for (i, b) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let v = b.figure.value;
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\"{}>{}</text>",
            left - 6.0,
            y + 11.0,
            if b.muted { " fill=\"#999\"" } else { "" },
            escape(&b.label)
        )?;
        if let Some(v) = v.filter(|v| v.is_finite()) {
            writeln!(
                out,
                "<rect class=\"{}\" x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"{}/>",
                b.class,
                y + 2.0,
                x(v) - left,
                row_h - 5.0,
                if b.muted { " opacity=\"0.35\"" } else { "" }
            )?;
            if let Some([lo, hi]) = b.figure.ci {
                writeln!(
                    out,
                    "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\" stroke=\"#222\"/>",
                    x(lo),
                    x(hi),
                    y + row_h / 2.0
                )?;
            }
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                left + width + 6.0,
                y + 11.0,
                num(Some(v), 3)
            )?;
        }
    }
    writeln!(out, "</svg>")?;
    writeln!(out, "<figcaption>{}</figcaption>", escape(title))?;
    writeln!(out, "</figure>")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;color:#222;max-width:1040px;margin:2em auto;padding:0 1em;line-height:1.45}
h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
.small{color:#999}
rect.named{fill:#6b8fb5}rect.notnamed{fill:#d9822b}rect.unknown{fill:#777}
figcaption{color:#555;font-size:.9em}
svg{max-width:100%;height:auto}";

fn class_of(t: Training) -> &'static str {
    match t {
        Training::Named => "named",
        Training::NotNamed => "notnamed",
        Training::Unknown => "unknown",
    }
}

fn html_groups(out: &mut String, title: &str, a: &GroupAudit) -> std::fmt::Result {
    writeln!(out, "<h2>{}</h2>", escape(title))?;
    writeln!(
        out,
        "<p>{} rows ({} toxic, {} naming no group). Overall AUC {}, FPR {}, FNR {}.</p>",
        a.n,
        a.positives,
        a.ungrouped,
        num(a.overall_auc, 3),
        num(a.overall_fpr, 3),
        num(a.overall_fnr, 3)
    )?;
    if let Some(src) = &a.training_terms_source {
        writeln!(
            out,
            "<p>Groups the scorer's training data names (per {}) are <b>in sample</b>: blue bars. Groups it never names are out of sample: orange bars. Each part is summarised separately below.</p>",
            escape(src)
        )?;
    }
    writeln!(out, "<table><tr><th>groups</th><th>count</th><th>power mean subgroup AUC</th><th>power mean BPSN AUC</th><th>power mean BNSP AUC</th><th>bias metric</th><th>FPED</th><th>FNED</th><th>FPED / group</th><th>FNED / group</th></tr>")?;
    for s in &a.summaries {
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.groups.len(),
            num(s.subgroup_auc_power_mean, 3),
            num(s.bpsn_auc_power_mean, 3),
            num(s.bnsp_auc_power_mean, 3),
            num(s.bias_metric, 4),
            num(Some(s.fped), 3),
            num(Some(s.fned), 3),
            num(s.fped_per_group, 4),
            num(s.fned_per_group, 4)
        )?;
    }
    writeln!(out, "</table>")?;
    writeln!(out, "<p>Bias metric: 0.25 · overall AUC + 0.75 · mean of the power means (p = −5) of the three AUCs. FPED/FNED: Σ over groups of |overall rate − group rate|. Groups marked too small are shown in grey and left out of the summaries.</p>")?;
    for (t, groups) in parts(a) {
        writeln!(out, "<h3>Groups {} (worst first)</h3>", t.label())?;
        writeln!(out, "<table><tr><th>group</th><th>n</th><th>toxic</th><th>subgroup AUC</th><th>BPSN AUC</th><th>BNSP AUC</th><th>FPR</th><th>FNR</th></tr>")?;
        for g in &groups {
            writeln!(
                out,
                "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if g.too_small { " class=\"small\"" } else { "" },
                escape(&g.group),
                if g.too_small { " (too small)" } else { "" },
                g.n,
                g.positives,
                fig(&g.subgroup_auc, 3),
                fig(&g.bpsn_auc, 3),
                fig(&g.bnsp_auc, 3),
                fig(&g.fpr, 3),
                fig(&g.fnr, 3)
            )?;
        }
        writeln!(out, "</table>")?;
        type Pick = fn(&GroupFigures) -> &Figure;
        let charts: [(&str, Pick); 5] = [
            ("subgroup AUC", |g| &g.subgroup_auc),
            ("BPSN AUC", |g| &g.bpsn_auc),
            ("BNSP AUC", |g| &g.bnsp_auc),
            ("false-positive rate", |g| &g.fpr),
            ("false-negative rate", |g| &g.fnr),
        ];
        for (name, pick) in charts {
            let rows: Vec<Bar> = groups
                .iter()
                .map(|g| Bar {
                    label: if g.too_small {
                        format!("{} (too small)", g.group)
                    } else {
                        g.group.clone()
                    },
                    figure: pick(g),
                    muted: g.too_small,
                    class: class_of(g.training),
                })
                .collect();
            bars(
                out,
                &format!("{name}, groups {}, with 95% intervals", t.label()),
                &rows,
                1.0,
            )?;
        }
    }
    Ok(())
}

fn rate_chart(out: &mut String, title: &str, groups: &[RateGroup]) -> std::fmt::Result {
    let max = groups
        .iter()
        .filter_map(|g| g.flagged.ci.map(|c| c[1]).or(g.flagged.value))
        .fold(0.0f64, f64::max);
    let max = if max <= 0.0 {
        1.0
    } else {
        (max * 1.1).min(1.0)
    };
    let rows: Vec<Bar> = groups
        .iter()
        .map(|g| Bar {
            label: match &g.axis {
                Some(a) => format!("{} ({a})", g.name),
                None => g.name.clone(),
            },
            figure: &g.flagged,
            muted: g.too_small,
            class: "unknown",
        })
        .collect();
    bars(out, title, &rows, max)
}

fn rate_table(out: &mut String, groups: &[RateGroup]) -> std::fmt::Result {
    writeln!(
        out,
        "<table><tr><th>group</th><th>n</th><th>share flagged</th><th>mean score</th></tr>"
    )?;
    for g in groups {
        writeln!(
            out,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if g.too_small { " class=\"small\"" } else { "" },
            escape(&match &g.axis {
                Some(a) => format!("{} ({a})", g.name),
                None => g.name.clone(),
            }),
            if g.too_small { " (too small)" } else { "" },
            g.n,
            fig(&g.flagged, 3),
            fig(&g.mean_score, 3)
        )?;
    }
    writeln!(out, "</table>")
}

/// The self-contained HTML page.
pub fn html(r: &AuditReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_html(&mut out, r);
    out
}

fn write_html(out: &mut String, r: &AuditReport) -> std::fmt::Result {
    let s = &r.settings;
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>detox audit: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>", escape(&s.scorer))?;
    writeln!(out, "<h1>Bias audit of scorer {}</h1>", escape(&s.scorer))?;
    writeln!(
        out,
        "<p>Attribute <code>{}</code>, flagged at ≥ {}. Intervals: 95% percentile bootstrap, {} replicates, seed {} (each group's rows resampled). Groups with fewer than {} rows, or one class only, are marked too small. Figures follow Borkan et al. 2019 (subgroup, BPSN, BNSP AUC; the Jigsaw Unintended Bias competition's final metric) and Dixon et al. 2018 (FPED, FNED).</p>",
        escape(&s.attribute),
        s.threshold,
        s.bootstrap,
        s.seed,
        s.min_group
    )?;
    if let Some(a) = &r.identity_terms {
        html_groups(out, "Identity terms (Dixon et al. 2018 templates)", a)?;
    }
    if let Some(h) = &r.holistic_bias {
        writeln!(out, "<h2>HolisticBias {}</h2>", escape(&h.version))?;
        writeln!(
            out,
            "<p>{} of the {} descriptor × noun × template sentences ({} per descriptor, drawn with the seed). Every HolisticBias sentence is non-toxic by construction, so only false-positive-type figures apply: the share flagged and the mean score. All sentences: share flagged {}, mean score {}. Some templates express dislike (\"I hate …\", \"… are the worst\"); the per-template table shows how much they weigh.</p>",
            h.n,
            h.total_sentences,
            h.per_descriptor,
            fig(&h.overall.flagged, 3),
            fig(&h.overall.mean_score, 3)
        )?;
        rate_chart(out, "Share flagged per axis, with 95% intervals", &h.axes)?;
        rate_table(out, &h.axes)?;
        let top: Vec<RateGroup> = h.descriptors.iter().take(40).cloned().collect();
        rate_chart(
            out,
            "Share flagged, the 40 most flagged descriptors, with 95% intervals",
            &top,
        )?;
        rate_chart(
            out,
            "Share flagged per template, with 95% intervals",
            &h.templates,
        )?;
        rate_table(out, &h.templates)?;
        writeln!(
            out,
            "<details><summary>All {} descriptors</summary>",
            h.descriptors.len()
        )?;
        rate_table(out, &h.descriptors)?;
        writeln!(out, "</details>")?;
    }
    if let Some(a) = &r.file {
        html_groups(out, &format!("Groups of {}", a.source), a)?;
    }
    if let Some(d) = &r.dialect {
        writeln!(out, "<h2>Dialect</h2>")?;
        for line in dialect_lines(d) {
            writeln!(out, "<p>{}</p>", escape(line.trim()))?;
        }
    }
    for n in &r.notes {
        writeln!(out, "<p class=\"small\">{}</p>", escape(n))?;
    }
    writeln!(
        out,
        "<h2>Data</h2><table><tr><th>file</th><th>sha256</th></tr>"
    )?;
    for f in &s.data_files {
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&f.path),
            escape(&f.sha256)
        )?;
    }
    writeln!(out, "</table>\n</body>\n</html>")
}

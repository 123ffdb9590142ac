//! `detox audit lm`'s terminal table and self-contained page (no scripts): the loss by group,
//! coverage and who gets flagged, each worst first, with bar charts of per-group figures and
//! their intervals.

use crate::coverage::{Coverage, GroupCoverage};
use crate::flagged::{Share, WhoGetsFlagged};
use crate::lm::pct;
use crate::lm_report::LmAudit;
use crate::render::{escape as esc, num};
use crate::AuditError;
use std::path::{Path, PathBuf};

/// One row of a chart of signed changes.
pub struct Diverging {
    /// The row's label.
    pub label: String,
    /// The change.
    pub value: f64,
    /// Its interval.
    pub ci95: [f64; 2],
    /// Drawn in red (a significant harm).
    pub highlight: bool,
    /// Drawn faded (too few examples).
    pub muted: bool,
}

/// A horizontal bar chart of signed changes around zero, with interval whiskers.
pub fn diverging(rows: &[Diverging], title: &str) -> String {
    let finite = |v: &f64| v.is_finite();
    let lo = rows
        .iter()
        .flat_map(|r| [r.ci95[0], r.value])
        .filter(finite)
        .fold(0.0f64, f64::min);
    let hi = rows
        .iter()
        .flat_map(|r| [r.ci95[1], r.value])
        .filter(finite)
        .fold(0.0f64, f64::max);
    let span = (hi - lo).max(1e-9);
    let (left, width, row_h, top) = (260.0, 420.0, 16.0, 10.0);
    let x = |v: f64| left + width * ((v - lo) / span).clamp(0.0, 1.0);
    let h = top + row_h * rows.len() as f64 + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" role=\"img\" aria-label=\"{t}\">\n<line x1=\"{z:.1}\" x2=\"{z:.1}\" y1=\"{top}\" y2=\"{b:.1}\" stroke=\"#888\"/>\n",
        w = left + width + 80.0,
        t = esc(title),
        z = x(0.0),
        b = h - 16.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            y + 11.0,
            esc(&r.label)
        ));
        if !r.value.is_finite() {
            continue;
        }
        let (a, b) = (x(0.0).min(x(r.value)), x(0.0).max(x(r.value)));
        let fill = if r.highlight { "#b5452b" } else { "#6b8fb5" };
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"{}/>\n",
            y + 2.0,
            (b - a).max(0.5),
            row_h - 5.0,
            if r.muted { " opacity=\"0.35\"" } else { "" }
        ));
        let [c0, c1] = r.ci95;
        if c0.is_finite() && c1.is_finite() {
            svg.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\" stroke=\"#222\"/>\n",
                x(c0),
                x(c1),
                y + row_h / 2.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>\n",
            left + width + 6.0,
            y + 11.0,
            pct(r.value)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn share(s: &Share) -> String {
    if s.value.is_finite() {
        format!("{:.1}% ({}/{})", 100.0 * s.value, s.count, s.of)
    } else {
        format!("– (0/{})", s.of)
    }
}

fn coverage_lines(c: &Coverage, out: &mut String) {
    out.push_str(&format!(
        "\nCoverage of BOLD's groups: samples that stay on the group (their continuation mentions one of its terms); {} prompts x {} samples of {} tokens per group; change = share(other) / share(base) - 1 with a 95% bootstrap interval over the prompts.\n",
        c.prompts_per_group, c.samples, c.max_tokens
    ));
    out.push_str(&format!(
        "{:<46} {:>9} {:>9} {:>26} {:>9} {:>9} {:>9}\n",
        "group", "on base", "on other", "change [95% CI]", "tox base", "tox other", "flagged"
    ));
    for g in std::iter::once(&c.overall).chain(&c.groups) {
        out.push_str(&format!(
            "{:<46} {:>9} {:>9} {:>26} {:>9} {:>9} {:>9}{}\n",
            g.group.clone(),
            format!("{:.0}%", 100.0 * g.base.share),
            format!("{:.0}%", 100.0 * g.other.share),
            g.change.pct(),
            num(Some(g.base.mean_toxicity), 3),
            num(Some(g.other.mean_toxicity), 3),
            format!("{}/{}", g.base.flagged, g.other.flagged),
            if g.shrinks {
                "  shrinks"
            } else if g.too_small {
                "  (too few on-group samples)"
            } else {
                ""
            }
        ));
    }
    let shrunk: Vec<String> = c
        .groups
        .iter()
        .filter(|g| g.shrinks)
        .map(|g| g.group.clone())
        .collect();
    out.push_str(&if shrunk.is_empty() {
        "No group's coverage shrinks significantly.\n".to_string()
    } else {
        format!(
            "Coverage shrinks significantly (interval below 0) for: {}.\n",
            shrunk.join(", ")
        )
    });
}

/// Terms shown in the terminal table at most (all are in `audit.json` and the page).
const TABLE_TERMS: usize = 15;

fn flagged_lines(w: &WhoGetsFlagged, out: &mut String) {
    out.push_str(&format!(
        "\nWho gets flagged ({}): among samples scored at or above {}, the share mentioning each identity term (Dixon et al.'s 50), beside its share among all samples.\n",
        w.source, w.threshold
    ));
    out.push_str(&format!(
        "{:<20} {:>22} {:>22} {:>22} {:>22}\n",
        "term", "flagged base", "flagged other", "all base", "all other"
    ));
    out.push_str(&format!(
        "{:<20} {:>22} {:>22} {:>22} {:>22}\n",
        "any identity term",
        share(&w.any_flagged[0]),
        share(&w.any_flagged[1]),
        share(&w.any_all[0]),
        share(&w.any_all[1])
    ));
    for t in w.terms.iter().take(TABLE_TERMS) {
        out.push_str(&format!(
            "{:<20} {:>22} {:>22} {:>22} {:>22}\n",
            t.term,
            share(&t.flagged_base),
            share(&t.flagged_other),
            share(&t.all_base),
            share(&t.all_other)
        ));
    }
    if w.terms.len() > TABLE_TERMS {
        out.push_str(&format!(
            "({} more terms in audit.json and audit.html)\n",
            w.terms.len() - TABLE_TERMS
        ));
    }
    if w.too_few {
        out.push_str(&format!(
            "Fewer than {} flagged samples on a side ({} and {}): the shares are shown but not to be trusted.\n",
            w.min_flagged, w.any_flagged[0].of, w.any_flagged[1].of
        ));
    }
}

fn coverage_html(c: &Coverage) -> String {
    let rows: Vec<&GroupCoverage> = std::iter::once(&c.overall).chain(&c.groups).collect();
    let bars: Vec<Diverging> = rows
        .iter()
        .map(|g| Diverging {
            label: g.group.clone(),
            value: g.change.value,
            ci95: g.change.ci95,
            highlight: g.shrinks,
            muted: g.too_small,
        })
        .collect();
    let mut table = String::from("<table><tr><th>group</th><th>prompts</th><th>on the group, base</th><th>other</th><th>change</th><th>95% interval</th><th>mean toxicity, base</th><th>other</th><th>flagged, base / other</th></tr>\n");
    for g in &rows {
        table.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}/{}</td><td>{}</td><td>{} to {}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>\n",
            esc(&g.group),
            g.prompts,
            g.base.on_group,
            g.base.samples,
            g.other.on_group,
            g.other.samples,
            pct(g.change.value),
            pct(g.change.ci95[0]),
            pct(g.change.ci95[1]),
            num(Some(g.base.mean_toxicity), 3),
            num(Some(g.other.mean_toxicity), 3),
            g.base.flagged,
            g.other.flagged
        ));
    }
    table.push_str("</table>\n");
    let mut terms = String::from("<details><summary>Each group's terms</summary><table><tr><th>group</th><th>terms</th></tr>\n");
    for (g, t) in &c.terms {
        terms.push_str(&format!(
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>\n",
            esc(g),
            esc(&t.join(", "))
        ));
    }
    terms.push_str("</table></details>\n");
    format!(
        "<h2>Coverage of BOLD's groups</h2>\n<p>Samples from BOLD's prompts ({} prompts of each group, {} samples of {} tokens each, the same random streams on both sides) that stay on the group: their continuation mentions one of the group's terms. The bars: the relative change of the on-group share with a 95% bootstrap interval over the prompts, most shrunk first. Red: the interval lies below zero. Faded: fewer than {} on-group samples without the mitigation.</p>\n<figure>{}</figure>\n{table}{terms}",
        c.prompts_per_group,
        c.samples,
        c.max_tokens,
        crate::coverage::MIN_ON_GROUP,
        diverging(&bars, "relative change of each group's on-group share")
    )
}

/// Paired horizontal bars (base, other) per row on [0, max], with interval whiskers.
fn paired(rows: &[(String, Share, Share)], title: &str) -> String {
    let max = rows
        .iter()
        .flat_map(|r| [r.1.ci95[1], r.2.ci95[1]])
        .filter(|v| v.is_finite())
        .fold(0.05f64, f64::max);
    let (left, width, row_h, top) = (160.0, 420.0, 24.0, 10.0);
    let x = |v: f64| left + width * (v / max).clamp(0.0, 1.0);
    let h = top + row_h * rows.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" role=\"img\" aria-label=\"{t}\">\n",
        w = left + width + 90.0,
        t = esc(title)
    );
    for (i, (label, b, o)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            y + 14.0,
            esc(label)
        ));
        for (k, (s, fill)) in [(b, "#9db4cc"), (o, "#b5452b")].into_iter().enumerate() {
            if !s.value.is_finite() {
                continue;
            }
            let yy = y + 2.0 + 10.0 * k as f64;
            svg.push_str(&format!(
                "<rect class=\"share\" x=\"{left}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{fill}\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{mid:.1}\" y2=\"{mid:.1}\" stroke=\"#222\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{:.1}%</text>\n",
                (x(s.value) - left).max(0.5),
                x(s.ci95[0]),
                x(s.ci95[1]),
                left + width + 6.0,
                yy + 8.0,
                100.0 * s.value,
                mid = yy + 4.5
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn flagged_html(w: &WhoGetsFlagged) -> String {
    let rows: Vec<(String, Share, Share)> = std::iter::once((
        "any identity term".to_string(),
        w.any_flagged[0],
        w.any_flagged[1],
    ))
    .chain(
        w.terms
            .iter()
            .map(|t| (t.term.clone(), t.flagged_base, t.flagged_other)),
    )
    .collect();
    let mut table = String::from("<table><tr><th>term</th><th>flagged, base</th><th>flagged, other</th><th>all samples, base</th><th>all, other</th></tr>\n");
    let cell = |s: &Share| {
        format!(
            "{} [{}, {}]",
            share(s),
            num(Some(100.0 * s.ci95[0]), 1),
            num(Some(100.0 * s.ci95[1]), 1)
        )
    };
    table.push_str(&format!(
        "<tr><td>any identity term</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        cell(&w.any_flagged[0]),
        cell(&w.any_flagged[1]),
        cell(&w.any_all[0]),
        cell(&w.any_all[1])
    ));
    for t in &w.terms {
        table.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&t.term),
            cell(&t.flagged_base),
            cell(&t.flagged_other),
            cell(&t.all_base),
            cell(&t.all_other)
        ));
    }
    table.push_str("</table>\n");
    format!(
        "<h2>Who gets flagged</h2>\n<p>{}: among samples scored at or above {}, the share that mention each of Dixon et al.'s identity terms (pale: {}; red: {}; Wilson 95% intervals), beside the term's share among all samples.{}</p>\n<figure>{}</figure>\n{table}",
        esc(&w.source),
        w.threshold,
        esc(&w.base),
        esc(&w.other),
        if w.too_few {
            format!(
                " <strong>Fewer than {} flagged samples on a side ({} and {}): the shares are not to be trusted.</strong>",
                w.min_flagged, w.any_flagged[0].of, w.any_flagged[1].of
            )
        } else {
            String::new()
        },
        paired(&rows, "share of flagged samples mentioning each identity term")
    )
}

impl LmAudit {
    /// The terminal table: the loss by group, coverage and who gets flagged.
    pub fn table(&self) -> String {
        let mut out = self.loss.table();
        if let Some(c) = &self.coverage {
            coverage_lines(c, &mut out);
        }
        if let Some(w) = &self.flagged {
            flagged_lines(w, &mut out);
        }
        for n in &self.notes {
            out.push_str(&format!("Note: {n}\n"));
        }
        out
    }

    /// The self-contained page (no scripts).
    pub fn html(&self) -> String {
        let s = &self.settings;
        let mut body = format!(
            "<h1>detox audit lm</h1>\n<p><b>{}</b> against <b>{}</b>. Scorer: {}. Seed {}.</p>\n",
            esc(&s.other),
            esc(&s.base),
            esc(s.scorer.as_deref().unwrap_or("none")),
            s.seed
        );
        body.push_str(&self.loss.html_section());
        if let Some(c) = &self.coverage {
            body.push_str(&coverage_html(c));
        }
        if let Some(w) = &self.flagged {
            body.push_str(&flagged_html(w));
        }
        for n in &self.notes {
            body.push_str(&format!("<p>Note: {}</p>\n", esc(n)));
        }
        body.push_str("<h2>Data</h2>\n<table><tr><th>file</th><th>sha256</th></tr>\n");
        for f in &s.data_files {
            body.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td></tr>\n",
                esc(&f.path),
                esc(&f.sha256)
            ));
        }
        body.push_str("</table>\n");
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>detox audit lm</title>\n<style>body{{font-family:system-ui,sans-serif;color:#222;max-width:1040px;margin:2em auto;padding:0 1em;line-height:1.45}}h2{{border-bottom:1px solid #ccc;margin-top:1.8em}}table{{border-collapse:collapse;font-size:.9em}}th,td{{border:1px solid #ccc;padding:.25em .5em;text-align:right}}td:first-child,th:first-child{{text-align:left}}svg{{max-width:100%;height:auto}}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
        )
    }

    /// Writes `audit.json` and `audit.html` into `dir` (created; each written atomically).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::Output(format!("{}: {e}", dir.display())))?;
        let json =
            serde_json::to_string_pretty(self).map_err(|e| AuditError::Output(e.to_string()))?;
        let files = [
            (dir.join("audit.json"), json + "\n"),
            (dir.join("audit.html"), self.html()),
        ];
        for (p, text) in &files {
            detox_io::files::write_atomic(p, text.as_bytes())
                .map_err(|e| AuditError::Output(e.to_string()))?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

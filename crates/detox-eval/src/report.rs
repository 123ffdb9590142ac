//! The self-contained HTML report of an eval run (`report.html` in the run folder).
//!
//! One file, no scripts and no external assets: a metrics table, two inline SVG plots drawn
//! here (the distribution of per-prompt maximum toxicity by subset, and maximum toxicity against
//! prompt toxicity), the run's settings and, behind a content warning, the most toxic
//! continuations. The output depends only on the input: same input, same bytes.

use crate::metrics::{SubsetMetrics, Threshold};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// One prompt's line in the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportPrompt {
    /// The prompt text (`""` for unprompted generation).
    pub text: String,
    /// The prompt's toxicity (from the file or the scorer), if known.
    pub prompt_toxicity: Option<f64>,
    /// The maximum toxicity over the prompt's samples.
    pub max_toxicity: f64,
    /// The text of the prompt's most toxic continuation.
    pub worst: String,
    /// Names of the subsets the prompt belongs to, e.g. `["full", "toxic", "challenging"]`.
    pub subsets: Vec<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The page's title.
    pub title: &'a str,
    /// The run's protocol settings (`run.json`'s `protocol` object), shown as a key/value table.
    pub settings: &'a serde_json::Value,
    /// Metrics by subset name.
    pub metrics: &'a BTreeMap<String, SubsetMetrics>,
    /// The prompts with their maximum toxicity and worst continuation.
    pub prompts: &'a [ReportPrompt],
    /// The toxicity threshold (RTP: 0.5).
    pub threshold: f64,
    /// `>` instead of `>=` when comparing with the threshold.
    pub strict: bool,
    /// The scored attribute, e.g. `"toxicity"`.
    pub attribute: &'a str,
    /// Free-text notes shown under the title.
    pub notes: &'a [String],
}

/// Number of histogram bins over [0, 1].
pub const BINS: usize = 20;

/// Number of prompts in the "most toxic" table.
pub const TOP: usize = 10;

/// Renders the report as one HTML document.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_report(&mut out, input);
    out
}

pub use detox_io::html::escape;

/// What is shown for a missing or non-finite number.
pub(crate) const MISSING: &str = "–";

/// A number with `d` decimals, or "–" when not finite.
pub(crate) fn num(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{x:.d$}")
    } else {
        MISSING.to_string()
    }
}

pub(crate) fn opt(x: Option<f64>, d: usize) -> String {
    x.map_or_else(|| MISSING.to_string(), |x| num(x, d))
}

pub(crate) fn interval(c: [f64; 2], d: usize) -> String {
    if c[0].is_finite() || c[1].is_finite() {
        format!("[{}, {}]", num(c[0], d), num(c[1], d))
    } else {
        MISSING.to_string()
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#222;background:#fff;max-width:1040px;margin:2em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;vertical-align:top;text-align:left}
th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{white-space:pre-wrap;word-break:break-word;max-width:26em}
td.k{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:nowrap}
td.v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.ci{color:#555;font-size:.9em}
td.toxic{color:#a01c1c;font-weight:600}
.muted{color:#666}
figure{margin:1em 0}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
svg{max-width:100%;height:auto;font-family:inherit}
details{margin:.6em 0}
summary{cursor:pointer;font-weight:600;color:#8a1c1c}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}figure,tr{break-inside:avoid}}
";

/// A page's opening up to its heading: `title` (escaped here) as title and `<h1>`, the shared
/// style followed by `extra_style`.
pub(crate) fn page_start(out: &mut String, title: &str, extra_style: &str) -> fmt::Result {
    let title = escape(title);
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>{title}</title>")?;
    writeln!(out, "<style>{STYLE}{extra_style}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<h1>{title}</h1>")
}

fn write_report(out: &mut String, input: &ReportInput) -> fmt::Result {
    page_start(out, input.title, "")?;
    writeln!(
        out,
        "<p class=\"muted\">{} prompts. Attribute: <b>{}</b>. A continuation counts as toxic when its score is {}.</p>",
        input.prompts.len(),
        escape(input.attribute),
        threshold_phrase(input.threshold, input.strict),
    )?;
    if !input.notes.is_empty() {
        writeln!(out, "<ul class=\"notes\">")?;
        for n in input.notes {
            writeln!(out, "<li>{}</li>", escape(n))?;
        }
        writeln!(out, "</ul>")?;
    }
    write_metrics(out, input)?;
    write_histogram_section(out, input)?;
    write_scatter_section(out, input)?;
    write_settings(out, input.settings)?;
    write_top(out, input)?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

/// `s` with its first letter in upper case.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn threshold_phrase(threshold: f64, strict: bool) -> String {
    format!(
        "{} {}",
        if strict { "&gt;" } else { "≥" },
        num(threshold, 2)
    )
}

/// Subsets in the protocol's order first, then any others by name.
fn ordered_subsets(metrics: &BTreeMap<String, SubsetMetrics>) -> Vec<(&String, &SubsetMetrics)> {
    const ORDER: [&str; 4] = ["full", "toxic", "nontoxic", "challenging"];
    let mut rows: Vec<(&String, &SubsetMetrics)> = ORDER
        .iter()
        .filter_map(|name| metrics.get_key_value(*name))
        .collect();
    rows.extend(metrics.iter().filter(|(k, _)| !ORDER.contains(&k.as_str())));
    rows
}

fn write_metrics(out: &mut String, input: &ReportInput) -> fmt::Result {
    writeln!(out, "<h2>Metrics</h2>")?;
    if input.metrics.is_empty() {
        return writeln!(out, "<p class=\"muted\">No metrics.</p>");
    }
    let attr = escape(input.attribute);
    let cap = escape(&capitalised(input.attribute));
    writeln!(out, "<table class=\"metrics\">")?;
    writeln!(
        out,
        "<thead><tr><th>Subset</th><th>Prompts</th><th>Expected max. {attr}<br><span class=\"ci\">± std [95% CI]</span></th><th>{cap} probability<br><span class=\"ci\">[95% CI]</span></th><th>Toxic fraction</th><th>Perplexity</th><th>dist-1</th><th>dist-2</th><th>dist-3</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for (name, m) in ordered_subsets(input.metrics) {
        let emt = if m.expected_max_toxicity.is_finite() {
            format!(
                "{} ± {}",
                num(m.expected_max_toxicity, 3),
                num(m.expected_max_toxicity_std, 3)
            )
        } else {
            MISSING.to_string()
        };
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}<br><span class=\"ci\">{}</span></td><td class=\"n\">{}<br><span class=\"ci\">{}</span></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(name),
            m.prompts,
            emt,
            interval(m.expected_max_toxicity_ci95, 3),
            num(m.toxicity_probability, 3),
            interval(m.toxicity_probability_ci95, 3),
            num(m.toxic_fraction, 3),
            opt(m.perplexity, 2),
            opt(m.dist_1, 3),
            opt(m.dist_2, 3),
            opt(m.dist_3, 3),
        )?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")?;
    writeln!(
        out,
        "<p class=\"muted\">Expected maximum {attr}: the mean over prompts of the maximum score over each prompt's samples, ± the standard deviation of those maxima. {cap} probability: the share of prompts with at least one sample scoring {}. Toxic fraction: the share of all samples that do. Intervals: 95% percentile bootstrap over prompts. dist-n: distinct n-grams over all n-grams of a prompt's continuations, averaged over prompts. {MISSING}: not measured.</p>",
        threshold_phrase(input.threshold, input.strict)
    )
}

/// The plot area inside an SVG of `w` × `h`, with values in [0, 1] on both axes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) w: f64,
    pub(crate) h: f64,
    pub(crate) left: f64,
    pub(crate) right: f64,
    pub(crate) top: f64,
    pub(crate) bottom: f64,
}

impl Frame {
    /// The x pixel of `v` in [0, 1].
    pub(crate) fn x(&self, v: f64) -> f64 {
        self.left + v * (self.w - self.left - self.right)
    }

    /// The y pixel of `v` in [0, 1] (0 at the bottom).
    pub(crate) fn y(&self, v: f64) -> f64 {
        self.h - self.bottom - v * (self.h - self.top - self.bottom)
    }

    pub(crate) fn x0(&self) -> f64 {
        self.x(0.0)
    }

    pub(crate) fn x1(&self) -> f64 {
        self.x(1.0)
    }

    pub(crate) fn y0(&self) -> f64 {
        self.y(0.0)
    }

    pub(crate) fn y1(&self) -> f64 {
        self.y(1.0)
    }
}

const HIST: Frame = Frame {
    w: 700.0,
    h: 340.0,
    left: 60.0,
    right: 170.0,
    top: 16.0,
    bottom: 46.0,
};

const SCATTER: Frame = Frame {
    w: 480.0,
    h: 440.0,
    left: 60.0,
    right: 20.0,
    top: 16.0,
    bottom: 46.0,
};

/// A pixel coordinate with two decimals.
pub(crate) fn px(v: f64) -> String {
    format!("{v:.2}")
}

fn series_colour(name: &str) -> &'static str {
    match name {
        "toxic" => "#c0392b",
        "nontoxic" => "#2471a3",
        _ => "#4d4d4d",
    }
}

/// Whether `v` is a score that can be drawn on a [0, 1] axis.
pub(crate) fn drawable(v: f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}

/// The histogram bin of a score in [0, 1]: bins are `[k/20, (k+1)/20)`, the last one closed.
fn bin(v: f64) -> usize {
    ((v * BINS as f64).floor().max(0.0) as usize).min(BINS - 1)
}

/// One histogram series: its name, bin counts and the number of prompts not drawn.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    counts: [usize; BINS],
    skipped: usize,
}

impl Series {
    fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// The histogram's series: "toxic" and "nontoxic" when some prompt belongs to them, else "full"
/// (all prompts).
fn histogram_series(prompts: &[ReportPrompt]) -> Vec<Series> {
    let split: Vec<&str> = ["toxic", "nontoxic"]
        .into_iter()
        .filter(|s| prompts.iter().any(|p| p.subsets.iter().any(|n| n == s)))
        .collect();
    let count = |name: &str, member: &dyn Fn(&ReportPrompt) -> bool| {
        let mut s = Series {
            name: name.to_string(),
            counts: [0; BINS],
            skipped: 0,
        };
        for p in prompts.iter().filter(|p| member(p)) {
            if drawable(p.max_toxicity) {
                s.counts[bin(p.max_toxicity)] += 1;
            } else {
                s.skipped += 1;
            }
        }
        s
    };
    if split.is_empty() {
        vec![count("full", &|_| true)]
    } else {
        split
            .into_iter()
            .map(|name| count(name, &|p| p.subsets.iter().any(|n| n == name)))
            .collect()
    }
}

/// A "nice" upper end and tick step for shares up to `max` (in (0, 1]).
fn share_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.2);
    }
    for step in [0.01, 0.02, 0.05, 0.1, 0.2, 0.25] {
        let n = (max / step - 1e-9).ceil().max(1.0);
        if n <= 5.0 {
            return (n * step, step);
        }
    }
    (1.0, 0.25)
}

/// Ticks on a [0, 1] axis: every 0.1, labelled every 0.2.
fn unit_ticks_x(out: &mut String, f: &Frame) -> fmt::Result {
    for i in 0..=10 {
        let v = f64::from(i) / 10.0;
        let x = px(f.x(v));
        writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333\"/>",
            px(f.y0()),
            px(f.y0() + 5.0)
        )?;
        if i % 2 == 0 {
            writeln!(
                out,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">{v:.1}</text>",
                px(f.y0() + 19.0)
            )?;
        }
    }
    Ok(())
}

/// Ticks and grid lines on a [0, 1] y axis: every 0.1, labelled every 0.2.
pub(crate) fn unit_ticks_y(out: &mut String, f: &Frame) -> fmt::Result {
    for i in 0..=10 {
        let v = f64::from(i) / 10.0;
        let y = px(f.y(v));
        writeln!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\"/>",
            px(f.x0() - 5.0),
            px(f.x1()),
            if i == 0 { "#333" } else { "#eeeeee" }
        )?;
        if i % 2 == 0 {
            writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{v:.1}</text>",
                px(f.x0() - 8.0),
                px(f.y(v) + 4.0)
            )?;
        }
    }
    Ok(())
}

pub(crate) fn axes(out: &mut String, f: &Frame, xlabel: &str, ylabel: &str) -> fmt::Result {
    writeln!(
        out,
        "<path d=\"M{} {}V{}H{}\" fill=\"none\" stroke=\"#333\"/>",
        px(f.x0()),
        px(f.y1()),
        px(f.y0()),
        px(f.x1())
    )?;
    writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        px((f.x0() + f.x1()) / 2.0),
        px(f.h - 8.0),
        escape(xlabel)
    )?;
    let cy = px((f.y0() + f.y1()) / 2.0);
    writeln!(
        out,
        "<text x=\"16\" y=\"{cy}\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 16 {cy})\">{}</text>",
        escape(ylabel)
    )
}

fn write_histogram_section(out: &mut String, input: &ReportInput) -> fmt::Result {
    let attr = input.attribute;
    writeln!(out, "<h2>Maximum {} per prompt</h2>", escape(attr))?;
    let series = histogram_series(input.prompts);
    if series.iter().all(|s| s.total() == 0) {
        return writeln!(
            out,
            "<p class=\"muted\">No prompt has a maximum score to plot.</p>"
        );
    }
    let f = HIST;
    let shares: Vec<[f64; BINS]> = series
        .iter()
        .map(|s| {
            let n = s.total().max(1) as f64;
            s.counts.map(|c| c as f64 / n)
        })
        .collect();
    let max_share = shares
        .iter()
        .flat_map(|s| s.iter().copied())
        .fold(0.0, f64::max);
    let (ymax, step) = share_axis(max_share);
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    writeln!(out, "<figure>")?;
    writeln!(
        out,
        "<svg class=\"histogram\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" font-family=\"system-ui, sans-serif\" aria-label=\"Histogram of the maximum {} per prompt\">",
        f.w, f.h, f.w, f.h,
        escape(attr)
    )?;
    // Horizontal grid and y ticks (shares as percentages).
    let ticks = (ymax / step).round() as usize;
    for i in 0..=ticks {
        let v = i as f64 * step;
        let y = px(f.y(v / ymax));
        writeln!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e3e3e3\"/>",
            px(f.x0()),
            px(f.x1())
        )?;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{:.0}%</text>",
            px(f.x0() - 6.0),
            px(f.y(v / ymax) + 4.0),
            v * 100.0
        )?;
    }
    let bw = (f.x1() - f.x0()) / BINS as f64;
    for (s, share) in series.iter().zip(&shares) {
        let colour = series_colour(&s.name);
        let counts: Vec<String> = s.counts.iter().map(usize::to_string).collect();
        writeln!(
            out,
            "<g class=\"series\" data-series=\"{}\" data-counts=\"{}\" fill=\"{colour}\" fill-opacity=\"0.3\">",
            escape(&s.name),
            counts.join(",")
        )?;
        for (k, (&c, &sh)) in s.counts.iter().zip(share).enumerate() {
            let top = f.y(sh / ymax);
            writeln!(
                out,
                "<rect class=\"bar\" data-bin=\"{k}\" data-count=\"{c}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                px(f.x0() + k as f64 * bw),
                px(top),
                px(bw),
                px(f.y0() - top)
            )?;
        }
        writeln!(out, "</g>")?;
        // The step outline keeps overlapping series readable.
        let mut d = format!("M{} {}", px(f.x0()), px(f.y0()));
        for (k, &sh) in share.iter().enumerate() {
            let _ = write!(
                d,
                "V{}H{}",
                px(f.y(sh / ymax)),
                px(f.x0() + (k + 1) as f64 * bw)
            );
        }
        let _ = write!(d, "V{}", px(f.y0()));
        writeln!(
            out,
            "<path class=\"step\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\"/>"
        )?;
    }
    if drawable(input.threshold) {
        let x = px(f.x(input.threshold));
        writeln!(
            out,
            "<line class=\"threshold\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"5 4\"/>",
            px(f.y1()),
            px(f.y0())
        )?;
    }
    unit_ticks_x(out, &f)?;
    axes(
        out,
        &f,
        &format!("maximum {attr} over the prompt's samples"),
        "share of the subset's prompts",
    )?;
    // Legend.
    let lx = f.x1() + 14.0;
    for (i, s) in series.iter().enumerate() {
        let y = f.top + 8.0 + i as f64 * 22.0;
        let colour = series_colour(&s.name);
        writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{colour}\" fill-opacity=\"0.3\" stroke=\"{colour}\"/>",
            px(lx),
            px(y)
        )?;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\">{} (n={})</text>",
            px(lx + 20.0),
            px(y + 11.0),
            escape(&s.name),
            s.total()
        )?;
    }
    if drawable(input.threshold) {
        let y = f.top + 8.0 + series.len() as f64 * 22.0;
        writeln!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"5 4\"/>",
            px(lx),
            px(y + 7.0),
            px(lx + 14.0),
            px(y + 7.0)
        )?;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\">threshold {}</text>",
            px(lx + 20.0),
            px(y + 11.0),
            num(input.threshold, 2)
        )?;
    }
    writeln!(out, "</svg>")?;
    let skipped: usize = series.iter().map(|s| s.skipped).sum();
    write!(
        out,
        "<figcaption>Distribution of the per-prompt maximum {} ({} bins over [0, 1]), as a share of each subset's prompts: {}.",
        escape(attr),
        BINS,
        escape(&names.join(", "))
    )?;
    if skipped > 0 {
        write!(
            out,
            " {skipped} prompt(s) with a maximum outside [0, 1] or not a number are not drawn."
        )?;
    }
    writeln!(out, "</figcaption>")?;
    writeln!(out, "</figure>")
}

fn write_scatter_section(out: &mut String, input: &ReportInput) -> fmt::Result {
    let attr = input.attribute;
    writeln!(
        out,
        "<h2>Maximum {} against prompt {}</h2>",
        escape(attr),
        escape(attr)
    )?;
    let with_score: Vec<&ReportPrompt> = input
        .prompts
        .iter()
        .filter(|p| p.prompt_toxicity.is_some())
        .collect();
    if with_score.is_empty() {
        return writeln!(
            out,
            "<p class=\"muted\">No prompt has a prompt {} score, so there is nothing to plot here.</p>",
            escape(attr)
        );
    }
    let points: Vec<(f64, f64)> = with_score
        .iter()
        .filter_map(|p| {
            let x = p.prompt_toxicity?;
            (drawable(x) && drawable(p.max_toxicity)).then_some((x, p.max_toxicity))
        })
        .collect();
    let skipped = with_score.len() - points.len();
    let f = SCATTER;
    writeln!(out, "<figure>")?;
    writeln!(
        out,
        "<svg class=\"scatter\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" font-family=\"system-ui, sans-serif\" aria-label=\"Maximum {} against prompt {}\">",
        f.w, f.h, f.w, f.h,
        escape(attr),
        escape(attr)
    )?;
    unit_ticks_y(out, &f)?;
    writeln!(
        out,
        "<line class=\"diagonal\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>",
        px(f.x0()),
        px(f.y0()),
        px(f.x1()),
        px(f.y1())
    )?;
    let x = px(f.x(0.5));
    writeln!(
        out,
        "<line class=\"prompt-split\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#2471a3\" stroke-dasharray=\"5 4\"/>",
        px(f.y1()),
        px(f.y0())
    )?;
    if drawable(input.threshold) {
        let y = px(f.y(input.threshold));
        writeln!(
            out,
            "<line class=\"threshold\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#c0392b\" stroke-dasharray=\"5 4\"/>",
            px(f.x0()),
            px(f.x1())
        )?;
    }
    writeln!(
        out,
        "<g class=\"points\" data-points=\"{}\" fill=\"#4d4d4d\" fill-opacity=\"0.45\">",
        points.len()
    )?;
    for (x, y) in &points {
        writeln!(
            out,
            "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\"/>",
            px(f.x(*x)),
            px(f.y(*y))
        )?;
    }
    writeln!(out, "</g>")?;
    unit_ticks_x(out, &f)?;
    axes(
        out,
        &f,
        &format!("prompt {attr}"),
        &format!("maximum {attr} of the continuations"),
    )?;
    writeln!(out, "</svg>")?;
    write!(
        out,
        "<figcaption>One point per prompt with a prompt score ({} drawn). Red dashed: the threshold ({}); blue dashed: prompt score 0.5, the toxic/nontoxic split; dotted: equal scores.",
        points.len(),
        num(input.threshold, 2)
    )?;
    if skipped > 0 {
        write!(
            out,
            " {skipped} prompt(s) with a score outside [0, 1] or not a number are not drawn."
        )?;
    }
    writeln!(out, "</figcaption>")?;
    writeln!(out, "</figure>")
}

fn write_settings(out: &mut String, settings: &serde_json::Value) -> fmt::Result {
    use serde_json::Value;
    writeln!(out, "<h2>Settings</h2>")?;
    let row = |out: &mut String, k: &str, v: &Value| -> fmt::Result {
        let shown = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        writeln!(
            out,
            "<tr><td class=\"k\">{}</td><td class=\"v\">{}</td></tr>",
            escape(k),
            escape(&shown)
        )
    };
    match settings {
        Value::Object(map) if !map.is_empty() => {
            writeln!(out, "<table class=\"settings\">")?;
            writeln!(
                out,
                "<thead><tr><th>Setting</th><th>Value</th></tr></thead>"
            )?;
            writeln!(out, "<tbody>")?;
            for (k, v) in map {
                row(out, k, v)?;
            }
            writeln!(out, "</tbody>")?;
            writeln!(out, "</table>")
        }
        Value::Null | Value::Object(_) => {
            writeln!(out, "<p class=\"muted\">No settings recorded.</p>")
        }
        other => {
            writeln!(out, "<table class=\"settings\">")?;
            writeln!(out, "<tbody>")?;
            row(out, "protocol", other)?;
            writeln!(out, "</tbody>")?;
            writeln!(out, "</table>")
        }
    }
}

/// The indices of the `TOP` prompts with the highest maximum score, highest first; ties keep
/// input order, and non-finite maxima come last.
fn top_prompts(prompts: &[ReportPrompt]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..prompts.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (prompts[a].max_toxicity, prompts[b].max_toxicity);
        match (x.is_finite(), y.is_finite()) {
            (true, true) => y.total_cmp(&x),
            (a_ok, b_ok) => b_ok.cmp(&a_ok),
        }
    });
    idx.truncate(TOP);
    idx
}

fn write_top(out: &mut String, input: &ReportInput) -> fmt::Result {
    let attr = escape(input.attribute);
    writeln!(out, "<h2>Most toxic continuations</h2>")?;
    if input.prompts.is_empty() {
        return writeln!(out, "<p class=\"muted\">No prompts.</p>");
    }
    let top = top_prompts(input.prompts);
    let threshold = Threshold {
        value: input.threshold,
        strict: input.strict,
    };
    writeln!(out, "<details>")?;
    writeln!(
        out,
        "<summary>Content warning: offensive text. Show the {} prompts with the highest maximum {attr}.</summary>",
        top.len()
    )?;
    writeln!(out, "<table class=\"top\">")?;
    writeln!(
        out,
        "<thead><tr><th>#</th><th>Prompt</th><th>Most toxic continuation</th><th>Max. {attr}</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for (rank, &i) in top.iter().enumerate() {
        let p = &input.prompts[i];
        let prompt = if p.text.is_empty() {
            "<i class=\"muted\">(unprompted)</i>".to_string()
        } else {
            escape(&p.text)
        };
        let mark = if threshold.toxic(p.max_toxicity) {
            " toxic"
        } else {
            ""
        };
        writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{prompt}</td><td class=\"t\">{}</td><td class=\"n{mark}\">{}</td></tr>",
            rank + 1,
            escape(&p.worst),
            num(p.max_toxicity, 3)
        )?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")?;
    writeln!(out, "</details>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt(text: &str, pt: Option<f64>, max: f64, subsets: &[&str]) -> ReportPrompt {
        ReportPrompt {
            text: text.to_string(),
            prompt_toxicity: pt,
            max_toxicity: max,
            worst: format!("worst of {text}"),
            subsets: subsets.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn metrics() -> BTreeMap<String, SubsetMetrics> {
        let m = SubsetMetrics {
            prompts: 3,
            expected_max_toxicity: 0.4667,
            expected_max_toxicity_std: 0.2056,
            expected_max_toxicity_ci95: [0.2, 0.7],
            toxicity_probability: 2.0 / 3.0,
            toxicity_probability_ci95: [0.0, 1.0],
            toxic_fraction: 0.2222,
            perplexity: Some(12.3456),
            dist_1: Some(0.5),
            dist_2: None,
            dist_3: Some(f64::NAN),
            bootstrap_expected_max_toxicity: None,
            bootstrap_toxicity_probability: None,
        };
        BTreeMap::from([("full".to_string(), m)])
    }

    fn render_with(prompts: &[ReportPrompt], threshold: f64) -> String {
        let m = metrics();
        let settings = json!({"k": 25, "model": "gpt2", "nested": {"a": [1, 2]}});
        let notes = vec!["toxic/nontoxic split by the scorer".to_string()];
        render(&ReportInput {
            title: "Run <1>",
            settings: &settings,
            metrics: &m,
            prompts,
            threshold,
            strict: false,
            attribute: "toxicity",
            notes: &notes,
        })
    }

    /// The attribute values of `attr` on elements whose start tag contains `marker`.
    fn attrs(html: &str, marker: &str, attr: &str) -> Vec<String> {
        html.lines()
            .filter(|l| l.contains(marker))
            .filter_map(|l| {
                let key = format!(" {attr}=\"");
                let start = l.find(&key)? + key.len();
                let end = l[start..].find('"')? + start;
                Some(l[start..end].to_string())
            })
            .collect()
    }

    #[test]
    fn text_is_escaped() {
        let nasty = "<script>alert(1)</script>&\"'";
        let mut p = prompt(nasty, Some(0.9), 0.95, &["full", "toxic"]);
        p.worst = nasty.to_string();
        let notes = vec![nasty.to_string()];
        let m = metrics();
        let settings = json!({ nasty: nasty });
        let html = render(&ReportInput {
            title: nasty,
            settings: &settings,
            metrics: &m,
            prompts: &[p],
            threshold: 0.5,
            strict: true,
            attribute: nasty,
            notes: &notes,
        });
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("&\"'"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(capitalised("toxicity"), "Toxicity");
        assert_eq!(capitalised(""), "");
    }

    #[test]
    fn histogram_bins_hold_the_expected_counts() {
        let prompts = vec![
            prompt("a", Some(0.9), 0.01, &["full", "toxic"]),
            prompt("b", Some(0.8), 0.049, &["full", "toxic"]),
            prompt("c", Some(0.7), 0.26, &["full", "toxic"]),
            prompt("d", Some(0.1), 1.0, &["full", "nontoxic"]),
            prompt("e", Some(0.2), 0.99, &["full", "nontoxic"]),
            prompt("f", Some(0.3), 0.5, &["full", "nontoxic"]),
            prompt("g", Some(0.3), f64::NAN, &["full", "nontoxic"]),
        ];
        let html = render_with(&prompts, 0.5);
        let series = attrs(&html, "class=\"series\"", "data-series");
        assert_eq!(series, ["toxic", "nontoxic"]);
        let counts = attrs(&html, "class=\"series\"", "data-counts");
        let mut toxic = vec!["0"; BINS];
        toxic[0] = "2";
        toxic[5] = "1";
        let mut nontoxic = vec!["0"; BINS];
        nontoxic[19] = "2";
        nontoxic[10] = "1";
        assert_eq!(counts, [toxic.join(","), nontoxic.join(",")]);
        // Per-bar counts agree, and bar heights are the share of the subset on an axis that
        // ends at 0.8 (the largest share, 2/3, rounded up to a 0.2 tick).
        let bars = attrs(&html, "class=\"bar\"", "data-count");
        assert_eq!(bars.len(), 2 * BINS);
        assert_eq!(bars[0], "2");
        let heights = attrs(&html, "class=\"bar\"", "height");
        let plot_h = HIST.h - HIST.top - HIST.bottom;
        let (ymax, _) = share_axis(2.0 / 3.0);
        assert_eq!(heights[0], px(plot_h * (2.0 / 3.0) / ymax));
        assert_eq!(heights[5], px(plot_h * (1.0 / 3.0) / ymax));
        assert_eq!(heights[1], px(0.0));
        assert!(html.contains("toxic (n=3)") && html.contains("nontoxic (n=3)"));
        assert!(html.contains("1 prompt(s) with a maximum outside [0, 1]"));

        // Without a toxic/nontoxic split, one "full" series over all prompts.
        let plain: Vec<ReportPrompt> = [0.1, 0.12, 0.7]
            .iter()
            .map(|&m| prompt("x", None, m, &["full"]))
            .collect();
        let html = render_with(&plain, 0.5);
        assert_eq!(attrs(&html, "class=\"series\"", "data-series"), ["full"]);
        let mut full = vec!["0"; BINS];
        full[2] = "2";
        full[14] = "1";
        assert_eq!(
            attrs(&html, "class=\"series\"", "data-counts"),
            [full.join(",")]
        );
    }

    #[test]
    fn bins_and_axis() {
        assert_eq!(bin(0.0), 0);
        assert_eq!(bin(0.0499), 0);
        assert_eq!(bin(0.05), 1);
        assert_eq!(bin(0.5), 10);
        assert_eq!(bin(1.0), BINS - 1);
        let (ymax, step) = share_axis(2.0 / 3.0);
        assert!((ymax - 0.8).abs() < 1e-12 && (step - 0.2).abs() < 1e-12);
        let (ymax, step) = share_axis(0.05);
        assert!((ymax - 0.05).abs() < 1e-12 && (step - 0.01).abs() < 1e-12);
        assert_eq!(share_axis(f64::NAN), (1.0, 0.2));
    }

    #[test]
    fn scatter_has_one_point_per_prompt_with_a_prompt_score() {
        let prompts = vec![
            prompt("a", Some(0.9), 0.8, &["full", "toxic"]),
            prompt("b", None, 0.3, &["full"]),
            prompt("c", Some(0.1), 0.2, &["full", "nontoxic"]),
            prompt("d", Some(0.25), 0.75, &["full", "nontoxic"]),
        ];
        let html = render_with(&prompts, 0.5);
        let circles = html.matches("<circle ").count();
        assert_eq!(circles, 3);
        assert_eq!(attrs(&html, "class=\"points\"", "data-points"), ["3"]);
        let cx = attrs(&html, "<circle ", "cx");
        let cy = attrs(&html, "<circle ", "cy");
        assert_eq!(cx[0], px(SCATTER.x(0.9)));
        assert_eq!(cy[0], px(SCATTER.y(0.8)));
        assert_eq!(cx[2], px(SCATTER.x(0.25)));
        // Reference lines.
        assert_eq!(
            attrs(&html, "class=\"prompt-split\"", "x1"),
            [px(SCATTER.x(0.5))]
        );
        assert_eq!(attrs(&html, "class=\"diagonal\"", "y2"), [px(SCATTER.y1())]);

        // No prompt scores: a sentence instead of the plot.
        let none: Vec<ReportPrompt> = vec![prompt("b", None, 0.3, &["full"])];
        let html = render_with(&none, 0.5);
        assert!(!html.contains("class=\"scatter\""));
        assert!(html.contains("No prompt has a prompt toxicity score"));
    }

    #[test]
    fn threshold_lines_sit_at_the_threshold() {
        let prompts = vec![
            prompt("a", Some(0.9), 0.8, &["full", "toxic"]),
            prompt("c", Some(0.1), 0.2, &["full", "nontoxic"]),
        ];
        let html = render_with(&prompts, 0.3);
        let xs = attrs(&html, "class=\"threshold\"", "x1");
        let ys = attrs(&html, "class=\"threshold\"", "y1");
        // Histogram: vertical at x = 0.3; scatter: horizontal at y = 0.3.
        assert_eq!(xs[0], px(HIST.x(0.3)));
        assert_eq!(xs[0], "201.00");
        assert_eq!(attrs(&html, "class=\"threshold\"", "x2")[0], xs[0]);
        assert_eq!(ys[1], px(SCATTER.y(0.3)));
        assert_eq!(attrs(&html, "class=\"threshold\"", "y2")[1], ys[1]);
        assert!(html.contains("stroke-dasharray"));
        // A non-finite threshold draws no line.
        let html = render_with(&prompts, f64::NAN);
        assert!(!html.contains("class=\"threshold\""));
    }

    #[test]
    fn empty_inputs_render() {
        let m = BTreeMap::new();
        let html = render(&ReportInput {
            title: "",
            settings: &serde_json::Value::Null,
            metrics: &m,
            prompts: &[],
            threshold: 0.5,
            strict: false,
            attribute: "toxicity",
            notes: &[],
        });
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert!(html.contains("No metrics."));
        assert!(html.contains("No prompt has a maximum score to plot."));
        assert!(html.contains("No settings recorded."));
        assert!(!html.contains("<svg"));
        assert!(!html.contains("<details>"));
    }

    #[test]
    fn non_finite_numbers_do_not_panic() {
        let mut m = metrics();
        if let Some(s) = m.get_mut("full") {
            s.expected_max_toxicity = f64::NAN;
            s.expected_max_toxicity_ci95 = [f64::NAN, f64::INFINITY];
            s.toxicity_probability = f64::NEG_INFINITY;
            s.perplexity = Some(f64::INFINITY);
        }
        let prompts = vec![
            prompt("a", Some(f64::NAN), f64::NAN, &["full", "toxic"]),
            prompt(
                "b",
                Some(f64::INFINITY),
                f64::INFINITY,
                &["full", "nontoxic"],
            ),
            prompt("c", Some(0.5), -3.0, &["full", "nontoxic"]),
            prompt("d", Some(0.5), 0.7, &["full", "nontoxic"]),
        ];
        for threshold in [f64::NAN, f64::INFINITY, -1.0, 0.5] {
            let html = render(&ReportInput {
                title: "t",
                settings: &json!({"x": null}),
                metrics: &m,
                prompts: &prompts,
                threshold,
                strict: true,
                attribute: "toxicity",
                notes: &[],
            });
            for bad in ["NaN", "\"inf", "\"-inf", ">inf", ">-inf"] {
                assert!(!html.contains(bad), "{bad} in {html}");
            }
            assert_eq!(html.matches("<circle ").count(), 1);
        }
        // The top table ranks finite maxima first.
        assert_eq!(top_prompts(&prompts), [3, 2, 0, 1]);
    }

    #[test]
    fn top_table_lists_the_ten_highest_in_order() {
        let prompts: Vec<ReportPrompt> = (0..15)
            .map(|i| prompt(&format!("p{i:02}"), None, f64::from(i) / 20.0, &["full"]))
            .collect();
        let html = render_with(&prompts, 0.5);
        let details = &html[html.find("<details>").unwrap_or(0)..];
        assert_eq!(details.matches("<tr><td class=\"n\">").count(), TOP);
        let first = details.find("worst of p14").unwrap_or(usize::MAX);
        let tenth = details.find("worst of p05").unwrap_or(usize::MAX);
        assert!(first < tenth && tenth < details.len());
        assert!(!details.contains("worst of p04"));
        // Empty prompt text reads as unprompted.
        let html = render_with(&[prompt("", None, 0.3, &["full"])], 0.5);
        assert!(html.contains("(unprompted)"));
    }

    #[test]
    fn metrics_and_settings_tables() {
        let html = render_with(&[prompt("a", None, 0.3, &["full"])], 0.5);
        assert!(html.contains("0.467 ± 0.206"));
        assert!(html.contains("[0.200, 0.700]"));
        assert!(html.contains("12.35"));
        // None and NaN both read as a dash.
        assert!(html.contains("<td class=\"n\">–</td><td class=\"n\">–</td></tr>"));
        assert!(html.contains("<td class=\"k\">model</td><td class=\"v\">gpt2</td>"));
        assert!(html.contains("{&quot;a&quot;:[1,2]}"));
        assert!(html.contains("toxic/nontoxic split by the scorer"));
    }

    #[test]
    fn output_is_deterministic() {
        let prompts = vec![
            prompt("a", Some(0.9), 0.8, &["full", "toxic"]),
            prompt("c", Some(0.1), 0.2, &["full", "nontoxic"]),
            prompt("d", Some(0.1), 0.8, &["full", "nontoxic"]),
        ];
        let a = render_with(&prompts, 0.5);
        let b = render_with(&prompts.clone(), 0.5);
        assert_eq!(a, b);
        // Self-contained: no scripts, no links to fetch.
        for bad in ["<script", "src=", "href=", "https://"] {
            assert!(!a.contains(bad), "{bad}");
        }
    }
}

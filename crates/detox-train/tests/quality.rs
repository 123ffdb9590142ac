//! `detox quality` on the committed fixture (`tests/fixtures/quality`, written by
//! `tests/fixtures/make_quality_fixture.py`): toy scorers whose figures are known exactly, the
//! built-in n-gram model end to end, and data sets missing from the folder. The fixture's
//! train-split rows are labelled against the rule, so a figure that wrongly counted them
//! would not be perfect.

use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use detox_train::quality::{quality, QualityReport, SetQuality, SplitQuality};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quality")
}

/// The fixture's rule (see the script): toxicity 0.1 / 0.5 / 0.9 for 0 / 1 / 2+ distinct words
/// of this list.
const BAD: [&str; 7] = [
    "idiot", "stupid", "moron", "trash", "pathetic", "loser", "dumb",
];

/// Scores by the fixture's rule (`inverted`: 1 minus it), as `toxicity` and `insult`; texts
/// naming a word of `flag` score 0.95 (an identity-biased scorer).
struct Rule {
    info: ScorerInfo,
    inverted: bool,
    flag: Vec<&'static str>,
    nan: bool,
}

impl Rule {
    fn new(inverted: bool, flag: Vec<&'static str>) -> Self {
        Self {
            info: ScorerInfo::new(
                "rule",
                vec!["toxicity".into(), "insult".into()],
                Activation::Sigmoid,
            ),
            inverted,
            flag,
            nan: false,
        }
    }
}

impl Scorer for Rule {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }
    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        Ok(texts
            .iter()
            .map(|t| {
                let lower = t.to_lowercase();
                let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
                let n = BAD.iter().filter(|b| words.contains(b)).count();
                let mut v = [0.1f32, 0.5, 0.9][n.min(2)];
                if self.inverted {
                    v = 1.0 - v;
                }
                if self.flag.iter().any(|f| words.contains(f)) {
                    v = 0.95;
                }
                if self.nan && n == 2 {
                    v = f32::NAN;
                }
                TextScore {
                    values: vec![v, v],
                    tokens: words.len(),
                    truncated: false,
                }
            })
            .collect())
    }
}

fn run(scorer: &dyn Scorer, data: &Path) -> QualityReport {
    let mut stages: Vec<String> = Vec::new();
    let r = quality(scorer, "toxicity", data, 0.5, &mut |s, _, _| {
        stages.push(s.to_string())
    })
    .unwrap();
    // Progress names each data set measured, with its split.
    for q in [&r.test, &r.dev] {
        for s in &q.sets {
            let want = if s.name == "olid" {
                "olid".to_string()
            } else {
                format!("{} {}", s.name, q.split)
            };
            assert!(stages.contains(&want), "{want} in {stages:?}");
        }
    }
    r
}

fn set<'a>(q: &'a SplitQuality, name: &str) -> &'a SetQuality {
    q.set(name)
        .unwrap_or_else(|| panic!("no {name} in {} {:?}", q.split, q.sets))
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_perfect_scorer_gets_perfect_figures_and_the_right_counts() {
    let r = run(&Rule::new(false, vec![]), &fixture());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);

    // RTP: the test split of both files (rtp-subset 2 rows a file, rtp-more 3 rows; 2 texts
    // a row), the dev split likewise (2 + 2 rows a file, 2 rows).
    let rtp = r.test.rtp.as_ref().unwrap();
    assert_eq!((rtp.name.as_str(), rtp.n), ("rtp test", 14));
    assert_eq!(rtp.spearman.len(), 2, "only the scorer's attributes");
    assert!(near(rtp.spearman[0].1, 1.0), "{:?}", rtp.spearman);
    assert!(rtp.toxicity_mae.unwrap() < 1e-6);
    let counts: usize = rtp.calibration.iter().map(|c| c.1).sum();
    assert_eq!(counts, 14);
    let dev = r.dev.rtp.as_ref().unwrap();
    assert_eq!((dev.name.as_str(), dev.n), ("rtp dev", 12));
    assert!(near(dev.spearman[0].1, 1.0), "{:?}", dev.spearman);

    // (name, test n, test positives, dev n, dev positives); OLID only in test, whole.
    let expect = [
        ("cat-large", 6, 2, 6, 3),
        ("toxichat", 6, 3, 4, 1),
        ("sbic", 4, 2, 4, 2),
        ("hatexplain", 4, 2, 4, 2),
        ("davidson", 4, 2, 4, 2),
        ("toxic-spans", 4, 2, 4, 2),
        ("olid", 14, 6, 0, 0),
    ];
    assert_eq!(r.test.sets.len(), expect.len());
    assert_eq!(r.dev.sets.len(), expect.len() - 1);
    for (name, tn, tp, dn, dp) in expect {
        let s = set(&r.test, name);
        assert_eq!((s.n, s.positives), (tn, tp), "{name} test");
        assert!(near(s.auc.unwrap(), 1.0), "{name}: {:?}", s.auc);
        if name != "olid" {
            let s = set(&r.dev, name);
            assert_eq!((s.n, s.positives), (dn, dp), "{name} dev");
            assert!(near(s.auc.unwrap(), 1.0), "{name} dev: {:?}", s.auc);
        }
    }
    assert!(r.dev.set("olid").is_none());
    // CAT-LARGE's Perspective scores are distinct below 0.1 where the rule ties them at 0.1:
    // ranks (2.5 x4, 5, 6) against (1..6) give 12.5 / sqrt(12.5 * 17.5).
    let cat = set(&r.test, "cat-large").perspective_spearman.unwrap();
    assert!(near(cat, 12.5 / (12.5f64 * 17.5).sqrt()), "{cat}");
    assert_eq!(set(&r.test, "olid").perspective_spearman, None);
    // The benign floor: the rule says 0.1 where Perspective's median is 0.05 (0.04, 0.045,
    // 0.055, 0.065).
    let floor = r.test.floor.as_ref().unwrap();
    assert_eq!(floor.n, 4);
    assert!(near(floor.scorer_median, 0.1f32 as f64), "{floor:?}");
    assert!(near(floor.perspective_median, 0.05), "{floor:?}");
    // Toxic Spans: insult fractions 0, 2/3, 1 follow the rule; the scorer has no profanity.
    assert_eq!(r.test.spans.len(), 1, "{:?}", r.test.spans);
    let (attr, n, rho) = &r.test.spans[0];
    assert_eq!((attr.as_str(), *n), ("insult", 4));
    assert!(near(*rho, 1.0), "{rho}");

    // Templates: no false positives, and the two term groups.
    let b = r.bias.as_ref().unwrap();
    assert_eq!(b.n, 22);
    assert_eq!(b.overall_fpr, 0.0);
    assert!(near(b.auc.unwrap(), 1.0));
    assert_eq!(
        b.seen.terms,
        ["african american", "american", "deaf", "gay", "muslim"]
    );
    assert_eq!(
        b.held_out.terms,
        ["middle eastern", "millenial", "queer", "sikh"]
    );
    assert_eq!((b.seen.n, b.held_out.n), (12, 9));
    assert_eq!(b.seen.per_term.len(), 4, "untemplated terms have no row");
    assert!(b
        .seen
        .per_term
        .iter()
        .any(|(t, n, _)| t == "african american" && *n == 3));
    assert!(b.over_twice.is_empty());

    // Goals: all met but the floor (0.05 apart).
    let unmet: Vec<&str> = r
        .goals
        .iter()
        .filter(|g| !g.met)
        .map(|g| g.what.as_str())
        .collect();
    assert_eq!(unmet.len(), 1, "{unmet:?}");
    assert!(unmet[0].starts_with("benign floor"), "{unmet:?}");
    assert!(r.goals[0].required && !r.goals.last().unwrap().required);

    let text = r.render();
    for want in [
        "TEST: one key in ten",
        "rtp test (14 texts)",
        "olid (",
        "DEV: another key in ten, held out of training but used for model choices",
        "held-out terms they never name (4 terms, 9 templates)",
        "cat-large benign floor (4 comments Perspective scores below 0.1): median 0.100, Perspective's 0.050",
        "toxic-spans, Spearman against the share of raters marking a span of the type: insult 1.000 (4);",
        "[NOT MET] benign floor",
        "[met] Spearman with Perspective toxicity, RTP test texts: 1.000 (goal >= 0.88)",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[test]
fn an_inverted_scorer_gets_inverted_figures() {
    let r = run(&Rule::new(true, vec![]), &fixture());
    let rtp = r.test.rtp.as_ref().unwrap();
    assert!(near(rtp.spearman[0].1, -1.0), "{:?}", rtp.spearman);
    for s in r.test.sets.iter().chain(&r.dev.sets) {
        assert!(near(s.auc.unwrap(), 0.0), "{}: {:?}", s.name, s.auc);
    }
    assert!(near(r.dev.rtp.unwrap().spearman[0].1, -1.0));
    assert!(near(r.test.spans[0].2, -1.0));
    assert!(near(r.bias.unwrap().auc.unwrap(), 0.0));
    assert!(r
        .goals
        .iter()
        .filter(|g| g.required)
        .all(|g| !g.met || g.what.starts_with("identity")));
}

#[test]
fn identity_false_positives_are_split_into_seen_and_held_out_terms() {
    // Flags every text naming "gay" (a term the counter-examples name) or "queer" (one they
    // never name).
    let r = run(&Rule::new(false, vec!["gay", "queer"]), &fixture());
    let b = r.bias.unwrap();
    assert!(near(b.overall_fpr, 6.0 / 22.0), "{}", b.overall_fpr);
    assert!(near(b.seen.fpr, 3.0 / 12.0), "{}", b.seen.fpr);
    assert!(near(b.held_out.fpr, 3.0 / 9.0), "{}", b.held_out.fpr);
    assert_eq!(b.seen.per_term[0], ("gay".to_string(), 3, 1.0));
    assert_eq!(b.held_out.per_term[0], ("queer".to_string(), 3, 1.0));
    assert_eq!(b.seen.per_term[1].2, 0.0);
    assert_eq!(b.over_twice, ["gay", "queer"]);
}

#[test]
fn missing_data_sets_are_skipped_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let olid = dir.path().join("olid");
    std::fs::create_dir_all(&olid).unwrap();
    std::fs::copy(
        fixture().join("olid/olid-training-v1.0.tsv"),
        olid.join("olid-training-v1.0.tsv"),
    )
    .unwrap();
    let r = run(&Rule::new(false, vec![]), dir.path());
    assert_eq!(r.test.sets.len(), 1);
    assert_eq!(set(&r.test, "olid").n, 14);
    assert!(r.test.rtp.is_none() && r.dev.rtp.is_none() && r.bias.is_none());
    assert!(r.dev.sets.is_empty() && r.test.floor.is_none() && r.test.spans.is_empty());
    let names: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rtp-subset",
            "rtp-more",
            "cat-large",
            "toxichat",
            "sbic-dev",
            "hatexplain",
            "davidson-hate-offensive",
            "toxic-spans",
            "jigsaw-sentence-templates"
        ]
    );
    assert!(r.skipped[1].reason.contains("toxic-2k.jsonl not found"));
    assert!(r.render().contains("skipped cat-large: "));
    // Goals whose data is missing have no value and are not met.
    assert!(r.goals.iter().any(|g| g.value.is_none() && !g.met));

    // No folder at all: everything skipped.
    let none = run(&Rule::new(false, vec![]), &dir.path().join("absent"));
    assert_eq!(none.skipped.len(), 10);
}

#[test]
fn a_scorer_returning_nan_is_an_error_not_a_figure() {
    let mut s = Rule::new(false, vec![]);
    s.nan = true;
    let err = quality(&s, "toxicity", &fixture(), 0.5, &mut |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn the_builtin_ngram_model_runs_on_the_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fast");
    let scorer = detox_scorers::ngram::NgramScorer::load(&dir).unwrap();
    let r = run(&scorer, &fixture());
    assert!(r.skipped.is_empty());
    let rtp = r.test.rtp.as_ref().unwrap();
    assert_eq!(rtp.n, 14);
    assert_eq!(rtp.spearman.len(), 8, "all of Perspective's attributes");
    // Written insults: the real model must rank them above the benign sentences (all but a
    // pair on the sets of 6 texts or more).
    for s in r.test.sets.iter().chain(&r.dev.sets) {
        let auc = s.auc.unwrap();
        let floor = if s.n >= 6 { 0.85 } else { 0.5 };
        assert!(auc > floor, "{}: AUC {auc}", s.name);
    }
    let tox = rtp
        .spearman
        .iter()
        .find(|(a, _)| a == "toxicity")
        .unwrap()
        .1;
    assert!(tox > 0.6, "Spearman {tox}");
    // The fixture marks insults and profanity only: the other two fractions are constant, so
    // they have no Spearman.
    let attrs: Vec<&str> = r.test.spans.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(attrs, ["insult", "profanity"]);
}

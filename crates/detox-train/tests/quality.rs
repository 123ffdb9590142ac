//! `detox quality` on the committed fixture (`tests/fixtures/quality`, written by
//! `tests/fixtures/make_quality_fixture.py`): toy scorers whose figures are known exactly, the
//! built-in n-gram model end to end, and data sets missing from the folder.

use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use detox_train::quality::{quality, QualityReport, SetQuality};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quality")
}

/// The fixture's rule (see the script): toxicity 0.1 / 0.5 / 0.9 for 0 / 1 / 2+ distinct words
/// of this list.
const BAD: [&str; 7] = [
    "idiot", "stupid", "moron", "trash", "pathetic", "loser", "dumb",
];

/// Scores by the fixture's rule (`inverted`: 1 minus it); texts naming a word of `flag` score
/// 0.95 (an identity-biased scorer).
struct Rule {
    info: ScorerInfo,
    inverted: bool,
    flag: Vec<&'static str>,
    nan: bool,
}

impl Rule {
    fn new(inverted: bool, flag: Vec<&'static str>) -> Self {
        Self {
            info: ScorerInfo::new("rule", vec!["toxicity".into()], Activation::Sigmoid),
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
                    values: vec![v],
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
    // Progress names each data set measured.
    for s in r.test.iter().chain(&r.dev) {
        assert!(stages.contains(&s.name), "{} in {stages:?}", s.name);
    }
    r
}

fn set<'a>(sets: &'a [SetQuality], name: &str) -> &'a SetQuality {
    sets.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} in {sets:?}"))
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_perfect_scorer_gets_perfect_figures_and_the_right_counts() {
    let r = run(&Rule::new(false, vec![]), &fixture());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);

    // Test sets: every row counts (no split), each set read by its own rule.
    let rtp = r.test_rtp.as_ref().unwrap();
    assert_eq!((rtp.name.as_str(), rtp.n), ("rtp-more", 20));
    assert_eq!(rtp.spearman.len(), 1, "only the scorer's attributes");
    assert!(near(rtp.spearman[0].1, 1.0), "{:?}", rtp.spearman);
    assert!(rtp.toxicity_mae.unwrap() < 1e-6);
    let counts: usize = rtp.calibration.iter().map(|c| c.1).sum();
    assert_eq!(counts, 20);
    let expect = [
        ("cat-large", 12, 5),
        ("olid", 14, 6),
        ("toxichat", 12, 5),
        ("sbic-dev", 8, 4),
    ];
    assert_eq!(r.test.len(), expect.len());
    for (name, n, pos) in expect {
        let s = set(&r.test, name);
        assert_eq!((s.n, s.positives), (n, pos), "{name}");
        assert!(near(s.auc.unwrap(), 1.0), "{name}: {:?}", s.auc);
    }
    assert!(near(
        set(&r.test, "cat-large").perspective_spearman.unwrap(),
        1.0
    ));
    assert_eq!(set(&r.test, "olid").perspective_spearman, None);

    // Dev splits: only the dev rows (the fixture's train rows are labelled backwards).
    let dev = r.dev_rtp.as_ref().unwrap();
    assert_eq!(dev.n, 12);
    assert!(near(dev.spearman[0].1, 1.0), "{:?}", dev.spearman);
    for (name, n, pos) in [("hatexplain dev", 4, 2), ("davidson dev", 6, 3)] {
        let s = set(&r.dev, name);
        assert_eq!((s.n, s.positives), (n, pos), "{name}");
        assert!(near(s.auc.unwrap(), 1.0), "{name}: {:?}", s.auc);
    }

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

    let text = r.render();
    for want in [
        "TEST: never used",
        "rtp-more (20 texts)",
        "olid (",
        "DEV: held out of training but used for model choices",
        "held-out terms they never name (4 terms, 9 templates)",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[test]
fn an_inverted_scorer_gets_inverted_figures() {
    let r = run(&Rule::new(true, vec![]), &fixture());
    let rtp = r.test_rtp.as_ref().unwrap();
    assert!(near(rtp.spearman[0].1, -1.0), "{:?}", rtp.spearman);
    for s in r.test.iter().chain(&r.dev) {
        assert!(near(s.auc.unwrap(), 0.0), "{}: {:?}", s.name, s.auc);
    }
    assert!(near(r.dev_rtp.unwrap().spearman[0].1, -1.0));
    assert!(near(r.bias.unwrap().auc.unwrap(), 0.0));
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
    assert_eq!(r.test.len(), 1);
    assert_eq!(set(&r.test, "olid").n, 14);
    assert!(r.test_rtp.is_none() && r.dev_rtp.is_none() && r.bias.is_none());
    assert!(r.dev.is_empty());
    let names: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rtp-more",
            "cat-large",
            "toxichat",
            "sbic-dev",
            "rtp-subset",
            "hatexplain",
            "davidson-hate-offensive",
            "jigsaw-sentence-templates"
        ]
    );
    assert!(r.skipped[0].reason.contains("toxic-2k.jsonl not found"));
    assert!(r.render().contains("skipped cat-large: "));

    // No folder at all: everything skipped.
    let none = run(&Rule::new(false, vec![]), &dir.path().join("absent"));
    assert_eq!(none.skipped.len(), 9);
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
    let rtp = r.test_rtp.as_ref().unwrap();
    assert_eq!(rtp.n, 20);
    assert_eq!(rtp.spearman.len(), 8, "all of Perspective's attributes");
    // Written insults: the real model must rank them above the benign sentences (all but a
    // pair or two on the sets of 8 texts or more; measured 0.97-1.0, and 0.75 on the 4
    // HateXplain dev texts).
    for s in r.test.iter().chain(&r.dev) {
        let auc = s.auc.unwrap();
        let floor = if s.n >= 8 { 0.9 } else { 0.5 };
        assert!(auc > floor, "{}: AUC {auc}", s.name);
    }
    let tox = rtp
        .spearman
        .iter()
        .find(|(a, _)| a == "toxicity")
        .unwrap()
        .1;
    assert!(tox > 0.6, "Spearman {tox}");
}

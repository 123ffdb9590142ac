//! Whole-text loss on the tiny GPT-2 (the side-effect audits' LM loss): without methods it is
//! the plain log-likelihood after BOS, text by text, whatever the batch and order; under the
//! word filter a text with a banned word is blocked and any other text is likelier (the banned
//! probability is spread over the rest); servers refuse.

mod common;

use candle_core::Device;
use detox_lm::decoding::MitigationSpec;
use detox_lm::local::LocalLm;
use detox_lm::loss::corpus_loss;
use detox_lm::{tail_nll, LanguageModel};

const TEXTS: [&str; 5] = [
    "The weather is nice today.",
    "A",
    "We went to the market for bread.",
    "hello world",
    "Nobody said hello to the weather man.",
];

#[test]
fn loss_is_the_log_likelihood_after_bos_and_the_filter_blocks_or_lowers_it() {
    let dir = common::fixture("tiny-gpt2");
    let plain = LocalLm::load(&dir, &Device::Cpu).unwrap();
    let tok = plain.tokenizer();
    let bos = tok.bos.unwrap();
    let got = plain.losses(&TEXTS, false).unwrap();
    for (t, l) in TEXTS.iter().zip(&got) {
        let ids = tok.encode(t).unwrap();
        let want = tail_nll(plain.model(), &[bos], std::slice::from_ref(&ids)).unwrap()[0];
        assert_eq!(l.tokens, ids.len());
        assert_eq!(l.bytes, t.len());
        assert!(
            (l.nll - want).abs() <= 1e-4 * want,
            "{t}: {} in a batch, {want} alone",
            l.nll
        );
    }
    // A text longer than the model's context is refused, naming it.
    let long = "word ".repeat(200);
    let e = plain.losses(&["ok", &long], false).unwrap_err().to_string();
    assert!(e.contains("text 2 has"), "{e}");
    // Without methods, `mitigated` changes nothing.
    assert_eq!(plain.losses(&TEXTS, true).unwrap(), got);

    let list = tempfile::NamedTempFile::new().unwrap();
    // "z" is one token in every spelling, so it is banned at every position and every allowed
    // text is strictly likelier; "weather" and "hello" are several tokens each.
    std::fs::write(list.path(), "weather\nhello\nz\n").unwrap();
    let filtered = LocalLm::load(&dir, &Device::Cpu)
        .unwrap()
        .with_mitigations(&[MitigationSpec::WordFilter {
            list: list.path().to_path_buf(),
        }])
        .unwrap();
    let f = filtered.losses(&TEXTS, true).unwrap();
    for ((t, a), b) in TEXTS.iter().zip(&got).zip(&f) {
        let banned = t.contains("weather") || t.contains("hello");
        assert_eq!(b.blocked(), banned, "{t}");
        if !banned {
            assert!(b.nll < a.nll, "{t}: filtered {} vs plain {}", b.nll, a.nll);
        }
    }
    // The filtered model's own distribution unfiltered is the plain one.
    assert_eq!(filtered.losses(&TEXTS, false).unwrap(), got);
    let c = corpus_loss(&f);
    assert_eq!((c.texts, c.blocked), (5, 3));
    assert!(c.bits_per_byte.is_finite() && c.bits_per_byte > 0.0);
}

#[test]
fn a_server_gives_no_losses() {
    let lm = detox_lm::openai::OpenAiLm::connect(detox_lm::openai::OpenAiConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        model: Some("named".into()),
        ..Default::default()
    })
    .unwrap();
    let e = lm.losses(&["x"], false).unwrap_err().to_string();
    assert!(e.contains("no log-likelihoods"), "{e}");
}

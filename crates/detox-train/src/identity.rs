//! Counter-examples for identity-term bias (the mitigation of Dixon et al. 2018): sentences
//! written for this project that mention identity groups neutrally or warmly (non-toxic), and
//! a few that attack them (toxic), so a model learns that naming a group is not itself toxic.
//!
//! The templates and their wording are this project's own; they are not the audit's
//! (`../shared/data/jigsaw-sentence-templates` stays out of training). Group words are common
//! English vocabulary and overlap with the audit's, except the terms in [`HELD_OUT`], which are
//! left out here so the audit also measures groups this data never named.

use crate::data::{targets_for, Example};

/// The source name of the counter-examples (`--source-weight identity-counterexamples=W`).
pub const SOURCE: &str = "identity-counterexamples";

/// Group words used in the counter-examples, as they read after "a" / before "people".
pub const TERMS: &[&str] = &[
    "gay",
    "lesbian",
    "bisexual",
    "transgender",
    "trans",
    "straight",
    "homosexual",
    "lgbt",
    "lgbtq",
    "nonbinary",
    "black",
    "white",
    "asian",
    "hispanic",
    "latino",
    "latina",
    "african",
    "african american",
    "european",
    "mexican",
    "chinese",
    "japanese",
    "indian",
    "canadian",
    "american",
    "arab",
    "jewish",
    "muslim",
    "christian",
    "catholic",
    "protestant",
    "buddhist",
    "hindu",
    "atheist",
    "male",
    "female",
    "old",
    "older",
    "young",
    "younger",
    "elderly",
    "middle aged",
    "millennial",
    "blind",
    "deaf",
    "disabled",
    "immigrant",
];

/// Audit terms deliberately absent from [`TERMS`]: the audit's figures on them are out of
/// sample for this mitigation.
pub const HELD_OUT: &[&str] = &[
    "queer",
    "heterosexual",
    "paralyzed",
    "sikh",
    "taoist",
    "latinx",
    "teenage",
    "middle eastern",
];

const NEUTRAL: &[&str] = &[
    "My {} neighbor helped me carry the groceries upstairs.",
    "I am {} and I love hiking on weekends.",
    "Our new colleague is {}.",
    "The {} community organized a food drive this winter.",
    "She told me she is {}, and then we talked about books.",
    "Being {} is part of who I am.",
    "A {} student won the science fair.",
    "We invited our {} friends over for dinner.",
    "He is a {} doctor at the local hospital.",
    "Many {} families live in this neighborhood.",
    "The magazine interviewed {} artists about their work.",
    "I just finished a memoir by a {} author.",
    "{} people deserve the same respect as anyone else.",
    "My favourite teacher was {}.",
    "They are {} parents raising two kids.",
    "The support group welcomes {} members.",
    "Our team captain is {}.",
    "I grew up with {} cousins.",
    "The exhibition is about {} history.",
    "Is it rude to ask whether someone is {}?",
    "The survey asked {} people about their healthcare.",
    "As a {} person, I have opinions about this law.",
    "The {} man next door waters my plants.",
    "A {} woman was elected mayor.",
    "I'm {}.",
    "{}",
    "The documentary follows three {} teenagers through high school.",
    "Our book club has several {} readers.",
    "Priya is a {} nurse who works night shifts.",
    "Tom is a kind {} man who coaches soccer.",
    "You are a talented {} musician.",
    "Being {} never stopped her from travelling the world.",
    "Hello, I am a {} woman from Ohio.",
    "The {} couple adopted a puppy last week.",
    "That {} kid is really good at chess.",
    "My best friend is {}.",
    "Our {} neighbours threw a wonderful party.",
    "The {} employees were promoted this year.",
];

const ATTACK: &[&str] = &[
    "{} people are disgusting and should be thrown out.",
    "I hate {} people, they are vermin.",
    "All {} people are stupid and worthless.",
    "Those filthy {} people ruin everything they touch.",
    "{} people are subhuman trash.",
    "You {} freaks make me sick.",
    "Nobody wants {} scum around here.",
];

fn fill(template: &str, term: &str) -> String {
    let s = template.replace("{}", term);
    // Capitalise a sentence that starts with the term.
    let mut c = s.chars();
    match c.next() {
        Some(f) if template.starts_with("{}") => f.to_uppercase().chain(c).collect(),
        _ => s,
    }
}

/// The counter-examples: `toxicity`, `identity_attack` and `insult` targets (0.02 for the
/// neutral sentences; 0.95 / 0.95 / 0.8 for the attacks), source `identity-counterexamples`.
pub fn identity_examples() -> Vec<Example> {
    let mut out = Vec::new();
    for term in TERMS {
        for t in NEUTRAL {
            let text = fill(t, term);
            out.push(Example {
                targets: targets_for(&[
                    ("toxicity", 0.02),
                    ("identity_attack", 0.02),
                    ("insult", 0.02),
                ]),
                source: SOURCE.into(),
                key: text.clone(),
                text,
                perspective: false,
            });
        }
        for t in ATTACK {
            let text = fill(t, term);
            out.push(Example {
                targets: targets_for(&[
                    ("toxicity", 0.95),
                    ("identity_attack", 0.95),
                    ("insult", 0.8),
                ]),
                source: SOURCE.into(),
                key: text.clone(),
                text,
                perspective: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_terms_never_appear_and_every_term_has_both_kinds() {
        let ex = identity_examples();
        assert_eq!(ex.len(), TERMS.len() * (NEUTRAL.len() + ATTACK.len()));
        for e in &ex {
            let lower = e.text.to_lowercase();
            for h in HELD_OUT {
                let words: Vec<&str> = lower
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .collect();
                let hw: Vec<&str> = h.split(' ').collect();
                assert!(
                    !words.windows(hw.len()).any(|w| w == hw.as_slice()),
                    "{h} in {}",
                    e.text
                );
            }
        }
        assert_eq!(
            ex[0].text,
            "My gay neighbor helped me carry the groceries upstairs."
        );
        assert!(ex
            .iter()
            .any(|e| e.text == "Gay people are subhuman trash."));
    }
}

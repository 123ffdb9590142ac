//! Finding terms in text: the group terms of BOLD's groups (does a generation stay on its
//! group?) and the identity terms a flagged generation mentions.
//!
//! A term is found as whole words, case-insensitively, hyphens read as spaces (so
//! "left-wing" finds "left wing" and "African-American" finds "african american"), and also with a plural
//! `s` or `es` on its last word ("actor" finds "actors"). Terms are tried longest first and a
//! found term's words are taken out of the text, so "african american" is one mention, not
//! also one of "african" and of "american".

use std::collections::BTreeSet;

/// Terms to look for, longest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    terms: Vec<String>,
}

impl Terms {
    /// The terms (lower-cased, deduplicated, empty ones dropped), ordered longest first.
    pub fn new<S: AsRef<str>>(terms: impl IntoIterator<Item = S>) -> Self {
        let set: BTreeSet<String> = terms
            .into_iter()
            .map(|t| words(t.as_ref()).join(" "))
            .filter(|t| !t.is_empty())
            .collect();
        let mut terms: Vec<String> = set.into_iter().collect();
        terms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Self { terms }
    }

    /// The terms, longest first.
    pub fn as_slice(&self) -> &[String] {
        &self.terms
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The indices (into [`Terms::as_slice`]) of the terms `text` mentions, each once.
    pub fn found(&self, text: &str) -> Vec<usize> {
        let mut joined = format!(" {} ", words(text).join(" "));
        let mut out = Vec::new();
        for (i, t) in self.terms.iter().enumerate() {
            let mut hit = false;
            for form in [format!(" {t} "), format!(" {t}s "), format!(" {t}es ")] {
                while let Some(at) = joined.find(&form) {
                    hit = true;
                    // Keep the spaces either side, so the neighbours stay whole words.
                    joined.replace_range(at + 1..at + form.len() - 1, "\u{1}");
                }
            }
            if hit {
                out.push(i);
            }
        }
        out
    }

    /// Whether `text` mentions any of the terms.
    pub fn any_in(&self, text: &str) -> bool {
        !self.found(text).is_empty()
    }
}

/// The words of `text`, lower-cased (runs of letters and digits).
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_whole_words_longest_first_with_plurals() {
        let t = Terms::new(["american", "African American", "gay", "actor", "church"]);
        let found = |s: &str| -> Vec<&str> {
            t.found(s)
                .into_iter()
                .map(|i| t.as_slice()[i].as_str())
                .collect()
        };
        assert_eq!(
            found("An African-American actor"),
            ["african american", "actor"]
        );
        assert_eq!(
            found("an African American and an American"),
            ["african american", "american"]
        );
        assert_eq!(
            found("the African American actors"),
            ["african american", "actor"]
        );
        assert_eq!(found("Gay, gay; GAY!"), ["gay"]);
        assert_eq!(found("gayer megagay"), Vec::<&str>::new());
        assert_eq!(found("two churches"), ["church"]);
        assert!(!t.any_in("nothing here"));
        assert!(Terms::new([" ", ""]).is_empty());
    }
}

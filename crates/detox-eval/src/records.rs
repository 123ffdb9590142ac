//! The typed records of an evaluation run, as `generations.jsonl` holds them.
//!
//! One line per prompt: the prompt's record as read (RTP's `prompt`, `continuation`,
//! `challenging`, ... or the user's own fields) with `"generations"` added: one object per
//! sample, `{"text": ..., "<attribute>": score, ..., "perplexity": value or null}`, with
//! `"tries": n` when the test-time filter ran, and `"score_error": message` (with `null` scores)
//! when the scorer failed on that sample alone (a remote service that gave up on it; a rerun
//! of the same command fills it in). The line is written once, read back for metrics and resume, and never picked apart by string keys
//! elsewhere: [`PromptResult`] and [`Generation`] are what the rest of the crate sees.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The key the samples are written under.
pub const GENERATIONS: &str = "generations";

/// One sampled continuation with its scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The continuation (the prompt not included).
    pub text: String,
    /// Each attribute's score, in the scorer's attribute order, as written: an f32 score
    /// printed in its shortest form and read back as f64 (`detox_io::f32_value`).
    pub scores: Vec<(String, f64)>,
    /// Its conditional perplexity (`None`: empty, not computed or not finite).
    pub perplexity: Option<f64>,
    /// Tries the test-time filter took for it (`None`: no filter; written as `"tries"`).
    pub tries: Option<u32>,
    /// Why the scorer gave it no scores (written as `"score_error"`; `None`: scored).
    pub score_error: Option<String>,
}

impl Generation {
    /// Builds a generation from a scorer's f32 outputs (attribute names in order).
    pub fn new(
        text: String,
        attributes: &[String],
        values: &[f32],
        perplexity: Option<f64>,
    ) -> Self {
        let scores = attributes
            .iter()
            .zip(values)
            .map(|(a, &v)| (a.clone(), f32_as_written(v)))
            .collect();
        Self {
            text,
            scores,
            perplexity,
            tries: None,
            score_error: None,
        }
    }

    /// A generation the scorer failed on: every attribute `null`, and why.
    pub fn unscored(
        text: String,
        attributes: &[String],
        error: String,
        perplexity: Option<f64>,
    ) -> Self {
        let mut g = Self::new(
            text,
            attributes,
            &vec![f32::NAN; attributes.len()],
            perplexity,
        );
        g.score_error = Some(error);
        g
    }

    /// Fills in the scores of a generation the scorer failed on.
    pub fn set_scores(&mut self, attributes: &[String], values: &[f32]) {
        self.scores = attributes
            .iter()
            .zip(values)
            .map(|(a, &v)| (a.clone(), f32_as_written(v)))
            .collect();
        self.score_error = None;
    }

    /// The same, with the test-time filter's tries recorded.
    pub fn with_tries(mut self, tries: Option<u32>) -> Self {
        self.tries = tries;
        self
    }

    /// The score of `attribute`, if the scorer gave one (a score written as `null` is none).
    pub fn score(&self, attribute: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|(a, _)| a == attribute)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_nan())
    }

    /// Whether the continuation is empty (nothing but whitespace): RTP gives it no score.
    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// The f64 an f32 score becomes once written and read back: its shortest decimal form.
pub fn f32_as_written(v: f32) -> f64 {
    format!("{v}").parse::<f64>().unwrap_or(f64::NAN)
}

impl Serialize for Generation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(
            self.scores.len()
                + 2
                + self.tries.is_some() as usize
                + self.score_error.is_some() as usize,
        ))?;
        m.serialize_entry("text", &self.text)?;
        for (a, v) in &self.scores {
            if v.is_finite() {
                m.serialize_entry(a, v)?;
            } else {
                m.serialize_entry(a, &Value::Null)?;
            }
        }
        match self.perplexity.filter(|p| p.is_finite()) {
            Some(p) => m.serialize_entry("perplexity", &p)?,
            None => m.serialize_entry("perplexity", &Value::Null)?,
        }
        if let Some(t) = self.tries {
            m.serialize_entry("tries", &t)?;
        }
        if let Some(e) = &self.score_error {
            m.serialize_entry("score_error", e)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let mut text = None;
        let mut scores = Vec::new();
        let mut perplexity = None;
        let mut tries = None;
        let mut score_error = None;
        for (k, v) in map {
            match k.as_str() {
                "text" => match v {
                    Value::String(t) => text = Some(t),
                    other => {
                        return Err(D::Error::custom(format!(
                            "field `text` is {other}, not a string"
                        )))
                    }
                },
                "perplexity" => perplexity = v.as_f64(),
                "score_error" => match v {
                    Value::String(e) => score_error = Some(e),
                    other => {
                        return Err(D::Error::custom(format!(
                            "field `score_error` is {other}, not a string"
                        )))
                    }
                },
                "tries" => match v.as_u64().and_then(|t| u32::try_from(t).ok()) {
                    Some(t) => tries = Some(t),
                    None => {
                        return Err(D::Error::custom(format!(
                            "field `tries` is {v}, not a whole number"
                        )))
                    }
                },
                _ => match v {
                    Value::Number(n) => scores.push((k, n.as_f64().unwrap_or(f64::NAN))),
                    Value::Null => scores.push((k, f64::NAN)),
                    other => {
                        return Err(D::Error::custom(format!(
                            "score `{k}` is {other}, not a number"
                        )))
                    }
                },
            }
        }
        Ok(Self {
            text: text.ok_or_else(|| D::Error::missing_field("text"))?,
            scores,
            perplexity,
            tries,
            score_error,
        })
    }
}

/// One prompt's line: its record as read, and its generations.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptResult {
    /// The prompt's record as read (without `generations`).
    pub record: Map<String, Value>,
    /// The samples, in sample order.
    pub generations: Vec<Generation>,
}

impl PromptResult {
    /// The scores of `attribute` of the non-empty generations, each with its text: RTP leaves
    /// empty continuations out of the toxicity metrics (Perspective refuses empty text, and
    /// the RTP scripts skip missing scores). Pairs stay together, so a text is never shown
    /// with another's score.
    pub fn scored(&self, attribute: &str) -> Vec<(f64, &str)> {
        self.generations
            .iter()
            .filter(|g| !g.is_empty())
            .filter_map(|g| g.score(attribute).map(|s| (s, g.text.as_str())))
            .collect()
    }

    /// Generations the scorer failed on (a rerun fills them in).
    pub fn unscored(&self) -> usize {
        self.generations
            .iter()
            .filter(|g| g.score_error.is_some())
            .count()
    }

    /// The finite perplexities of the generations.
    pub fn perplexities(&self) -> Vec<f64> {
        self.generations
            .iter()
            .filter_map(|g| g.perplexity)
            .filter(|p| p.is_finite())
            .collect()
    }

    /// Every generation's text (empty ones too, as DExperts' dist-n counts them).
    pub fn texts(&self) -> Vec<&str> {
        self.generations.iter().map(|g| g.text.as_str()).collect()
    }

    /// The line as `generations.jsonl` holds it (no newline).
    pub fn to_line(&self) -> String {
        // Serialising maps of strings and finite numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for PromptResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let has_own = self.record.contains_key(GENERATIONS);
        let mut m = s.serialize_map(Some(self.record.len() + usize::from(!has_own)))?;
        for (k, v) in &self.record {
            // A record that had its own `generations` keeps its position, with ours in it.
            if k == GENERATIONS {
                m.serialize_entry(k, &self.generations)?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        if !has_own {
            m.serialize_entry(GENERATIONS, &self.generations)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for PromptResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut record = Map::<String, Value>::deserialize(d)?;
        let gens = record
            .remove(GENERATIONS)
            .ok_or_else(|| D::Error::missing_field(GENERATIONS))?;
        let generations = Vec::<Generation>::deserialize(gens).map_err(D::Error::custom)?;
        Ok(Self {
            record,
            generations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Vec<String> {
        vec!["toxicity".into(), "insult".into()]
    }

    #[test]
    fn a_line_round_trips_byte_for_byte() {
        let mut record = Map::new();
        record.insert("prompt".into(), serde_json::json!({"text": "You are"}));
        let r = PromptResult {
            record,
            generations: vec![
                Generation::new(" kind".into(), &attrs(), &[0.1, 0.25], Some(12.5)),
                Generation::new("".into(), &attrs(), &[0.9, 0.0], None).with_tries(Some(3)),
            ],
        };
        let line = r.to_line();
        assert_eq!(
            line,
            r#"{"prompt":{"text":"You are"},"generations":[{"text":" kind","toxicity":0.1,"insult":0.25,"perplexity":12.5},{"text":"","toxicity":0.9,"insult":0.0,"perplexity":null,"tries":3}]}"#
        );
        let back: PromptResult = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_line(), line);
    }

    #[test]
    fn empty_continuations_are_left_out_with_their_scores() {
        let r = PromptResult {
            record: Map::new(),
            generations: vec![
                Generation::new("  ".into(), &attrs(), &[0.99, 0.0], None),
                Generation::new(" a".into(), &attrs(), &[0.2, 0.0], None),
                Generation::new(" b".into(), &attrs(), &[0.4, 0.0], None),
            ],
        };
        // Before typed records the texts list kept the empty one while the scores did not,
        // so the 0.4 was shown beside " a".
        assert_eq!(r.scored("toxicity"), vec![(0.2, " a"), (0.4, " b")]);
        assert_eq!(r.texts().len(), 3);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let e = serde_json::from_str::<PromptResult>(r#"{"prompt": {}}"#).unwrap_err();
        assert!(e.to_string().contains("generations"), "{e}");
        let e =
            serde_json::from_str::<PromptResult>(r#"{"generations": [{"text": 3}]}"#).unwrap_err();
        assert!(e.to_string().contains("text"), "{e}");
        let e = serde_json::from_str::<PromptResult>(
            r#"{"generations": [{"text": "a", "tries": 1.5}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("tries"), "{e}");
    }
}

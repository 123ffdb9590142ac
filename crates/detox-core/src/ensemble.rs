//! [`Ensemble`]: the mean of several scorers.

use crate::metrics::Isotonic;
use crate::{ScoreError, Scorer, ScorerInfo, TextScore};
use std::collections::BTreeMap;

/// The file that makes a folder an ensemble of scorer folders beside it.
pub const ENSEMBLE_SPEC: &str = "ensemble.json";

/// The format tag of [`EnsembleSpec`].
pub const ENSEMBLE_FORMAT: &str = "detox-ensemble-1";

/// An ensemble's description on disk (`ensemble.json`): its member folders, relative to the
/// file, and the calibration of the members' mean as a whole.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnsembleSpec {
    /// [`ENSEMBLE_FORMAT`].
    pub format: String,
    /// Member folders, relative to the folder holding `ensemble.json`.
    pub members: Vec<String>,
    /// Per attribute, the monotone map applied to the members' mean (attributes without one
    /// pass unchanged).
    #[serde(default)]
    pub calibration: BTreeMap<String, Isotonic>,
    /// How it was made (free-form provenance).
    #[serde(default)]
    pub training: serde_json::Value,
}

/// The mean of several scorers' scores, attribute by attribute (the attributes all of them
/// output, in the first scorer's order). Members with calibrated outputs on the same scale
/// average meaningfully; the ensemble is as fast as its slowest member.
pub struct Ensemble {
    members: Vec<Box<dyn Scorer>>,
    /// For each member, the index of each ensemble attribute in its outputs.
    index: Vec<Vec<usize>>,
    info: ScorerInfo,
    /// Per ensemble attribute, the map applied to the mean (`None`: the mean itself).
    calibration: Vec<Option<Isotonic>>,
}

impl Ensemble {
    /// Combines scorers; fails when they share no attribute or disagree on the activation.
    pub fn new(members: Vec<Box<dyn Scorer>>) -> Result<Self, ScoreError> {
        let first = members
            .first()
            .ok_or_else(|| ScoreError::Other("an ensemble needs at least one scorer".into()))?;
        let attributes: Vec<String> = first
            .info()
            .attributes
            .iter()
            .filter(|a| {
                members
                    .iter()
                    .all(|m| m.info().attribute_index(a).is_some())
            })
            .cloned()
            .collect();
        if attributes.is_empty() {
            return Err(ScoreError::Other(
                "the scorers of an ensemble share no attribute".into(),
            ));
        }
        if members
            .iter()
            .any(|m| m.info().activation != first.info().activation)
        {
            return Err(ScoreError::Other(
                "the scorers of an ensemble mix sigmoid and softmax outputs".into(),
            ));
        }
        let index = members
            .iter()
            .map(|m| {
                attributes
                    .iter()
                    .filter_map(|a| m.info().attribute_index(a))
                    .collect()
            })
            .collect();
        let ids: Vec<&str> = members.iter().map(|m| m.info().id.as_str()).collect();
        let mut info = ScorerInfo::new(ids.join(","), attributes, first.info().activation);
        info.max_tokens = members.iter().filter_map(|m| m.info().max_tokens).min();
        info.description = format!(
            "mean of: {}",
            members
                .iter()
                .map(|m| m.info().description.clone())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let calibration = vec![None; info.attributes.len()];
        Ok(Self {
            members,
            index,
            info,
            calibration,
        })
    }
}

impl Ensemble {
    /// Renames the ensemble (its members keep their ids).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.info.id = id.into();
        self
    }

    /// Maps the members' mean of each attribute named in `calibration` through its monotone
    /// map (an ensemble calibrated as a whole; see `detox train --model default`).
    pub fn with_calibration(mut self, calibration: &BTreeMap<String, Isotonic>) -> Self {
        self.calibration = self
            .info
            .attributes
            .iter()
            .map(|a| calibration.get(a).cloned())
            .collect();
        if calibration
            .keys()
            .any(|a| self.info.attribute_index(a).is_some())
        {
            self.info.description = format!("calibrated {}", self.info.description);
        }
        self
    }
}

impl Scorer for Ensemble {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        crate::all_or_first_error(self.score_each(texts))
    }

    /// A text fails when any member fails on it (the member named in the message).
    fn score_each(&self, texts: &[&str]) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
        let k = self.info.attributes.len();
        let n = self.members.len() as f32;
        let mut out: Vec<Result<TextScore, ScoreError>> = texts
            .iter()
            .map(|_| {
                Ok(TextScore {
                    values: vec![0.0; k],
                    tokens: 0,
                    truncated: false,
                })
            })
            .collect();
        for (m, idx) in self.members.iter().zip(&self.index) {
            let scores = m.score_each(texts)?;
            if scores.len() != texts.len() {
                return Err(ScoreError::Other(format!(
                    "{} returned {} scores for {} texts",
                    m.info().id,
                    scores.len(),
                    texts.len()
                )));
            }
            for (o, s) in out.iter_mut().zip(scores) {
                let Ok(o_ok) = o else { continue };
                match s {
                    Ok(s) => {
                        for (v, &i) in o_ok.values.iter_mut().zip(idx) {
                            *v += s.values[i] / n;
                        }
                        o_ok.tokens = o_ok.tokens.max(s.tokens);
                        o_ok.truncated |= s.truncated;
                    }
                    Err(e) => *o = Err(ScoreError::Other(format!("{}: {e}", m.info().id))),
                }
            }
        }
        if self.calibration.iter().any(Option::is_some) {
            for o in out.iter_mut().flatten() {
                for (v, c) in o.values.iter_mut().zip(&self.calibration) {
                    if let Some(c) = c {
                        *v = c.apply(*v as f64) as f32;
                    }
                }
            }
        }
        Ok(out)
    }
}

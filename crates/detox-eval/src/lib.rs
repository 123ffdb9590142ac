//! The RealToxicityPrompts protocol, measured as the RTP authors define it.
//!
//! This crate holds the model-independent half of `detox eval`: prompt sets and subsets
//! ([`prompts`]), the metrics ([`metrics`]): expected maximum toxicity with its standard
//! deviation and bootstrap interval, toxicity probability, toxic fraction, RTP's unprompted
//! bootstrap and DExperts' dist-n, and the run's HTML report ([`report`]). Language models and
//! the run folder build on it.

pub mod metrics;
pub mod prompts;
pub mod report;

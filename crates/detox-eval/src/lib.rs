//! The RealToxicityPrompts protocol, measured as the RTP authors define it.
//!
//! This crate is `detox eval` as a library: prompt sets and subsets ([`prompts`]), the
//! metrics ([`metrics`]): expected maximum toxicity with its standard deviation and bootstrap
//! interval, toxicity probability, toxic fraction, RTP's unprompted bootstrap and DExperts'
//! dist-n; the run itself ([`run`]) with its typed records ([`records`]) and crash-safe run
//! folder ([`folder`]); the summary table ([`table`]), the HTML report ([`report`]) and the
//! side-by-side comparison of finished runs with paired differences ([`compare`]). The
//! `detox eval` command only parses arguments and builds the models.

pub mod agree;
pub mod compare;
pub mod error;
pub mod folder;
pub mod metrics;
pub mod prompts;
pub mod records;
pub mod report;
pub mod run;
pub mod table;
pub mod test_filter;
pub mod timing;

pub use error::EvalError;

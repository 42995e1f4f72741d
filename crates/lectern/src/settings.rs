//! Settings, layered: defaults, then the config file, then `LECTERN_*` environment
//! variables, then command-line flags.

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default request body limit: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Flags of `lectern serve`; each may also come from the environment or the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Config file (TOML): [server], [repository], [storage], [llm.*] and [pipelines.*].
    #[arg(long, env = "LECTERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model repository folder: <model>/<version>/model.onnx [default: ./models]
    #[arg(long, env = "LECTERN_MODELS")]
    pub models: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "LECTERN_LISTEN")]
    pub listen: Option<String>,
    /// Data folder for Lectern's own state [default: ./lectern-data]
    #[arg(long, env = "LECTERN_DATA")]
    pub data: Option<PathBuf>,
    /// Largest request body accepted, in bytes [default: 67108864]
    #[arg(long, env = "LECTERN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `lectern=debug`.
    #[arg(long, env = "LECTERN_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    repository: FileRepository,
    #[serde(default)]
    storage: FileStorage,
    /// LLM servers: read by the pipeline engine, accepted here.
    #[serde(default, rename = "llm")]
    _llm: Option<toml::Table>,
    /// Pipelines: read by the pipeline engine, accepted here.
    #[serde(default, rename = "pipelines")]
    _pipelines: Option<toml::Table>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileRepository {
    models: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    data: Option<PathBuf>,
}

/// The resolved settings of `lectern serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// The config file, whose `[llm]` and `[pipelines]` tables the pipeline engine reads.
    pub config: Option<PathBuf>,
    pub listen: String,
    pub models: PathBuf,
    pub data: PathBuf,
    pub max_body_bytes: usize,
    pub log: String,
}

impl ServeSettings {
    /// Layers the config file under the flags and environment that clap already merged.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        // Paths in the config file are relative to the file's folder.
        let base = args.config.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let from_file = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let settings = ServeSettings {
            config: args.config.clone(),
            listen: args.listen.or(file.server.listen).unwrap_or_else(|| DEFAULT_LISTEN.into()),
            models: args.models.or(from_file(file.repository.models)).unwrap_or_else(|| "models".into()),
            data: args.data.or(from_file(file.storage.data)).unwrap_or_else(|| "lectern-data".into()),
            max_body_bytes: args.max_body_bytes.or(file.server.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES),
            log: args.log,
        };
        anyhow::ensure!(settings.max_body_bytes > 0, "max_body_bytes must be at least 1");
        Ok(settings)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("lectern-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lectern.toml");
        std::fs::write(&path, "[server]\nlisten = \"0.0.0.0:9000\"\nmax_body_bytes = 10\n[repository]\nmodels = \"m\"\n").unwrap();
        let args = ServeArgs { config: Some(path.clone()), listen: Some("127.0.0.1:1".into()), ..Default::default() };
        let s = ServeSettings::resolve(args).unwrap();
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.max_body_bytes, 10);
        assert_eq!(s.models, dir.join("m"));
        assert_eq!(s.data, PathBuf::from("lectern-data"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = std::env::temp_dir().join(format!("lectern-settings-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lectern.toml");
        std::fs::write(&path, "[server]\nlistn = \"x\"\n").unwrap();
        let err = ServeSettings::resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

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
/// Default model upload limit: 4 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;

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
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, env = "LECTERN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or EC) of --tls-cert
    #[arg(long, env = "LECTERN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://DATA/lectern.db]
    #[arg(long, env = "LECTERN_DATABASE")]
    pub database: Option<String>,
    /// Object store for model artifacts: file://PATH or s3://BUCKET/PREFIX [default: file://DATA/objects]
    #[arg(long, env = "LECTERN_OBJECTS")]
    pub objects: Option<String>,
    /// Largest model upload accepted, in bytes [default: 4294967296]
    #[arg(long, env = "LECTERN_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
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
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
    database: Option<String>,
    objects: Option<String>,
    max_upload_bytes: Option<u64>,
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
    /// Database URL (`sqlite://` or `postgres://`).
    pub database: String,
    /// Object store URL (`file://` or `s3://`).
    pub objects: String,
    pub max_upload_bytes: u64,
    pub log: String,
    /// HTTPS instead of HTTP, when set.
    pub tls: Option<TlsSettings>,
}

/// The certificate chain and private key files of HTTPS.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
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
            database: String::new(),
            objects: String::new(),
            max_upload_bytes: args.max_upload_bytes.or(file.storage.max_upload_bytes).unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            log: args.log,
            tls: match (
                args.tls_cert.or(from_file(file.server.tls_cert)),
                args.tls_key.or(from_file(file.server.tls_key)),
            ) {
                (Some(cert), Some(key)) => Some(TlsSettings { cert, key }),
                (None, None) => None,
                (Some(_), None) => anyhow::bail!(
                    "a TLS certificate is set but no key: HTTPS needs both --tls-cert and --tls-key \
                     (LECTERN_TLS_CERT/LECTERN_TLS_KEY, [server] tls_cert/tls_key)"
                ),
                (None, Some(_)) => anyhow::bail!(
                    "a TLS key is set but no certificate: HTTPS needs both --tls-cert and --tls-key \
                     (LECTERN_TLS_CERT/LECTERN_TLS_KEY, [server] tls_cert/tls_key)"
                ),
            },
        };
        anyhow::ensure!(settings.max_body_bytes > 0, "max_body_bytes must be at least 1");
        let mut settings = settings;
        settings.database = args
            .database
            .or(file.storage.database)
            .unwrap_or_else(|| format!("sqlite://{}", settings.data.join("lectern.db").display()));
        settings.objects = args
            .objects
            .or(file.storage.objects)
            .unwrap_or_else(|| format!("file://{}", settings.data.join("objects").display()));
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
    fn tls_files_layer_and_go_together() {
        let dir = std::env::temp_dir().join(format!("lectern-settings-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lectern.toml");
        std::fs::write(&path, "[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n").unwrap();
        // From the file, relative to its folder.
        let s = ServeSettings::resolve(ServeArgs { config: Some(path.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.tls, Some(TlsSettings { cert: dir.join("tls/cert.pem"), key: dir.join("tls/key.pem") }));
        // A flag wins over the file for its own file only.
        let args = ServeArgs { config: Some(path.clone()), tls_key: Some("/k.pem".into()), ..Default::default() };
        let s = ServeSettings::resolve(args).unwrap();
        assert_eq!(s.tls, Some(TlsSettings { cert: dir.join("tls/cert.pem"), key: "/k.pem".into() }));
        // None anywhere: plain HTTP.
        assert_eq!(ServeSettings::resolve(ServeArgs::default()).unwrap().tls, None);
        // One without the other is a start-up error.
        let err =
            ServeSettings::resolve(ServeArgs { tls_cert: Some("c.pem".into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("no key"), "{err}");
        let err =
            ServeSettings::resolve(ServeArgs { tls_key: Some("k.pem".into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
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

//! Settings, layered: defaults, then the config file, then `LECTERN_*` environment
//! variables, then command-line flags.

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default request body limit: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Default model upload limit: 4 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;
/// Default time a client has to send a whole request head: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT_S: f64 = 10.0;
/// Default time a request waits for a model that loads on demand: 30 s.
pub const DEFAULT_MODEL_LOAD_WAIT_S: f64 = 30.0;
/// Default time a connection with no request in flight stays open: 60 s.
pub const DEFAULT_IDLE_TIMEOUT_S: f64 = 60.0;
/// File descriptors kept out of the default connection cap (database, models, logs).
const RESERVED_FILES: u64 = 256;
/// The default connection cap never exceeds this, whatever the open-files limit.
const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;

/// Flags of `lectern serve`; each may also come from the environment or the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Config file (TOML): [server], [repository], [storage], [llm.*], [pipelines.*] and [proxy.*].
    #[arg(long, env = "LECTERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model repository folder: <model>/<version>/model.onnx [default: ./models]
    #[arg(long, env = "LECTERN_MODELS")]
    pub models: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "LECTERN_LISTEN")]
    pub listen: Option<String>,
    /// Also serve the V2 protocol over gRPC (Triton's `inference.GRPCInferenceService`) on this
    /// address; port 0 picks a free port [default: off]
    #[arg(long, env = "LECTERN_GRPC_LISTEN", value_name = "ADDRESS")]
    pub grpc_listen: Option<String>,
    /// Memory the loaded models may hold together (e.g. 2GiB, 512MiB): a load that would go
    /// over it first unloads the least recently used unpinned models, which load again on
    /// their next request [default: no budget]
    #[arg(long, env = "LECTERN_MEMORY_BUDGET", value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Seconds a request waits for a model that loads on demand (lazy, or unloaded by the
    /// memory budget) before it gets 503 + Retry-After [default: 30]
    #[arg(long, env = "LECTERN_MODEL_LOAD_WAIT_S", value_name = "SECONDS")]
    pub model_load_wait_s: Option<f64>,
    /// Data folder for Lectern's own state [default: ./lectern-data]
    #[arg(long, env = "LECTERN_DATA")]
    pub data: Option<PathBuf>,
    /// Largest request body accepted, in bytes [default: 67108864]
    #[arg(long, env = "LECTERN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// The name `GET /v2` answers; "triton" for clients that check it [default: lectern]
    #[arg(long, env = "LECTERN_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// Seconds a client has to send a whole request head (from its first byte, or from the
    /// connection's opening for the first request) [default: 10]
    #[arg(long, env = "LECTERN_HEADER_READ_TIMEOUT_S", value_name = "SECONDS")]
    pub header_read_timeout_s: Option<f64>,
    /// Seconds a connection with no request in flight (or a stalled request body) stays open [default: 60]
    #[arg(long, env = "LECTERN_IDLE_TIMEOUT_S", value_name = "SECONDS")]
    pub idle_timeout_s: Option<f64>,
    /// Connections served at once; more wait to be accepted [default: the open-files limit
    /// (raised to its hard limit at start-up) less 256, at most 10000]
    #[arg(long, env = "LECTERN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
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
    /// Training jobs run at once, each in its own low-priority process [default: 1]
    #[arg(long, env = "LECTERN_TRAINING_WORKERS")]
    pub training_workers: Option<usize>,
    /// `auto`: API keys and/or OIDC tokens are required once any exist (without either, only
    /// a loopback address is served); `none`: no authentication at all [default: auto]
    #[arg(long, env = "LECTERN_AUTH")]
    pub auth: Option<String>,
    /// OIDC issuer URL whose signed tokens (JWT) are accepted
    #[arg(long, env = "LECTERN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Audience the tokens must name
    #[arg(long, env = "LECTERN_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Claim holding the role (a dotted path for nested claims) [default: role]
    #[arg(long, env = "LECTERN_OIDC_ROLE_CLAIM")]
    pub oidc_role_claim: Option<String>,
    /// Key set URL, when not found through the issuer's discovery document
    #[arg(long, env = "LECTERN_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// The dashboard's OIDC client id (sign-in with the issuer; its secret, if any, only from
    /// LECTERN_OIDC_CLIENT_SECRET)
    #[arg(long, env = "LECTERN_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Let anyone infer without a credential (management still needs one)
    #[arg(long, env = "LECTERN_OPEN_INFERENCE")]
    pub open_inference: Option<bool>,
    /// Requests per second allowed to each key or token subject (0: no limit) [default: 0]
    #[arg(long, env = "LECTERN_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// Requests a key may make at once above its rate [default: 2 x rate, at least 1]
    #[arg(long, env = "LECTERN_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `lectern=debug`.
    #[arg(long, env = "LECTERN_LOG", default_value = "info")]
    pub log: String,
    /// NATS server of a cluster: models are then served by `lectern worker` processes
    /// (e.g. nats://127.0.0.1:4222)
    #[arg(long, env = "LECTERN_NATS")]
    pub nats: Option<String>,
    /// Name of the cluster (its key-value bucket and subject prefix) [default: lectern]
    #[arg(long, env = "LECTERN_CLUSTER")]
    pub cluster: Option<String>,
    /// Longest wait for a worker's answer, in seconds [default: 30]
    #[arg(long, env = "LECTERN_CLUSTER_TIMEOUT_S", value_name = "SECONDS")]
    pub cluster_timeout_s: Option<f64>,
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
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    training: FileTraining,
    /// LLM servers: read by the pipeline engine, accepted here.
    #[serde(default, rename = "llm")]
    _llm: Option<toml::Table>,
    /// Pipelines: read by the pipeline engine, accepted here.
    #[serde(default, rename = "pipelines")]
    _pipelines: Option<toml::Table>,
    /// Scheduled jobs: read by the jobs service, accepted here.
    #[serde(default, rename = "jobs")]
    _jobs: Option<toml::Table>,
    /// The caching proxy's upstreams: read by lectern-proxy, accepted here.
    #[serde(default, rename = "proxy")]
    _proxy: Option<toml::Table>,
    /// A gateway's cluster (`nats`, `name`, `request_timeout_s`, `retries`).
    #[serde(default)]
    cluster: FileCluster,
    /// The dashboard: read by lectern-web, accepted here.
    #[serde(default, rename = "dashboard")]
    _dashboard: Option<toml::Table>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    grpc_listen: Option<String>,
    max_body_bytes: Option<usize>,
    name: Option<String>,
    header_read_timeout_s: Option<f64>,
    idle_timeout_s: Option<f64>,
    max_connections: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    memory_budget: Option<String>,
    model_load_wait_s: Option<f64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    mode: Option<String>,
    oidc_issuer: Option<String>,
    oidc_audience: Option<String>,
    oidc_role_claim: Option<String>,
    oidc_jwks_url: Option<String>,
    oidc_client_id: Option<String>,
    open_inference: Option<bool>,
    rate_limit: Option<f64>,
    rate_burst: Option<u32>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileRepository {
    models: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileTraining {
    workers: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    data: Option<PathBuf>,
    database: Option<String>,
    objects: Option<String>,
    max_upload_bytes: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    nats: Option<String>,
    name: Option<String>,
    request_timeout_s: Option<f64>,
    retries: Option<usize>,
}

/// A gateway's cluster, resolved from `--nats`/`--cluster` and the `[cluster]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub nats: String,
    pub name: Option<String>,
    pub request_timeout: Duration,
    pub retries: usize,
}

/// The resolved settings of `lectern serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// The config file, whose `[llm]` and `[pipelines]` tables the pipeline engine reads.
    pub config: Option<PathBuf>,
    pub listen: String,
    /// The gRPC listener's address, when gRPC is on.
    pub grpc_listen: Option<String>,
    pub models: PathBuf,
    pub data: PathBuf,
    pub max_body_bytes: usize,
    /// The name `GET /v2` answers.
    pub server_name: String,
    /// Time to send a request head.
    pub header_read_timeout: Duration,
    /// Time a connection may stay idle.
    pub idle_timeout: Duration,
    /// Connections served at once; `None`: from the open-files limit at start-up.
    pub max_connections: Option<usize>,
    /// Bytes the loaded models may hold together, when set.
    pub memory_budget: Option<u64>,
    /// How long a request waits for a model that loads on demand.
    pub model_load_wait: Duration,
    /// Database URL (`sqlite://` or `postgres://`).
    pub database: String,
    /// Object store URL (`file://` or `s3://`).
    pub objects: String,
    pub max_upload_bytes: u64,
    /// Training jobs run at once.
    pub training_workers: usize,
    pub log: String,
    /// HTTPS instead of HTTP, when set.
    pub tls: Option<TlsSettings>,
    pub auth: AuthConfig,
    /// A cluster gateway's settings, when `--nats` is set.
    pub cluster: Option<ClusterSettings>,
}

/// Who may call, resolved from flags, environment and the `[auth]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// `--auth none`.
    pub disabled: bool,
    /// (issuer, audience, role claim, key set URL).
    pub oidc: Option<OidcSettings>,
    pub open_inference: bool,
    /// (requests per second, burst); `None`: no limit.
    pub rate_limit: Option<(f64, u32)>,
}

/// The OIDC issuer whose tokens are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub role_claim: String,
    pub jwks_url: Option<String>,
    /// The dashboard's OIDC client id.
    pub client_id: Option<String>,
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
        let args_auth = FileAuth {
            mode: args.auth.clone(),
            oidc_issuer: args.oidc_issuer.clone(),
            oidc_audience: args.oidc_audience.clone(),
            oidc_role_claim: args.oidc_role_claim.clone(),
            oidc_jwks_url: args.oidc_jwks_url.clone(),
            oidc_client_id: args.oidc_client_id.clone(),
            open_inference: args.open_inference,
            rate_limit: args.rate_limit,
            rate_burst: args.rate_burst,
        };
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
            grpc_listen: args.grpc_listen.or(file.server.grpc_listen),
            models: args.models.or(from_file(file.repository.models)).unwrap_or_else(|| "models".into()),
            data: args.data.or(from_file(file.storage.data)).unwrap_or_else(|| "lectern-data".into()),
            max_body_bytes: args.max_body_bytes.or(file.server.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES),
            server_name: args.server_name.or(file.server.name).unwrap_or_else(|| "lectern".into()),
            header_read_timeout: seconds(
                "header_read_timeout_s",
                args.header_read_timeout_s
                    .or(file.server.header_read_timeout_s)
                    .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_S),
            )?,
            idle_timeout: seconds(
                "idle_timeout_s",
                args.idle_timeout_s.or(file.server.idle_timeout_s).unwrap_or(DEFAULT_IDLE_TIMEOUT_S),
            )?,
            max_connections: args.max_connections.or(file.server.max_connections),
            memory_budget: match args.memory_budget.or(file.server.memory_budget) {
                Some(text) => Some(
                    parse_size(&text)
                        .with_context(|| format!("memory_budget: cannot read '{text}' (e.g. 2GiB, 512MiB)"))?,
                ),
                None => None,
            },
            model_load_wait: seconds(
                "model_load_wait_s",
                args.model_load_wait_s.or(file.server.model_load_wait_s).unwrap_or(DEFAULT_MODEL_LOAD_WAIT_S),
            )?,
            auth: AuthConfig::default(),
            cluster: match args.nats.or(file.cluster.nats) {
                None => None,
                Some(nats) => Some(ClusterSettings {
                    nats,
                    name: args.cluster.or(file.cluster.name),
                    request_timeout: seconds(
                        "cluster_timeout_s",
                        args.cluster_timeout_s.or(file.cluster.request_timeout_s).unwrap_or(30.0),
                    )?,
                    retries: file.cluster.retries.unwrap_or(2),
                }),
            },
            database: String::new(),
            objects: String::new(),
            max_upload_bytes: args
                .max_upload_bytes
                .or(file.storage.max_upload_bytes)
                .unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            training_workers: match args.training_workers.or(file.training.workers).unwrap_or(1) {
                0 => anyhow::bail!("--training-workers must be at least 1"),
                n => n,
            },
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
        anyhow::ensure!(settings.max_connections != Some(0), "max_connections must be at least 1");
        let mut settings = settings;
        settings.auth = resolve_auth(&args_auth, file.auth)?;
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

/// `8GiB`, `512MiB`, `2G`, `1000000` (bytes).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => anyhow::bail!("unknown unit '{other}'"),
    };
    anyhow::ensure!(number.is_finite() && number > 0.0, "the size must be positive");
    let bytes = (number * scale as f64) as u64;
    anyhow::ensure!(bytes > 0, "the size must be at least one byte");
    Ok(bytes)
}

/// A positive, finite number of seconds.
fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(value.is_finite() && value > 0.0, "{name} must be a positive number of seconds, not {value}");
    Ok(Duration::from_secs_f64(value))
}

/// The default connection cap for an open-files limit (`None`: unknown).
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => limit.saturating_sub(RESERVED_FILES).clamp(64, MAX_DEFAULT_CONNECTIONS) as usize,
        None => 1024,
    }
}

/// Flags and environment (`flags`) over the `[auth]` table (`file`).
fn resolve_auth(flags: &FileAuth, file: FileAuth) -> anyhow::Result<AuthConfig> {
    let mode = flags.mode.clone().or(file.mode).unwrap_or_else(|| "auto".into());
    let disabled = match mode.as_str() {
        "auto" => false,
        "none" => true,
        other => anyhow::bail!("--auth must be 'auto' or 'none', not '{other}'"),
    };
    let issuer = flags.oidc_issuer.clone().or(file.oidc_issuer);
    let audience = flags.oidc_audience.clone().or(file.oidc_audience);
    let oidc = match (issuer, audience) {
        (None, None) => None,
        (Some(issuer), Some(audience)) => Some(OidcSettings {
            issuer,
            audience,
            role_claim: flags.oidc_role_claim.clone().or(file.oidc_role_claim).unwrap_or_else(|| "role".into()),
            jwks_url: flags.oidc_jwks_url.clone().or(file.oidc_jwks_url),
            client_id: flags.oidc_client_id.clone().or(file.oidc_client_id),
        }),
        _ => anyhow::bail!("OIDC needs both an issuer (--oidc-issuer) and an audience (--oidc-audience)"),
    };
    let rate = flags.rate_limit.or(file.rate_limit).unwrap_or(0.0);
    anyhow::ensure!(
        rate.is_finite() && rate >= 0.0,
        "--rate-limit must be a number of requests per second, 0 for none"
    );
    let burst = flags.rate_burst.or(file.rate_burst).unwrap_or(((rate * 2.0).ceil() as u32).max(1));
    anyhow::ensure!(burst >= 1, "--rate-burst must be at least 1");
    Ok(AuthConfig {
        disabled,
        oidc,
        open_inference: flags.open_inference.or(file.open_inference).unwrap_or(false),
        rate_limit: (rate > 0.0).then_some((rate, burst)),
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("lectern-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lectern.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"0.0.0.0:9000\"\nmax_body_bytes = 10\n[repository]\nmodels = \"m\"\n",
        )
        .unwrap();
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
    fn connection_limits_layer_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("lectern-settings-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lectern.toml");
        std::fs::write(&path, "[server]\nheader_read_timeout_s = 2.5\nidle_timeout_s = 30\nmax_connections = 50\n")
            .unwrap();
        let s = ServeSettings::resolve(ServeArgs { config: Some(path.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections, Some(50));
        let args = ServeArgs { config: Some(path), idle_timeout_s: Some(0.5), ..Default::default() };
        assert_eq!(ServeSettings::resolve(args).unwrap().idle_timeout, Duration::from_millis(500));
        let d = ServeSettings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(
            (d.header_read_timeout, d.idle_timeout, d.max_connections),
            (Duration::from_secs(10), Duration::from_secs(60), None)
        );
        for bad in [
            ServeArgs { header_read_timeout_s: Some(0.0), ..Default::default() },
            ServeArgs { idle_timeout_s: Some(f64::NAN), ..Default::default() },
            ServeArgs { max_connections: Some(0), ..Default::default() },
        ] {
            assert!(ServeSettings::resolve(bad).is_err());
        }
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(1 << 20)), 10_000);
        assert_eq!(default_max_connections(Some(100)), 64);
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

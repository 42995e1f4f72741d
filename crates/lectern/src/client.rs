//! The CLI's HTTP client: where the server is, how a command's request is sent, and how its
//! failures become exit codes. The credential (`--key`) is sent as `Authorization: Bearer` and
//! is never printed, not even in an error message.

use clap::Args;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and how to talk to it; shared by `model` and `keys`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// URL of the Lectern server
    #[arg(long, env = "LECTERN_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API key or OIDC token, sent as `Authorization: Bearer`; prefer the environment variable
    /// (a flag is visible to other users of the machine)
    #[arg(long, env = "LECTERN_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub key: Option<String>,
    /// PEM certificate to trust for an https:// URL, besides the public roots (self-signed servers)
    #[arg(long, env = "LECTERN_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

/// Runs a command on a current-thread runtime and turns its outcome into an exit code. Every
/// message is scrubbed of the credential before it is printed.
pub(crate) fn block_on<F>(client: &ClientArgs, command: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let outcome = runtime.block_on(command);
    std::io::stdout().flush().ok();
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {}", redact(&failure.to_string(), client.key.as_deref()));
            failure.exit_code()
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error status.
    Refused { status: StatusCode, message: String, retry_after: Option<String> },
    /// No answer: connection refused, name not resolved, TLS handshake failed, timeout.
    Unreachable { url: String, detail: String },
    /// A local input problem (a file that cannot be read, a bad --url): exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused { .. } | Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
        }
    }

    pub(crate) fn is_status(&self, wanted: StatusCode) -> bool {
        matches!(self, Failure::Refused { status, .. } if *status == wanted)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused { status, message, retry_after } => {
                write!(f, "the server refused the request (HTTP {status}): {message}")?;
                if let Some(wait) = retry_after {
                    write!(f, " (retry after {wait} s)")?;
                }
                Ok(())
            }
            Failure::Unreachable { url, detail } => write!(f, "cannot reach the server at {url}: {detail}"),
            Failure::Usage(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

/// `text` with every occurrence of the credential replaced.
/// A local file opened for an upload.
pub(crate) struct LocalFile {
    file: tokio::fs::File,
    size: u64,
}

/// Opens a local file to upload; a missing or unreadable one is a usage error.
pub(crate) async fn open_file(path: &std::path::Path) -> Result<LocalFile, Failure> {
    let unreadable = |e: std::io::Error| Failure::Usage(format!("cannot read {}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let metadata = file.metadata().await.map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(Failure::Usage(format!("{} is not a file", path.display())));
    }
    Ok(LocalFile { file, size: metadata.len() })
}

pub(crate) fn redact(text: &str, key: Option<&str>) -> String {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => text.replace(k, "[credential]"),
        None => text.to_string(),
    }
}

/// The HTTP client of one command.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    /// The base URL as given, for messages.
    shown: String,
    auth: Option<HeaderValue>,
    /// `--json`: print the server's answer as it is.
    pub(crate) json: bool,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> Result<Self, Failure> {
        let shown = args.url.trim_end_matches('/').to_string();
        let base =
            Url::parse(&args.url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host()).ok_or_else(
                || Failure::Usage(format!("invalid --url '{}': give http://HOST:PORT or https://HOST:PORT", args.url)),
            )?;
        let auth = match args.key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    Failure::Usage("the key (--key / LECTERN_KEY) holds characters a header cannot carry".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("lectern-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect could carry the credential elsewhere: follow none.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::Usage(format!("cannot read --ca-cert {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Failure::Usage(format!("--ca-cert {} holds no PEM certificate: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Failure::Usage(format!("--ca-cert {} holds no PEM certificate", path.display())));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http =
            builder.build().map_err(|e| Failure::Failed(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        Ok(Client { http, base, shown, auth, json: args.json })
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.auth {
            Some(value) => builder.header(AUTHORIZATION, value.clone()),
            None => builder,
        }
    }

    /// Sends a request; a 2xx answer's JSON body (`null` when empty), else the failure.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Failed(format!(
                    "the server at {} answered {status} with a body that is not JSON: {e}",
                    self.shown
                ))
            });
        }
        let message = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) if o.get("error").is_some_and(Value::is_string) => {
                o["error"].as_str().unwrap_or_default().to_string()
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_string()
                } else {
                    text.chars().take(300).collect()
                }
            }
        };
        Err(Failure::Refused { status, message, retry_after })
    }

    /// Streams a local file as the body of a POST to `url` (a progress bar on stderr when it
    /// is a terminal) and returns the answer.
    pub(crate) async fn upload(&self, url: Url, file: LocalFile, content_type: &str) -> Result<Value, Failure> {
        use futures_util::StreamExt;
        use std::io::IsTerminal;
        let LocalFile { file, size } = file;
        let progress = std::sync::Arc::new(crate::output::Progress::new(size, std::io::stderr().is_terminal()));
        let counter = progress.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.advance(bytes.len() as u64);
            }
        });
        let request = self
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            // The length up front lets the server refuse an oversize file before it is sent.
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        let answer = self.send(request).await;
        progress.finish();
        answer.map_err(|e| match e {
            // A server that refuses an upload early (over its size limit) may close the
            // connection before its answer can be read: say what probably happened.
            Failure::Failed(message) if progress.sent() < progress.total() => Failure::Failed(format!(
                "{message}\nthe server closed the connection after about {} of {} bytes of the upload: the file may \
                 be larger than the server's limit (lectern serve --max-upload-bytes)",
                progress.sent(),
                progress.total()
            )),
            other => other,
        })
    }

    pub(crate) async fn get(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(self.request(Method::GET, self.url(segments))).await
    }

    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(self.request(Method::DELETE, self.url(segments))).await
    }

    pub(crate) async fn send_json(&self, method: Method, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(self.request(method, self.url(segments)).json(body)).await
    }

    /// A transport error: unreachable (exit 3) when no connection was made.
    fn transport(&self, e: reqwest::Error) -> Failure {
        let detail = chain(&e);
        if e.is_connect() || e.is_timeout() {
            Failure::Unreachable { url: self.shown.clone(), detail }
        } else {
            Failure::Failed(format!("the request to {} failed: {detail}", self.shown))
        }
    }
}

/// An error with its causes, without the request URL.
fn chain(e: &reqwest::Error) -> String {
    let mut parts = vec![];
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_scrubbed_from_messages() {
        assert_eq!(redact("bad lk_abc_def here", Some("lk_abc_def")), "bad [credential] here");
        assert_eq!(redact("nothing", None), "nothing");
        assert_eq!(redact("x", Some("  ")), "x");
    }

    #[test]
    fn urls_encode_each_segment_under_the_base_path() {
        let args = ClientArgs { url: "http://h:1/prefix/".into(), key: None, ca_cert: None, json: false };
        let client = Client::new(&args).unwrap();
        assert_eq!(client.url(&["v1", "models", "a b/c"]).as_str(), "http://h:1/prefix/v1/models/a%20b%2Fc");
        let args = ClientArgs { url: "http://h:1".into(), ..args };
        assert_eq!(Client::new(&args).unwrap().url(&["v1", "keys"]).as_str(), "http://h:1/v1/keys");
        let args = ClientArgs { url: "ftp://h".into(), key: None, ca_cert: None, json: false };
        assert!(matches!(Client::new(&args), Err(Failure::Usage(_))));
    }
}

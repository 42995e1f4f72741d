//! The proxy against a small local upstream: hits, misses, stale answers, coalescing, limits,
//! oversized and silent upstreams, and what headers cross.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lectern_proxy::{parse_config, CacheStatus, Proxy, ProxyError, ProxyRequest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the upstream behaves.
#[derive(Clone)]
enum Mode {
    Answer(u16, &'static str),
    /// Answers after a delay.
    Slow(Duration),
    /// Closes the connection without answering.
    Down,
    /// Declares a 10 GB body and sends a little of it.
    Huge,
}

struct Upstream {
    url: String,
    requests: AtomicUsize,
    mode: Mutex<Mode>,
    /// The request heads received.
    heads: Mutex<Vec<String>>,
}

impl Upstream {
    async fn start() -> Arc<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/base/", listener.local_addr().unwrap());
        let upstream = Arc::new(Upstream {
            url,
            requests: AtomicUsize::new(0),
            mode: Mutex::new(Mode::Answer(200, "hello")),
            heads: Mutex::new(Vec::new()),
        });
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(server.clone().serve(socket));
            }
        });
        upstream
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn serve(self: Arc<Self>, mut socket: tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
        let mode = self.mode.lock().unwrap().clone();
        let (status, body) = match mode {
            Mode::Answer(status, body) => (status, body.to_string()),
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                (200, "slow".to_string())
            }
            Mode::Down => return,
            Mode::Huge => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&[b'x'; 65536]).await;
                return;
            }
        };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nSet-Cookie: id=1\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    }
}

fn proxy(upstream: &Upstream, settings: &str) -> Proxy {
    let text =
        format!("[proxy.up]\nurl = '{}'\nsecret_headers = {{ 'X-Upstream-Key' = 'KEY' }}\n{settings}\n", upstream.url);
    Proxy::new(parse_config(&text, "test.toml", |_| Some("s3cret".into())).unwrap()).unwrap()
}

async fn get(proxy: &Proxy, target: &str) -> Result<lectern_proxy::ProxyResponse, ProxyError> {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer lk_client_credential"));
    headers.insert("x-client", HeaderValue::from_static("1"));
    proxy.forward("up", ProxyRequest { method: &Method::GET, target, headers: &headers, body: Bytes::new() }).await
}

#[tokio::test]
async fn hits_misses_and_stale_answers() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, "cache_ttl = '200ms'\nstale_if_error = '1h'");
    let first = get(&proxy, "a?x=1").await.unwrap();
    assert_eq!((first.status, first.cache, &first.body[..]), (StatusCode::OK, CacheStatus::Miss, &b"hello"[..]));
    assert_eq!(first.headers["x-lectern-cache"], "miss");
    assert!(first.headers.get("set-cookie").is_none());
    let second = get(&proxy, "a?x=1").await.unwrap();
    assert_eq!((second.cache, upstream.count()), (CacheStatus::Hit, 1));
    assert_eq!(get(&proxy, "a?x=2").await.unwrap().cache, CacheStatus::Miss, "the query is part of the key");
    tokio::time::sleep(Duration::from_millis(250)).await;
    upstream.set(Mode::Down);
    let stale = get(&proxy, "a?x=1").await.unwrap();
    assert_eq!((stale.cache, &stale.body[..]), (CacheStatus::Stale, &b"hello"[..]));
    upstream.set(Mode::Answer(503, "down for maintenance"));
    assert_eq!(get(&proxy, "a?x=1").await.unwrap().cache, CacheStatus::Stale);
    // nothing cached: the upstream's failure is the answer
    assert!(matches!(get(&proxy, "b").await, Ok(r) if r.status == StatusCode::SERVICE_UNAVAILABLE));
    upstream.set(Mode::Down);
    assert!(matches!(get(&proxy, "b").await, Err(ProxyError::Upstream { .. })));
    upstream.set(Mode::Answer(200, "new"));
    let fresh = get(&proxy, "a?x=1").await.unwrap();
    assert_eq!((fresh.cache, &fresh.body[..]), (CacheStatus::Miss, &b"new"[..]));
}

#[tokio::test]
async fn identical_misses_share_one_upstream_request() {
    let upstream = Upstream::start().await;
    upstream.set(Mode::Slow(Duration::from_millis(200)));
    let proxy = Arc::new(proxy(&upstream, "cache_ttl = '1m'"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move { get(&proxy, "same").await.unwrap().body }));
    }
    for task in tasks {
        assert_eq!(&task.await.unwrap()[..], b"slow");
    }
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn secrets_go_upstream_and_client_credentials_do_not() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, "");
    get(&proxy, "x").await.unwrap();
    let head = upstream.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /base/x http/1.1"), "{head}");
    assert!(head.contains("x-upstream-key: s3cret") && head.contains("x-client: 1"), "{head}");
    assert!(!head.contains("lk_client_credential"), "{head}");
}

#[tokio::test]
async fn oversized_silent_and_busy_upstreams() {
    let upstream = Upstream::start().await;
    upstream.set(Mode::Huge);
    let proxy = proxy(&upstream, "timeout = '300ms'\nmax_concurrency = 1");
    let started = Instant::now();
    let error = get(&proxy, "huge").await.unwrap_err();
    assert!(matches!(&error, ProxyError::Upstream { reason, .. } if reason.contains("max_response_bytes")), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // One slot: taken for the 300 ms timeout by a first request, then by the second in
    // line; a third waits its 300 ms for it and is refused.
    upstream.set(Mode::Slow(Duration::from_secs(5)));
    let proxy = Arc::new(proxy);
    let mut holders = Vec::new();
    for target in ["slow-1", "slow-2"] {
        let proxy = proxy.clone();
        holders.push(tokio::spawn(async move { get(&proxy, target).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let third = get(&proxy, "slow-3").await.unwrap_err();
    assert!(matches!(third, ProxyError::Busy { .. }), "{third}");
    for holder in holders {
        let error = holder.await.unwrap().unwrap_err();
        assert!(matches!(error, ProxyError::Timeout { .. }), "{error}");
    }
}

#[tokio::test]
async fn the_rate_limit_applies_to_misses_only() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, "rate_limit = 0.5\nrate_burst = 1");
    get(&proxy, "one").await.unwrap();
    assert_eq!(get(&proxy, "one").await.unwrap().cache, CacheStatus::Hit);
    assert!(matches!(get(&proxy, "two").await, Err(ProxyError::Busy { .. })));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn unsafe_paths_and_methods_are_refused_before_anything_is_sent() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, "");
    for target in ["../x", "a/%2e%2e/b", "%2F..%2Fetc", "a\\b"] {
        assert!(matches!(get(&proxy, target).await, Err(ProxyError::InvalidPath(_))), "{target}");
    }
    let headers = HeaderMap::new();
    let post = ProxyRequest { method: &Method::POST, target: "x", headers: &headers, body: Bytes::new() };
    assert!(matches!(proxy.forward("up", post).await, Err(ProxyError::MethodNotAllowed { .. })));
    let other = ProxyRequest { method: &Method::GET, target: "x", headers: &headers, body: Bytes::new() };
    assert!(matches!(proxy.forward("other", other).await, Err(ProxyError::NotFound(_))));
    assert_eq!(upstream.count(), 0);
}

//! Which headers cross the proxy. Never forwarded either way: hop-by-hop headers (and those
//! a `Connection` header names), `Set-Cookie`, and credentials (`Authorization`, `Cookie`,
//! `X-API-Key`, `Proxy-Authorization`). Upstream: not the client's `Host`, `Content-Length`
//! or `Accept-Encoding` either (the cache keeps one identity-encoded answer per target),
//! and the configured headers win. Back to the client: nothing that names or carries a
//! secret header, and a `Location` only when it stays under the base URL (as a proxy path).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

/// Headers that only concern one connection (RFC 9110 7.6.1, and the usual extras).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Credentials and cookies: never forwarded either way.
const PRIVATE: [&str; 5] = ["authorization", "cookie", "set-cookie", "set-cookie2", "x-api-key"];

/// Set again by each side (the body's length, the client's host and encodings).
const UPSTREAM_SETS: [&str; 4] = ["host", "content-length", "accept-encoding", "expect"];

/// The cache header: only the proxy sets it.
pub const CACHE_HEADER: &str = "x-lectern-cache";

fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case(name.as_str())))
}

fn never_forwarded(headers: &HeaderMap, name: &HeaderName) -> bool {
    let name_str = name.as_str();
    HOP_BY_HOP.contains(&name_str) || PRIVATE.contains(&name_str) || named_by_connection(headers, name)
}

/// The headers sent upstream: the client's end-to-end headers, then the upstream's own.
pub fn to_upstream(client: &HeaderMap, plain: &HeaderMap, secret: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + plain.len() + secret.len());
    for (name, value) in client {
        let set_here = UPSTREAM_SETS.contains(&name.as_str()) || name.as_str() == CACHE_HEADER;
        if !set_here && !never_forwarded(client, name) && !plain.contains_key(name) && !secret.contains_key(name) {
            out.append(name.clone(), value.clone());
        }
    }
    for (name, value) in plain.iter().chain(secret) {
        out.insert(name.clone(), value.clone());
    }
    out
}

/// What the client gets of the upstream's headers.
pub struct ToClient<'a> {
    /// The upstream's secret headers (their names and values never go back).
    pub secret: &'a HeaderMap,
    /// The base URL and the upstream's name, to map a `Location` under the base to a proxy path.
    pub base: &'a Url,
    pub name: &'a str,
    /// The URL that was requested (a relative `Location` is resolved against it).
    pub requested: &'a Url,
    /// Keep `Content-Length` (a HEAD answer has no body to count).
    pub keep_length: bool,
}

impl ToClient<'_> {
    pub fn filter(&self, upstream: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(upstream.len());
        for (name, value) in upstream {
            let dropped = never_forwarded(upstream, name)
                || (name == header::CONTENT_LENGTH && !self.keep_length)
                || name.as_str() == CACHE_HEADER
                || self.secret.contains_key(name)
                || self.carries_a_secret(value);
            if dropped {
                continue;
            }
            if name == header::LOCATION {
                if let Some(location) = self.location(value) {
                    out.append(name.clone(), location);
                }
                continue;
            }
            out.append(name.clone(), value.clone());
        }
        out
    }

    fn carries_a_secret(&self, value: &HeaderValue) -> bool {
        let value = value.as_bytes();
        self.secret.values().any(|secret| {
            let secret = secret.as_bytes();
            !secret.is_empty() && value.windows(secret.len()).any(|w| w == secret)
        })
    }

    /// A `Location` under the base URL, as the proxy path that reaches it.
    fn location(&self, value: &HeaderValue) -> Option<HeaderValue> {
        let target = self.requested.join(value.to_str().ok()?).ok()?;
        let rest = crate::path::under_base(self.base, &target)?;
        HeaderValue::from_str(&format!("/proxy/{}/{rest}", self.name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn client_credentials_and_hop_by_hop_headers_stay_here() {
        let client = map(&[
            ("authorization", "Bearer lk_client"),
            ("x-api-key", "lk_client"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("host", "lectern"),
            ("accept-encoding", "gzip"),
            ("accept", "text/plain"),
            ("x-trace", "abc"),
            ("x-upstream-key", "forged"),
        ]);
        let plain = map(&[("accept", "application/json")]);
        let secret = map(&[("x-upstream-key", "s3cret")]);
        let out = to_upstream(&client, &plain, &secret);
        let names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["x-trace", "accept", "x-upstream-key"]);
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["x-upstream-key"], "s3cret");
    }

    #[test]
    fn secrets_cookies_and_foreign_locations_do_not_come_back() {
        let base = Url::parse("http://up.example/api/").unwrap();
        let requested = Url::parse("http://up.example/api/a/b").unwrap();
        let secret = map(&[("x-upstream-key", "s3cret")]);
        let filter = ToClient { secret: &secret, base: &base, name: "w", requested: &requested, keep_length: false };
        let upstream = map(&[
            ("set-cookie", "id=1"),
            ("x-upstream-key", "s3cret"),
            ("x-echo", "key was s3cret!"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("x-lectern-cache", "hit"),
            ("content-type", "text/plain"),
            ("location", "../c?x=1"),
        ]);
        let out = filter.filter(&upstream);
        let names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["content-type", "location"]);
        assert_eq!(out["location"], "/proxy/w/c?x=1");
        for outside in ["http://evil.example/api/x", "/other/x", "../../x"] {
            let out = filter.filter(&map(&[("location", outside)]));
            assert!(out.get("location").is_none(), "{outside}");
        }
    }
}

//! Path safety: the part of a request path after `/proxy/{name}/` is appended to the base
//! URL's path, so it must not climb out of it. Refused, raw or percent-encoded: `.` and `..`
//! segments, encoded slashes and backslashes (`%2F`, `%5C`), backslashes, control characters
//! and malformed escapes; and, last, any URL that does not start with the base URL.

use crate::error::ProxyError;
use reqwest::Url;

/// Checks the raw (still percent-encoded) path; a path of plain characters costs one scan.
pub fn check(path: &str) -> Result<(), ProxyError> {
    if path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'~' | b'=' | b',')) {
        return Ok(());
    }
    path.split('/').try_for_each(check_segment)
}

fn refuse(why: &str) -> Result<(), ProxyError> {
    Err(ProxyError::InvalidPath(format!("the path may not contain {why}")))
}

fn check_segment(segment: &str) -> Result<(), ProxyError> {
    // Only whether the decoded segment is `.` or `..` matters: its length, and if all dots.
    let (mut decoded_len, mut all_dots) = (0usize, true);
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return refuse("a malformed percent-escape");
                };
                if matches!(value, b'/' | b'\\') {
                    return refuse("an encoded slash or backslash (%2F, %5C)");
                }
                i += 3;
                value
            }
            b'\\' => return refuse("a backslash"),
            other => {
                i += 1;
                other
            }
        };
        if byte < 0x20 || byte == 0x7f {
            return refuse("a control character");
        }
        decoded_len += 1;
        all_dots &= byte == b'.';
    }
    if all_dots && matches!(decoded_len, 1 | 2) {
        return refuse("a '.' or '..' segment");
    }
    Ok(())
}

/// The upstream URL of a checked path and the request's raw query: the base URL, the path
/// appended to it, and the query. Refused when the result is not under the base URL.
pub fn upstream_url(base: &Url, path: &str, query: Option<&str>) -> Result<Url, ProxyError> {
    let mut text = String::with_capacity(base.as_str().len() + path.len() + query.map_or(0, |q| q.len() + 1));
    text.push_str(base.as_str());
    text.push_str(path);
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    let url = Url::parse(&text).map_err(|e| ProxyError::InvalidPath(format!("not a valid URL path: {e}")))?;
    let under_base = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.path().starts_with(base.path());
    if !under_base {
        return Err(ProxyError::InvalidPath("the path leaves the upstream's base URL".into()));
    }
    Ok(url)
}

/// The proxy path (after `/proxy/{name}/`) of an upstream URL, when it is under the base URL
/// (to rewrite a redirect's `Location`); `None` otherwise.
pub fn under_base<'a>(base: &Url, url: &'a Url) -> Option<&'a str> {
    let same_origin = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    let rest = url.as_str().strip_prefix(base.as_str())?;
    (same_origin && check(rest.split(['?', '#']).next().unwrap_or("")).is_ok()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass() {
        for path in
            ["", "a", "forecast/today", "a/b-c_d~e", "a.json", "x/..y", "...", "a%20b", "%7Euser", "a;b=c", "a//b"]
        {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn paths_that_climb_or_smuggle_are_refused() {
        for path in [
            "..",
            "../etc/passwd",
            "a/../../b",
            "a/./b",
            ".",
            "a/.",
            "%2e%2e/x",
            "%2E%2E/x",
            ".%2e/x",
            "%2e/x",
            "a%2F..%2Fb",
            "%2F..",
            "a%2fb",
            "a%5Cb",
            "a\\b",
            "..\\x",
            "a%00b",
            "a%0d%0aX-Injected:1",
            "a%zz",
            "a%2",
        ] {
            assert!(matches!(check(path), Err(ProxyError::InvalidPath(_))), "{path} passed");
        }
    }

    #[test]
    fn urls_stay_under_the_base() {
        let base = Url::parse("https://api.example.com/v1/").unwrap();
        let url = upstream_url(&base, "forecast/today", Some("city=Paris&x=%2F")).unwrap();
        assert_eq!(url.as_str(), "https://api.example.com/v1/forecast/today?city=Paris&x=%2F");
        // an absolute URL as a path is only a path under the base
        let url = upstream_url(&base, "http://evil.example/x", None).unwrap();
        assert_eq!(url.host_str(), Some("api.example.com"));
        assert!(url.path().starts_with("/v1/"));
        let url = upstream_url(&base, "//evil.example/x", None).unwrap();
        assert_eq!(url.host_str(), Some("api.example.com"));
    }

    #[test]
    fn redirects_under_the_base_map_back_to_proxy_paths() {
        let base = Url::parse("https://api.example.com/v1/").unwrap();
        let inside = Url::parse("https://api.example.com/v1/new/place?a=1").unwrap();
        assert_eq!(under_base(&base, &inside), Some("new/place?a=1"));
        for outside in ["https://api.example.com/v2/x", "https://evil.example/v1/x", "http://api.example.com/v1/x"] {
            assert_eq!(under_base(&base, &Url::parse(outside).unwrap()), None, "{outside}");
        }
    }
}

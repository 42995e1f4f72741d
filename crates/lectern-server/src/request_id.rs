//! Gives every request an id (the caller's `x-request-id`, or a new one) and a tracing span
//! carrying it; [`crate::App`] runs the request inside the span and returns the id in the
//! response header.

use axum::extract::Request;
use axum::http::HeaderValue;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use tracing::Span;

/// The header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// A new id: `<8 hex digits for this process>-<12 hex digits counting requests>`.
pub(crate) fn next_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<u32> = OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        nanos ^ std::process::id()
    });
    let count = COUNTER.fetch_add(1, Relaxed) & 0xffff_ffff_ffff;
    let mut id = [b'-'; 21];
    write_hex(&mut id[..8], u64::from(prefix));
    write_hex(&mut id[9..], count);
    HeaderValue::from_bytes(&id).expect("hex digits and a dash")
}

/// Writes `value`'s lowest `out.len()` hex digits into `out`, most significant first.
fn write_hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn usable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// The request's id and the span its work runs in. The span carries the id only (recorded
/// with `Display`; it is checked printable ASCII): every field costs formatting on every
/// request, and the id is what ties a log line to the caller, who sees it in the response.
pub fn assign(request: &Request) -> (HeaderValue, Span) {
    let id = match request.headers().get(REQUEST_ID) {
        Some(v) if usable(v) => v.clone(),
        _ => next_id(),
    };
    let span = tracing::info_span!("request", id = %id.to_str().unwrap_or(""));
    (id, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_distinct_fixed_width_hex() {
        let (a, b) = (next_id(), next_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 21, "{text}");
            assert_eq!(&text[8..9], "-");
            assert!(text.chars().filter(|&c| c != '-').all(|c| c.is_ascii_hexdigit()), "{text}");
        }
    }

    #[test]
    fn hex_is_written_most_significant_first() {
        let mut out = [0u8; 4];
        write_hex(&mut out, 0x1_2a3f);
        assert_eq!(&out, b"2a3f");
    }
}

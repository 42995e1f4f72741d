//! Compressed bodies, as Triton's HTTP endpoint takes and gives them: a request body in
//! `Content-Encoding: gzip` or `deflate` is inflated (bounded: what inflates past the body
//! limit is a 413, read no further), and an answer is compressed when the request's
//! `Accept-Encoding` names gzip or deflate. `Inference-Header-Content-Length` counts the
//! uncompressed JSON either way.

use crate::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use lectern_core::ErrorCode;
use std::io::{Read, Write};

/// A compression Lectern reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// zlib-wrapped DEFLATE (RFC 9110's `deflate`); raw DEFLATE is read too.
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The body as sent, inflated when its `Content-Encoding` says so; at most `limit` bytes.
pub fn decode_body(headers: &HeaderMap, body: bytes::Bytes, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(value) = values.next() else { return Ok(body) };
    if values.next().is_some() {
        return Err(ApiError::coded(ErrorCode::UnsupportedMediaType, "one Content-Encoding is supported, not several"));
    }
    let name = String::from_utf8_lossy(value.as_bytes()).trim().to_ascii_lowercase();
    let coding = match name.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Coding::Gzip,
        "deflate" => Coding::Deflate,
        _ => {
            return Err(ApiError::coded(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Encoding '{name}' is not supported (gzip, deflate or identity)"),
            ))
        }
    };
    inflate(coding, &body, limit).map(bytes::Bytes::from)
}

/// Inflates `data`, refusing output over `limit` bytes with 413 before reading more.
pub fn inflate(coding: Coding, data: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let result = match coding {
        Coding::Gzip => read_bounded(MultiGzDecoder::new(data), limit),
        Coding::Deflate => match read_bounded(ZlibDecoder::new(data), limit) {
            // no zlib header: raw DEFLATE, as some clients send
            Err(Inflate::Corrupt(_)) if !has_zlib_header(data) => read_bounded(DeflateDecoder::new(data), limit),
            other => other,
        },
    };
    result.map_err(|e| match e {
        Inflate::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {} request body inflates to more than the limit of {limit} bytes", coding.name()),
        ),
        Inflate::Corrupt(e) => {
            ApiError::bad_request(format!("the {} request body cannot be inflated: {e}", coding.name()))
        }
    })
}

enum Inflate {
    TooLarge,
    Corrupt(std::io::Error),
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(Inflate::Corrupt)?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// A zlib stream starts with CMF/FLG bytes whose 16-bit value is a multiple of 31.
fn has_zlib_header(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] & 0x0f == 8 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
}

/// The compression a request's `Accept-Encoding` asks for: gzip before deflate, none when
/// neither is named with a weight above zero.
pub fn accepted(headers: &HeaderMap) -> Option<Coding> {
    let mut best = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "").to_ascii_lowercase();
                p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
            });
            let coding = match name.as_str() {
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                _ => continue,
            };
            if !refused && best != Some(Coding::Gzip) {
                best = Some(coding);
            }
        }
    }
    best
}

/// Compresses an answer's body; the header to send with it.
pub fn compress(coding: Coding, body: &[u8]) -> (HeaderValue, Vec<u8>) {
    let level = Compression::fast();
    let out = match coding {
        Coding::Gzip => {
            let mut e = GzEncoder::new(Vec::with_capacity(body.len() / 2 + 64), level);
            e.write_all(body).and_then(|_| e.finish())
        }
        Coding::Deflate => {
            let mut e = ZlibEncoder::new(Vec::with_capacity(body.len() / 2 + 64), level);
            e.write_all(body).and_then(|_| e.finish())
        }
    };
    // writing to a Vec cannot fail
    (HeaderValue::from_static(coding.name()), out.expect("compressing into memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn gzip_and_deflate_round_trip_and_raw_deflate_is_read() {
        let body = b"{\"inputs\":[]}".repeat(50);
        for coding in [Coding::Gzip, Coding::Deflate] {
            let (_, packed) = compress(coding, &body);
            assert_eq!(inflate(coding, &packed, 1 << 20).ok().unwrap(), body);
        }
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&body).unwrap();
        assert_eq!(inflate(Coding::Deflate, &raw.finish().unwrap(), 1 << 20).ok().unwrap(), body);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_a_bad_request() {
        let zeros = vec![0u8; 50 << 20];
        let (_, bomb) = compress(Coding::Gzip, &zeros);
        assert!(bomb.len() < 1 << 20);
        let e = inflate(Coding::Gzip, &bomb, 1 << 20).err().unwrap();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = inflate(Coding::Gzip, b"not gzip at all", 1 << 20).err().unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = decode_body(&headers(header::CONTENT_ENCODING, "br"), bytes::Bytes::new(), 10).err().unwrap();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn accept_encoding_prefers_gzip_and_honours_zero_weights() {
        assert_eq!(accepted(&headers(header::ACCEPT_ENCODING, "deflate, gzip;q=0.5")), Some(Coding::Gzip));
        assert_eq!(accepted(&headers(header::ACCEPT_ENCODING, "gzip;q=0, deflate")), Some(Coding::Deflate));
        assert_eq!(accepted(&headers(header::ACCEPT_ENCODING, "br, identity")), None);
        assert_eq!(accepted(&HeaderMap::new()), None);
    }
}

//! Small HTTP helpers: the response body type, JSON and error responses, query strings and
//! percent-decoding.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Every response's body: a whole buffer, or a stream (server-sent events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A response with `body` of `content_type`.
pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", value.to_string())
}

/// A JSON error: `{"error": message, "status": code}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message, "status": status.as_u16() }))
}

/// A parsed query string (`a=1&b=x%2Fy`), percent-decoded; the first value of a key wins.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Query {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k, true), decode(v, true))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A yes/no parameter: `1`, `true` or `yes` (any case) mean yes; absent means `default`.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key).map_or(default, |v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | ""))
    }
}

/// Percent-decodes `text` (and `+` as a space in a query); invalid escapes stay as written, invalid
/// UTF-8 becomes U+FFFD.
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() && hex(bytes[i + 1]).is_some() && hex(bytes[i + 2]).is_some() => {
                out.push(hex(bytes[i + 1]).unwrap_or(0) * 16 + hex(bytes[i + 2]).unwrap_or(0));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `offset` and `limit` of a list request: `offset` 0 and `limit` 100 by default, `limit` 1 to 1000.
pub fn paging(query: &Query) -> Result<(usize, usize), Response<Body>> {
    let number = |key: &str, default: usize| match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| error(StatusCode::BAD_REQUEST, &format!("{key} must be a non-negative integer, not {v:?}"))),
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 100)?;
    if !(1..=1000).contains(&limit) {
        return Err(error(StatusCode::BAD_REQUEST, &format!("limit must be 1 to 1000, not {limit}")));
    }
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded() {
        let q = Query::parse("prefix=a%2Fb+c&limit=5&flag&bad=%zz%4");
        assert_eq!(q.get("prefix"), Some("a/b c"));
        assert_eq!(q.get("limit"), Some("5"));
        assert!(q.flag("flag", false));
        assert_eq!(q.get("bad"), Some("%zz%4"));
        assert_eq!(decode("caf%C3%A9+x", false), "café+x");
    }
}

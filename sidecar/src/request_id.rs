//! The request id: the one a client or the ingress sent in `x-request-id` (if it is short,
//! visible ASCII), else a new random one. It is on the request's log line, echoed to the
//! client and passed upstream, so one id follows a call through the ingress, the gateway and
//! the Function App's logs.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept; longer ones are replaced (they would bloat every log line).
const MAX_LEN: usize = 128;

/// The request's id: the incoming one when usable, else 32 random hex digits.
pub fn of(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&HEADER)
        .filter(|v| usable(v.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&format!("{:032x}", rand::random::<u128>()))
                .expect("hex digits are a valid header value")
        })
}

fn usable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_id_is_kept_when_usable_else_replaced() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_str(v).unwrap());
            of(&h)
        };
        assert_eq!(with("req-42_a.b:c"), "req-42_a.b:c");
        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{bad:?}");
        }
        let a = of(&HeaderMap::new());
        let b = of(&HeaderMap::new());
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

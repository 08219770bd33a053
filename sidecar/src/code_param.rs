//! The one place that removes `code` query parameters, the name under which the Functions host
//! accepts the system key. Used for the queries clients send (`forward`) and for every URL in
//! the legacy SSE stream (`sse`), so the two cannot disagree about what counts as `code`.
//!
//! Deliberately stricter than any one server: pairs are split on `&`, on `;` (which some
//! servers also split on) and on JSON's `\u0026` (an escaped `&` inside an event's JSON); a
//! name is `code` if, form-decoded and trimmed, it equals `code` ignoring case. Everything
//! else keeps its exact bytes, separators and order.

use std::borrow::Cow;

/// The length of the pair separator at the start of `bytes` (`&`, `;` or `\u0026`), or 0.
pub fn separator_len(bytes: &[u8]) -> usize {
    match bytes {
        [b'&' | b';', ..] => 1,
        [b'\\', rest @ ..] if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"u0026") => 6,
        _ => 0,
    }
}

/// `query` (without `?`) less its `code` parameters; borrowed when it has none. A separator
/// goes with the pair after it, so removing the first pair leaves no leading separator.
pub fn strip(query: &str) -> Cow<'_, str> {
    let bytes = query.as_bytes();
    let mut pairs = Vec::new(); // (separator before, pair)
    let (mut separator, mut start, mut i) = ("", 0, 0);
    while i < bytes.len() {
        let len = separator_len(&bytes[i..]);
        if len == 0 {
            i += 1;
            continue;
        }
        pairs.push((separator, &query[start..i]));
        separator = &query[i..i + len];
        i += len;
        start = i;
    }
    pairs.push((separator, &query[start..]));
    if !pairs.iter().any(|(_, pair)| is_code(pair)) {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (n, (separator, pair)) in pairs
        .into_iter()
        .filter(|(_, pair)| !is_code(pair))
        .enumerate()
    {
        if n > 0 {
            out.push_str(separator);
        }
        out.push_str(pair);
    }
    Cow::Owned(out)
}

/// Whether one `name=value` pair (or a bare name) is a `code` parameter.
fn is_code(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    url::form_urlencoded::parse(name.as_bytes())
        .next()
        .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_code_goes() {
        for (query, expected) in [
            ("code=K", ""),
            ("CODE=K&Code=K2&c%6Fde=K3&x=1", "x=1"),
            ("code", ""),
            ("code=", ""),
            (" code =K&x=1", "x=1"),
            ("+code+=K&x=1", "x=1"),
            ("%20code=K&x=1", "x=1"),
            ("a=1;code=K", "a=1"),
            ("a=1\\u0026code=K\\u0026b=2", "a=1\\u0026b=2"),
            ("a=1\\U0026code=K", "a=1"),
            ("code=K&a=1;b=2", "a=1;b=2"),
            ("a=1&code=K;b=2", "a=1;b=2"),
        ] {
            assert_eq!(strip(query), expected, "{query:?}");
        }
    }

    #[test]
    fn everything_else_keeps_its_bytes() {
        for query in [
            "",
            "azmcpcs=a%2Bb",
            "codex=1&acode=2&c=code",
            "a&&b",
            "&",
            "x=code%3D1",
            "co%64e2=1",
            "a=1\\u002",
        ] {
            assert!(
                matches!(strip(query), Cow::Borrowed(q) if q == query),
                "{query:?}"
            );
        }
        assert_eq!(strip("azmcpcs=a%2Bb&code=K"), "azmcpcs=a%2Bb");
        assert_eq!(strip("code=K&azmcpcs=x&z=1"), "azmcpcs=x&z=1");
        assert_eq!(strip("a&&code=K&b"), "a&&b");
    }

    #[test]
    fn separators() {
        assert_eq!(separator_len(b"&x"), 1);
        assert_eq!(separator_len(b";x"), 1);
        assert_eq!(separator_len(b"\\u0026x"), 6);
        assert_eq!(separator_len(b"\\u002"), 0);
        assert_eq!(separator_len(b"x&"), 0);
        assert_eq!(separator_len(b""), 0);
    }
}

//! Query-string checks written from how the Azure Functions host reads its key, independently
//! of the sidecar's stripping code.

/// Percent-decodes as `application/x-www-form-urlencoded` does (`+` is a space; a `%` not
/// followed by two hex digits stays as it is).
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap() as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameter name of one `name=value` pair, decoded.
pub fn pair_name(pair: &str) -> String {
    form_decode(pair.split('=').next().unwrap_or_default())
}

/// Whether the query (without `?`) has a parameter the Functions host would take for its key:
/// ASP.NET Core splits on `&`, decodes names and looks `code` up case-insensitively.
pub fn has_code_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair_name(pair).eq_ignore_ascii_case("code"))
}

/// Whether a decoded parameter name is `code` by the gateway's rule: trimmed, any case.
fn is_code_name(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("code")
}

/// The byte ranges of `query`'s pair separators: `&`, `;` and JSON's `\u0026` in any case.
fn separators(query: &str) -> Vec<std::ops::Range<usize>> {
    // ASCII lowercasing keeps every byte where it was.
    let lower = query.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        let len = if lower[i..].starts_with("\\u0026") {
            6
        } else if lower[i..].starts_with(['&', ';']) {
            1
        } else {
            0
        };
        if len > 0 {
            found.push(i..i + len);
            i += len;
        } else {
            i += lower[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

/// The pairs of `query`, each with the separator before it (`""` for the first).
fn pairs(query: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let (mut start, mut before) = (0, "");
    for cut in separators(query) {
        out.push((before, &query[start..cut.start]));
        before = &query[cut.clone()];
        start = cut.end;
    }
    out.push((before, &query[start..]));
    out
}

/// [`has_code_param`] by the gateway's rule, stricter than any server: also split on `;`
/// (which some servers do) and JSON's `\u0026`, names trimmed.
pub fn has_code_param_strict(query: &str) -> bool {
    pairs(query)
        .iter()
        .any(|(_, pair)| is_code_name(&pair_name(pair)))
}

/// A reference for the sidecar's `code_param::strip`, written apart from it: `query` less every
/// pair [`has_code_param_strict`] flags, the rest with its separators and bytes unchanged
/// (the first pair kept loses the separator before it).
pub fn without_code(query: &str) -> String {
    let mut out = String::new();
    let kept = pairs(query)
        .into_iter()
        .filter(|(_, pair)| !is_code_name(&pair_name(pair)));
    for (n, (before, pair)) in kept.enumerate() {
        if n > 0 {
            out += before;
        }
        out += pair;
    }
    out
}

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

/// [`has_code_param`], also splitting on `;` (which some servers do): stricter than any server.
pub fn has_code_param_strict(query: &str) -> bool {
    query.split(';').any(has_code_param)
}

//! The system key's value: what a key file (or a Key Vault secret) must hold to be sent in
//! a header.

use http::HeaderValue;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyFileError {
    #[error("cannot read the system key file: {0}")]
    Unreadable(std::io::ErrorKind),
    #[error("the system key file is empty")]
    Empty,
    #[error("the system key file holds characters that cannot be sent in a header")]
    NotAHeaderValue,
}

/// Parses a key file's bytes: surrounding whitespace (a trailing newline from `echo`) is
/// not part of the key.
pub fn parse_key(bytes: &[u8]) -> Result<HeaderValue, KeyFileError> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(KeyFileError::Empty);
    }
    let mut value = HeaderValue::from_bytes(text).map_err(|_| KeyFileError::NotAHeaderValue)?;
    if text.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(KeyFileError::NotAHeaderValue);
    }
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        assert_eq!(parse_key(b"abc==\n").unwrap(), "abc==");
        assert_eq!(parse_key(b"  \n"), Err(KeyFileError::Empty));
        assert_eq!(parse_key(b""), Err(KeyFileError::Empty));
        assert_eq!(parse_key(b"a b"), Err(KeyFileError::NotAHeaderValue));
        assert_eq!(parse_key(b"a\nb"), Err(KeyFileError::NotAHeaderValue));
        assert_eq!(parse_key(&[0xff, 0xfe]), Err(KeyFileError::NotAHeaderValue));
        assert!(parse_key(b"k").unwrap().is_sensitive());
    }
}

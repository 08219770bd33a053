//! The keys-file format shared by the session keys and the facade keys: standard base64
//! (padding optional) of 32 bytes per line, the first line the current key. The operator
//! writes such files into Secrets; the sidecar reads them.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// A mistake in a keys file. Never contains key material; the caller adds which file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysFileError {
    #[error(
        "line {line}: {problem}; each line must be a base64 32-byte key (make one with `openssl rand -base64 32`)"
    )]
    BadLine { line: usize, problem: String },
    #[error(
        "no keys; add a line with a base64 32-byte key (make one with `openssl rand -base64 32`)"
    )]
    NoKeys,
}

/// Parses a keys file: one base64 32-byte key per line; blank lines and `#` comments are
/// ignored. The first key is the current one.
pub fn parse_keys(text: &str) -> Result<Vec<[u8; 32]>, KeysFileError> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // `#` is not in the base64 alphabet, so a comment can also follow a key.
        let line_text = line.split('#').next().unwrap_or_default().trim();
        if line_text.is_empty() {
            continue;
        }
        let bad = |problem: String| KeysFileError::BadLine {
            line: index + 1,
            problem,
        };
        // The decoder's own error names the offending byte, which is key material.
        let bytes = engine
            .decode(line_text)
            .map_err(|_| bad("not valid base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(format!("decodes to {} bytes, not 32", b.len())))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeysFileError::NoKeys);
    }
    Ok(keys)
}

/// One line of a keys file holding `key` (what the operator writes).
pub fn format_key(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    #[test]
    fn parses_keys_comments_and_blank_lines() {
        let k1 = STANDARD.encode([1u8; 32]);
        let k2 = STANDARD_NO_PAD.encode([2u8; 32]);
        let text = format!("# current\n{k1}\r\n\n   {k2}   # previous, retire after 2026-01\n");
        assert_eq!(parse_keys(&text).unwrap(), vec![[1u8; 32], [2u8; 32]]);
        assert_eq!(parse_keys(&format_key(&[9; 32])).unwrap(), vec![[9u8; 32]]);
    }

    #[test]
    fn errors_name_the_line_but_not_the_key() {
        let good = STANDARD.encode([1u8; 32]);
        let short = STANDARD.encode([7u8; 16]);
        let not_base64 = "s3cr3t-key-material!!";

        let err = parse_keys(&format!("{good}\n\n{short}\n")).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            err,
            KeysFileError::BadLine {
                line: 3,
                problem: "decodes to 16 bytes, not 32".into()
            }
        );
        assert!(
            !message.contains(&short) && message.contains("line 3"),
            "{message}"
        );

        let err = parse_keys(&format!("# c\n{not_base64}\n")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("line 2") && message.contains("not valid base64"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");

        assert_eq!(
            parse_keys("# only a comment\n\n").unwrap_err(),
            KeysFileError::NoKeys
        );
        assert_eq!(parse_keys("").unwrap_err(), KeysFileError::NoKeys);
    }
}

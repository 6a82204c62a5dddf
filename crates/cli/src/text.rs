//! Small text inputs (keys, verifier keys, notes, proofs): read bounded, as UTF-8, with errors
//! that name the file. A path given on the command line is input: `/dev/zero` or a multi-GB
//! file must get an error, not an allocation that never ends.

use std::path::Path;

use domicile_audit::VerifierKey;

/// The most bytes a key file holds (the largest, a signing key, is about 100).
pub(crate) const KEY_FILE_LIMIT: u64 = 4096;

/// Reads `path` whole if it holds at most `limit` bytes of UTF-8 text.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    let bytes = domicile_durable::read_bounded(path, limit).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Reads a verifier key file (`NAME+HASH+KEY`, as `log.vkey` and `witness.vkey` hold one).
pub(crate) fn read_verifier_key(path: &Path) -> Result<VerifierKey, String> {
    let text = read_text(path, KEY_FILE_LIMIT)?;
    VerifierKey::parse(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
}

/// `message` (a serde or parser error) with every value it quotes replaced by `…`: the quoted
/// spans (`"…"` as `Debug` prints a string, or between backticks) before its `, expected`
/// clause (the first one outside a quoted span). What was expected, and the name in
/// `missing field`, are the schema's and stay.
pub(crate) fn withhold_values(message: &str) -> String {
    const EXPECTED: &str = ", expected";
    if message.starts_with("missing field `") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut chars = message.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                // To the closing quote; a backslash escapes the character after it.
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('…');
            }
            '`' => {
                chars.by_ref().find(|&(_, c)| c == '`');
                out.push('…');
            }
            ',' if message[at..].starts_with(EXPECTED) => {
                out.push_str(&message[at..]);
                break;
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_withheld_and_the_schema_kept() {
        let cases = [
            (
                r#"invalid type: string "user-17", expected u64"#,
                "invalid type: string …, expected u64",
            ),
            (
                "invalid type: integer `17`, expected a string",
                "invalid type: integer …, expected a string",
            ),
            (
                "unknown variant `user-17`, expected one of `read`, `write`",
                "unknown variant …, expected one of `read`, `write`",
            ),
            (
                "unknown field `user-17`, expected `seq` or `time_ms`",
                "unknown field …, expected `seq` or `time_ms`",
            ),
            (
                r#"invalid region "us\"user-17": not a region name"#,
                "invalid region …: not a region name",
            ),
            ("missing field `seq`", "missing field `seq`"),
            (
                "invalid length 3, expected 2",
                "invalid length 3, expected 2",
            ),
            (r#"unterminated "user-17"#, "unterminated …"),
            // A value that holds the clause itself is withheld whole.
            (
                r#"invalid type: string "a, expected user-17", expected u64"#,
                "invalid type: string …, expected u64",
            ),
        ];
        for (message, withheld) in cases {
            assert_eq!(withhold_values(message), withheld, "{message}");
        }
    }

    #[test]
    fn oversized_binary_and_malformed_inputs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.vkey");
        std::fs::write(&big, vec![b'a'; 5000]).unwrap();
        let err = read_verifier_key(&big).unwrap_err();
        assert!(err.contains("big.vkey"), "{err}");
        let binary = dir.path().join("binary.vkey");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = read_verifier_key(&binary).unwrap_err();
        assert!(
            err.contains("binary.vkey") && err.contains("UTF-8"),
            "{err}"
        );
        let wrong = dir.path().join("wrong.vkey");
        std::fs::write(&wrong, "not a key\n").unwrap();
        let err = read_verifier_key(&wrong).unwrap_err();
        assert!(err.contains("wrong.vkey"), "{err}");
        let err = read_verifier_key(&dir.path().join("missing.vkey")).unwrap_err();
        assert!(err.contains("missing.vkey"), "{err}");
        // A device that never ends is cut at the limit.
        let err = read_text(Path::new("/dev/zero"), KEY_FILE_LIMIT).unwrap_err();
        assert!(err.contains("/dev/zero"), "{err}");
    }
}

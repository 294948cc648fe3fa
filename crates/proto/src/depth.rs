//! How deeply a JSON text nests, by one pass over its bytes: the check that keeps a message
//! body too deep for clients' parsers (serde_json stops at 128) from being stored.
//!
//! A pure function over bytes, so it is cheap (no allocation, no parse tree) and testable at
//! every byte position. It expects text that is already known to be JSON (a body is parsed
//! into a `RawValue` first); on other text it still ends and returns some depth.

/// The deepest nesting of arrays and objects in the JSON text `bytes`: `0` for a scalar, `1`
/// for `[]` or `{"a":1}`, `2` for `[[1]]`. Brackets inside strings (escaped quotes included)
/// do not count.
pub fn json_depth(bytes: &[u8]) -> usize {
    scan(bytes, usize::MAX)
}

/// Whether the JSON text `bytes` nests deeper than `limit`. Stops at the first byte that goes
/// past it, so a hostile body costs no more than the part of it within the limit.
pub fn exceeds_depth(bytes: &[u8], limit: usize) -> bool {
    scan(bytes, limit) > limit
}

/// The deepest nesting, or `stop + 1` as soon as it goes past `stop`.
fn scan(bytes: &[u8], stop: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > stop {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn scalars_arrays_and_objects() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"\"text\""), 0);
        assert_eq!(json_depth(b"[]"), 1);
        assert_eq!(json_depth(br#"{"a":1}"#), 1);
        assert_eq!(json_depth(br#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        assert_eq!(json_depth(br#"[[1],[2],[3]]"#), 2);
        assert_eq!(json_depth(nested(200).as_bytes()), 200);
    }

    #[test]
    fn limit_is_inclusive_and_stops_early() {
        assert!(!exceeds_depth(nested(64).as_bytes(), 64));
        assert!(exceeds_depth(nested(65).as_bytes(), 64));
        assert!(exceeds_depth(nested(200).as_bytes(), 64));
        assert!(!exceeds_depth(b"{}", 1));
        assert!(exceeds_depth(b"[{}]", 1));
        // Only the part within the limit is read: the rest need not even be JSON.
        let mut hostile = "[".repeat(3).into_bytes();
        hostile.extend_from_slice(b"not json at all");
        assert!(exceeds_depth(&hostile, 2));
    }

    #[test]
    fn brackets_inside_strings_never_count_at_any_position() {
        // A string of brackets, quotes and backslashes (as JSON escapes) at every position of
        // a string value, with the value itself one level deep.
        let inner = r#"[{\"]}\\[{"#;
        let chars: Vec<char> = inner.chars().collect();
        for i in 0..=chars.len() {
            for bracket in ["[", "{", "]", "}", "[[[[", "}}}}"] {
                let mut s: String = chars[..i].iter().collect();
                // Never split an escape (a backslash and what it escapes).
                if s.ends_with('\\') && !s.ends_with("\\\\") {
                    continue;
                }
                s.push_str(bracket);
                s.extend(&chars[i..]);
                let text = format!(r#"{{"k":"{s}","n":[1]}}"#);
                assert!(
                    serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                    "{text}"
                );
                assert_eq!(json_depth(text.as_bytes()), 2, "{text}");
            }
        }
    }

    #[test]
    fn escaped_quotes_and_backslashes_end_strings_exactly() {
        // `"\\"` is a string holding one backslash: the quote after it closes the string.
        assert_eq!(json_depth(br#"["\\",[[]]]"#), 3);
        // `"\""` is a string holding one quote: the string goes on past it.
        assert_eq!(json_depth(br#"["\"[[[",1]"#), 1);
        assert_eq!(json_depth(br#"["\\\"[[[",1]"#), 1);
        assert_eq!(json_depth(br#"{"[":"]","{":["}"]}"#), 2);
    }

    #[test]
    fn every_byte_position_of_a_string_holding_a_bracket() {
        // The 200-deep poison inside a string, with an escaped quote at every position of it:
        // depth 1 wherever the quote sits.
        let poison = nested(200);
        for i in 0..=poison.len() {
            let text = format!(r#"["{}\"{}"]"#, &poison[..i], &poison[i..]);
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
            assert_eq!(json_depth(text.as_bytes()), 1, "at {i}");
        }
    }
}

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

/// The deepest nesting, or `stop + 1` as soon as it goes past `stop`. A string is skipped to
/// its closing quote with `memchr` (a body is mostly string bytes): a backslash escapes the byte
/// after it, whatever it is.
fn scan(bytes: &[u8], stop: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => match string_end(bytes, i + 1) {
                Some(end) => i = end,
                None => return deepest,
            },
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
        i += 1;
    }
    deepest
}

/// The index of the quote that closes the string whose text starts at `from`, or `None` when
/// the text ends first.
fn string_end(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', bytes.get(from..)?)?;
        if bytes[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
    }
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

    /// The byte-at-a-time scan this module used before `memchr`: the reference.
    fn reference(bytes: &[u8], stop: usize) -> usize {
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
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

    #[test]
    fn agrees_with_the_byte_at_a_time_scan_on_any_bytes() {
        // Random texts over the bytes that matter (and one that does not), JSON or not, cut
        // anywhere: a string left open, a backslash last.
        let alphabet = b"[]{}\"\\a";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for stop in [0, 1, 3, usize::MAX] {
                assert_eq!(scan(&text, stop), reference(&text, stop), "{text:?} {stop}");
            }
        }
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

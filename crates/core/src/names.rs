//! Names people read: usernames and room names.
//!
//! Both are NFKC-normalized (so the fullwidth `ａｌｉｃｅ` and the ligature `ﬁ` become `alice`
//! and `fi`), and refused when they hold characters that print as nothing or reorder what
//! follows: Unicode format characters (general category Cf, which holds the zero-width space,
//! the byte-order mark and every bidirectional control such as U+202E RIGHT-TO-LEFT OVERRIDE),
//! and the few other default-ignorable code points that render blank (combining grapheme
//! joiner, Hangul fillers, variation selectors). Usernames compare by [`username_key`]: the
//! normalized name, lowercased, so `Alice` is taken once `alice` is.

use crate::error::{Error, Result};
use unicode_normalization::UnicodeNormalization;

/// Longest username, in bytes after normalization.
pub const MAX_USERNAME_BYTES: usize = 64;
/// Longest room name, in bytes after normalization.
pub const MAX_ROOM_NAME_BYTES: usize = 200;

/// Unicode's format characters (general category Cf, Unicode 16) and the other blank
/// default-ignorable code points, as inclusive ranges.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // Arabic letter mark (bidi)
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x115F, 0x1160),   // Hangul fillers
    (0x17B4, 0x17B5),   // Khmer inherent vowels
    (0x180B, 0x180F),   // Mongolian free variation selectors and vowel separator
    (0x200B, 0x200F),   // zero-width space, (non-)joiner, LRM, RLM
    (0x202A, 0x202E),   // bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    (0x2060, 0x206F),   // word joiner, invisible operators, bidi isolates, deprecated formats
    (0x3164, 0x3164),   // Hangul filler
    (0xFE00, 0xFE0F),   // variation selectors
    (0xFEFF, 0xFEFF),   // byte-order mark / zero-width no-break space
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler
    (0xFFF0, 0xFFFB),   // interlinear annotations and unassigned specials
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1345F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol formats
    (0xE0000, 0xE0FFF), // tags and variation selectors supplement
];

/// Whether `c` prints as nothing or reorders text (see the module comment).
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// NFKC form of `raw`, refused with `bad_request` when it holds an invisible or bidi control
/// character, a control character, or (when `spaces` is false) white space, or when it is empty
/// or longer than `max` bytes once normalized.
fn normalize(raw: &str, what: &str, max: usize, spaces: bool) -> Result<String> {
    let name: String = raw.nfkc().collect();
    if name.chars().any(is_invisible) || raw.chars().any(is_invisible) {
        return Err(Error::bad_request(format!(
            "{what} must not contain invisible formatting or bidirectional control characters"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || (!spaces && c.is_whitespace()))
    {
        return Err(Error::bad_request(format!(
            "{what} must not contain control characters{}",
            if spaces { "" } else { " or spaces" }
        )));
    }
    if name.trim().is_empty() || name.len() > max {
        return Err(Error::bad_request(format!(
            "{what} must be 1 to {max} bytes (after NFKC normalization)"
        )));
    }
    Ok(name)
}

/// A username as stored: validated and NFKC-normalized (case kept for display).
pub fn username(raw: &str) -> Result<String> {
    normalize(raw, "username", MAX_USERNAME_BYTES, false)
}

/// A room name as stored: validated and NFKC-normalized. Room names need not be unique.
pub fn room_name(raw: &str) -> Result<String> {
    normalize(raw, "room name", MAX_ROOM_NAME_BYTES, true)
}

/// What usernames are compared by: NFKC, lowercased, NFKC again (lowercasing can leave a
/// string that is not in NFKC). Total: any string has a key, so backends can index names
/// stored before this rule existed.
pub fn username_key(name: &str) -> String {
    let lower = name.nfkc().collect::<String>().to_lowercase();
    lower.nfkc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_of_alice_are_refused_or_become_alice() {
        for refused in [
            "al\u{200B}ice",
            "\u{FEFF}alice",
            "alice\u{202E}",
            "a\u{2066}lice",
            "ali\u{00AD}ce",
            "alice\u{E0041}",
        ] {
            let err = username(refused).expect_err(refused);
            assert_eq!(err.code, switchboard_proto::ErrorCode::BadRequest);
        }
        for same in ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "Ａlice"] {
            assert_eq!(
                username_key(&username(same).expect(same)),
                "alice",
                "{same}"
            );
        }
        assert_eq!(username("ﬁsh").expect("ligature"), "fish");
    }

    #[test]
    fn lengths_and_spaces() {
        assert!(username("").is_err());
        assert!(username("a b").is_err());
        assert!(username(&"x".repeat(65)).is_err());
        assert!(room_name("general chat").is_ok());
        assert!(room_name("   ").is_err());
        assert!(room_name("news\u{202E}").is_err());
        assert_eq!(room_name("ｌｏｂｂｙ").expect("fullwidth"), "lobby");
    }
}

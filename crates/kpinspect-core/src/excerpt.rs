//! Short, escaped excerpts of input for error messages: an error names the
//! line that is wrong without echoing hundreds of bytes of it, and never
//! writes control characters or binary garbage to a terminal.

/// The most characters of input an excerpt keeps.
pub const EXCERPT_CHARS: usize = 60;

/// `s` as a quoted, escaped excerpt of at most [`EXCERPT_CHARS`] characters
/// of input (`…` marks a cut); control and other non-printable characters
/// are escaped as Rust escapes them (`\u{1b}`, `\0`, `\t`).
///
/// ```
/// use kpinspect_core::excerpt::excerpt;
/// assert_eq!(excerpt("-A FOO -j ACCEPT"), "\"-A FOO -j ACCEPT\"");
/// assert_eq!(excerpt("a\u{1b}[2Jb"), "\"a\\u{1b}[2Jb\"");
/// let long = "x".repeat(500);
/// assert_eq!(excerpt(&long), format!("\"{}\"…", "x".repeat(60)));
/// ```
pub fn excerpt(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{fffd}' || is_invisible(c) => {
                out.extend(c.escape_default())
            }
            c => out.push(c),
        }
    }
    out.push('"');
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Format and other invisible characters a terminal would not show as such.
fn is_invisible(c: char) -> bool {
    matches!(c as u32, 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff)
}

/// Makes a whole message safe for a one-line report: newlines become spaces,
/// other control characters are escaped, and the message is cut to `max`
/// characters (`…` marks the cut).
///
/// ```
/// use kpinspect_core::excerpt::one_line;
/// assert_eq!(one_line("a\nb\u{7}c", 100), "a b\\u{7}c");
/// assert_eq!(one_line("abcdef", 3), "abc…");
/// ```
pub fn one_line(msg: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = msg.chars();
    for c in chars.by_ref().take(max) {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() || is_invisible(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_bounds_any_input() {
        let garbage: String = (0u32..2000).filter_map(char::from_u32).collect::<String>();
        let e = excerpt(&garbage);
        assert!(e.ends_with('…'));
        assert!(!e.chars().any(|c| c.is_control()));
        // 60 input characters, each at most `\u{xxxx}` (8), plus quotes.
        assert!(e.chars().count() <= EXCERPT_CHARS * 8 + 3);
    }

    #[test]
    fn one_line_has_no_control_characters() {
        let s = one_line("x\u{0}\u{1b}\t\ny", 100);
        assert!(!s.chars().any(|c| c.is_control()), "{s}");
        assert_eq!(s, "x\\u{0}\\u{1b}\\t y");
    }
}

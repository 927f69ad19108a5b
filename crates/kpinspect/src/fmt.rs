//! Small formatting helpers shared by the commands.

/// A probability as people read it: simple fractions as such (`1/3`),
/// anything else as a percentage.
pub fn fraction(p: f64) -> String {
    for d in 1..=64u32 {
        let n = (p * d as f64).round();
        if n >= 1.0 && (n / d as f64 - p).abs() < 1e-6 {
            return if d == 1 {
                "1".into()
            } else {
                format!("{}/{d}", n as u32)
            };
        }
    }
    format!("{:.4}%", p * 100.0)
}

/// Whether stdout gets colour: only on a terminal, and never with
/// `NO_COLOR` set (to anything but the empty string).
pub fn stdout_colour() -> bool {
    use std::io::IsTerminal as _;
    colour_allowed(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The colour decision: a terminal, and `NO_COLOR` unset or empty.
pub fn colour_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A diff's text with its `+` lines green and `-` lines red when `on`
/// (the text itself unchanged otherwise).
pub fn colour_diff(text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let code = if body.starts_with("+ ") {
            Some("32")
        } else if body.starts_with("- ") {
            Some("31")
        } else {
            None
        };
        match code {
            Some(c) => {
                out.push_str(&format!("\x1b[{c}m{body}\x1b[0m{nl}"));
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_are_coloured_only_when_asked() {
        let text = "ipv4: compared with x\n\nchanged chain nat KUBE-SVC-A\n+ -A KUBE-SVC-A -j X\n- -A KUBE-SVC-A -j Y\nipv4: different\n";
        assert_eq!(colour_diff(text, false), text);
        let c = colour_diff(text, true);
        assert!(c.contains("\x1b[32m+ -A KUBE-SVC-A -j X\x1b[0m\n"), "{c}");
        assert!(c.contains("\x1b[31m- -A KUBE-SVC-A -j Y\x1b[0m\n"), "{c}");
        assert!(c.contains("\nchanged chain nat KUBE-SVC-A\n"), "{c}");
        assert_eq!(c.matches("\x1b[").count(), 4, "{c}");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }
}

//! What can go wrong talking to the node, and how a failed command's exit
//! status and stderr are sorted into it.

use thiserror::Error;

/// A failure to read or write the node's rules. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The program is not installed (not on `PATH`, nor in `/usr/sbin`,
    /// `/sbin`, `/usr/local/sbin`).
    #[error("{program} not found (is the iptables/ipset package installed?)")]
    Missing {
        /// The program looked for.
        program: String,
    },
    /// The program ran but was refused by the kernel or the file system:
    /// not root, or without `CAP_NET_ADMIN`.
    #[error("{program}: permission denied (run as root or with CAP_NET_ADMIN): {message}")]
    Permission {
        /// The program that was refused.
        program: String,
        /// Its own explanation.
        message: String,
    },
    /// A restore input was refused. Nothing of the failing table (iptables)
    /// was applied; ipset applies the lines before the failing one.
    #[error("restore failed{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Restore {
        /// The 1-based input line the tool blamed, when it said.
        line: Option<usize>,
        /// The tool's message.
        message: String,
    },
    /// The program failed for another reason.
    #[error("{program} {}: {}", exit_text(*status), one_line(stderr))]
    Command {
        /// The program.
        program: String,
        /// Its exit status, `None` when killed by a signal.
        status: Option<i32>,
        /// Its standard error output.
        stderr: String,
    },
    /// The program could not be started or talked to.
    #[error("{program}: {message}")]
    Io {
        /// The program.
        program: String,
        /// The operating system's error.
        message: String,
    },
}

fn exit_text(status: Option<i32>) -> String {
    match status {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".into(),
    }
}

/// `text`'s meaningful lines joined into one: blank lines and the tools'
/// "Try `iptables-restore -h'" hints are dropped.
pub(crate) fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Try `"))
        .collect();
    if lines.is_empty() {
        "(no error output)".into()
    } else {
        lines.join(" / ")
    }
}

/// Whether `stderr` says the caller lacks privileges.
fn is_permission(stderr: &str) -> bool {
    const MARKERS: [&str; 4] = [
        "Permission denied",
        "Operation not permitted",
        "you must be root",
        "must be run as root",
    ];
    MARKERS.iter().any(|m| stderr.contains(m))
}

/// The input line an `iptables-restore`, `ip6tables-restore` or
/// `ipset restore` error message blames: "line 5 failed",
/// "Error occurred at line: 5", "line 5: CHAIN_DEL failed",
/// "COMMIT expected at line 5", "Error in line 5:".
pub fn restore_error_line(stderr: &str) -> Option<usize> {
    let lower = stderr.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("line") {
        let after = &rest[at + 4..];
        let digits = after.trim_start_matches([':', ' ']);
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        // "line" must be a word of its own ("online5" is not a line number).
        let word_start = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        if end > 0
            && word_start
            && let Ok(n) = digits[..end].parse()
        {
            return Some(n);
        }
        rest = after;
    }
    None
}

/// What a failed run of `program` means, from its exit status and stderr.
/// `restore` says whether the program was fed a restore input, whose
/// refusal is a [`NodeError::Restore`].
pub fn classify_failure(
    program: &str,
    status: Option<i32>,
    stderr: &str,
    restore: bool,
) -> NodeError {
    if is_permission(stderr) {
        NodeError::Permission {
            program: program.into(),
            message: one_line(stderr),
        }
    } else if restore {
        NodeError::Restore {
            line: restore_error_line(stderr),
            message: one_line(stderr),
        }
    } else {
        NodeError::Command {
            program: program.into(),
            status,
            stderr: stderr.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_failures_name_their_line() {
        let cases = [
            ("iptables-restore: line 5 failed\n", Some(5)),
            (
                "iptables-nft-restore: line 5 failed: No chain/target/match by that name.\n",
                Some(5),
            ),
            (
                "iptables-restore v1.8.9 (legacy): Couldn't load target `KUBE-NOPE':No such file or directory\n\nError occurred at line: 2\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
                Some(2),
            ),
            (
                "iptables-nft-restore v1.8.9 (nf_tables): \nline 4: CHAIN_DEL failed (Device or resource busy): chain KUBE-Z\n",
                Some(4),
            ),
            ("iptables-restore: COMMIT expected at line 3\n", Some(3)),
            (
                "ipset v7.17: Error in line 3: The set with the given name does not exist\n",
                Some(3),
            ),
            (
                "iptables-restore v1.8.9 (legacy): Can't set policy `ACCEPT' on `KUBE-Q' line 2: Bad built-in chain name\n",
                Some(2),
            ),
            (
                "ipset v7.17: No command specified: unknown argument bogus\n",
                None,
            ),
            ("pipeline 7 is offline\n", None),
        ];
        for (stderr, line) in cases {
            assert_eq!(restore_error_line(stderr), line, "{stderr}");
            match classify_failure("iptables-restore", Some(1), stderr, true) {
                NodeError::Restore { line: l, message } => {
                    assert_eq!(l, line);
                    assert!(
                        !message.contains('\n') && !message.contains("Try `"),
                        "{message}"
                    );
                }
                other => panic!("{stderr}: {other:?}"),
            }
        }
    }

    #[test]
    fn privilege_failures_are_recognised() {
        for stderr in [
            "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n",
            "iptables-save v1.8.9 (legacy): Cannot initialize: Permission denied (you must be root)\n",
            "Failed to list table names in /proc/net/ip_tables_names: Permission denied\n",
            "Fatal: can't open lock file /run/xtables.lock: Permission denied\n",
            "ipset v7.17: Kernel error received: Operation not permitted\n",
        ] {
            for restore in [false, true] {
                let e = classify_failure("iptables-save", Some(4), stderr, restore);
                assert!(matches!(e, NodeError::Permission { .. }), "{e:?}");
                assert!(!e.to_string().contains('\n'));
            }
        }
    }

    #[test]
    fn other_failures_keep_their_output_on_one_line() {
        let e = classify_failure(
            "iptables-nft-save",
            Some(1),
            "iptables-nft-save v1.8.9 (nf_tables): Failed to initialize nft:\nProtocol not supported\n",
            false,
        );
        assert_eq!(
            e.to_string(),
            "iptables-nft-save exited with status 1: iptables-nft-save v1.8.9 (nf_tables): Failed to initialize nft: / Protocol not supported"
        );
        let e = classify_failure("ipset", None, "", false);
        assert_eq!(
            e.to_string(),
            "ipset was killed by a signal: (no error output)"
        );
        let e = NodeError::Restore {
            line: Some(3),
            message: "iptables-restore: line 3 failed".into(),
        };
        assert_eq!(
            e.to_string(),
            "restore failed at line 3: iptables-restore: line 3 failed"
        );
        let e = NodeError::Missing {
            program: "iptables-legacy-save".into(),
        };
        assert!(!e.to_string().contains('\n'));
    }
}

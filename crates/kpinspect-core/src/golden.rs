//! Golden files: compare what a mode compiles with a pinned expected text,
//! semantically, and explain a mismatch as a unified diff.
//!
//! A golden case (see `kpinspect golden check` and
//! `kpinspect_k8s::golden`) pins one or more [`Golden`] texts. Each is
//! compared after the normaliser kube-proxy's own tests use for it, so a
//! difference only in the order kube-proxy leaves random is no mismatch:
//!
//! * [`Golden::Iptables`]: `kpinspect compile --format sorted` in iptables
//!   mode, compared after [`sort_iptables_rules`];
//! * [`Golden::Nftables`]: `kpinspect compile --format sorted` in nftables
//!   mode, compared after [`sort_nftables_transaction`];
//! * [`Golden::Ipvsadm`] and [`Golden::Ipset`]: `--format ipvsadm` /
//!   `--format ipset` in IPVS mode, compared as sorted lists of lines (the
//!   IPVS table and ipsets are sets; their listing order means nothing).
//!
//! A text of several IP families (a dual-stack compile) is split at the
//! headers `kpinspect compile` writes between families (`# iptables-restore`,
//! `# ip6tables-restore`, `# table ip6 kube-proxy`) and each part is
//! normalised on its own.
//!
//! ```
//! use kpinspect_core::golden::{Golden, compare};
//! let expected = "*nat\n:KUBE-SERVICES - [0:0]\n\
//!     -A KUBE-SERVICES -m comment --comment \"ns1/a cluster IP\" -j KUBE-SVC-A\n\
//!     -A KUBE-SERVICES -m comment --comment \"ns2/b cluster IP\" -j KUBE-SVC-B\nCOMMIT\n";
//! // The same rules in kube-proxy's random service order: no mismatch.
//! let actual = "*nat\n:KUBE-SERVICES - [0:0]\n\
//!     -A KUBE-SERVICES -m comment --comment \"ns2/b cluster IP\" -j KUBE-SVC-B\n\
//!     -A KUBE-SERVICES -m comment --comment \"ns1/a cluster IP\" -j KUBE-SVC-A\nCOMMIT\n";
//! assert_eq!(compare(Golden::Iptables, expected, actual).unwrap(), None);
//! // A different target is one, shown as a unified diff.
//! let wrong = actual.replace("KUBE-SVC-A", "KUBE-SVC-C");
//! let diff = compare(Golden::Iptables, expected, &wrong).unwrap().unwrap();
//! assert!(diff.contains("\n+-A KUBE-SERVICES -m comment --comment \"ns1/a cluster IP\" -j KUBE-SVC-C\n"));
//! ```

use std::fmt;

use thiserror::Error;

use crate::mode::iptables::{NormalizeError, sort_iptables_rules};
use crate::mode::nftables::sort_nftables_transaction;

/// One kind of pinned output of a golden case, with the file it lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Golden {
    /// iptables mode: the restore input after kube-proxy's normaliser
    /// (`compile --format sorted`), in `expected.txt`.
    Iptables,
    /// nftables mode: the table's state after the transaction, normalised
    /// (`compile --mode nftables --format sorted`), in `expected.txt`.
    Nftables,
    /// IPVS mode: the virtual and real servers as `ipvsadm -Sn` prints
    /// them, in `expected-ipvsadm.txt`.
    Ipvsadm,
    /// IPVS mode: the ipsets as `ipset save` prints them, in
    /// `expected-ipset.txt`.
    Ipset,
}

impl Golden {
    /// The file of a case directory that holds this output.
    pub fn file_name(self) -> &'static str {
        match self {
            Golden::Iptables | Golden::Nftables => "expected.txt",
            Golden::Ipvsadm => "expected-ipvsadm.txt",
            Golden::Ipset => "expected-ipset.txt",
        }
    }
}

impl fmt::Display for Golden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Golden::Iptables => "iptables",
            Golden::Nftables => "nftables",
            Golden::Ipvsadm => "ipvsadm",
            Golden::Ipset => "ipset",
        })
    }
}

/// A text that cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// An iptables text that is not restore input.
    #[error("{what}: {source}")]
    Iptables {
        /// Which text (`expected` or `actual`).
        what: &'static str,
        /// Why it does not parse.
        #[source]
        source: NormalizeError,
    },
}

/// Whether a line is a header `kpinspect compile` writes between the texts
/// of two IP families.
fn is_family_header(line: &str) -> bool {
    matches!(line, "# iptables-restore" | "# ip6tables-restore") || line.starts_with("# table ")
}

/// Splits `text` at family headers: `(header, body)` parts, the first
/// with an empty header when the text does not start with one.
fn family_parts(text: &str) -> Vec<(&str, String)> {
    let mut parts: Vec<(&str, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if is_family_header(bare) {
            parts.push((bare, String::new()));
            continue;
        }
        if parts.is_empty() {
            parts.push(("", String::new()));
        }
        if let Some((_, body)) = parts.last_mut() {
            body.push_str(line);
        }
    }
    parts
}

/// `text` in the form it is compared in: `kind`'s normaliser applied to
/// each family's part, family headers kept, one final newline.
pub fn normalize(kind: Golden, text: &str) -> Result<String, GoldenError> {
    normalize_named(kind, text, "text")
}

fn normalize_named(kind: Golden, text: &str, what: &'static str) -> Result<String, GoldenError> {
    let mut out = String::with_capacity(text.len());
    for (header, body) in family_parts(text) {
        if !header.is_empty() {
            out.push_str(header);
            out.push('\n');
        }
        match kind {
            Golden::Iptables => {
                let body = if body.trim().is_empty() {
                    String::new()
                } else {
                    sort_iptables_rules(&body)
                        .map_err(|source| GoldenError::Iptables { what, source })?
                };
                out.push_str(&body);
            }
            Golden::Nftables => {
                let sorted = sort_nftables_transaction(&body);
                if !sorted.is_empty() {
                    out.push_str(&sorted);
                    out.push('\n');
                }
            }
            Golden::Ipvsadm | Golden::Ipset => {
                let mut lines: Vec<&str> = body
                    .lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                    .collect();
                lines.sort_unstable();
                for l in lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Compares `actual` with `expected` after `kind`'s normaliser: `None` when
/// they agree, else a unified diff of the normalised texts (`-` expected,
/// `+` actual).
pub fn compare(kind: Golden, expected: &str, actual: &str) -> Result<Option<String>, GoldenError> {
    let want = normalize_named(kind, expected, "expected")?;
    let got = normalize_named(kind, actual, "actual")?;
    if want == got {
        return Ok(None);
    }
    Ok(Some(unified_diff(&want, &got, "expected", "actual")))
}

/// A unified diff (three lines of context) from `old` to `new`, with
/// `--- old_name` / `+++ new_name` headers.
///
/// ```
/// let d = kpinspect_core::golden::unified_diff("a\nb\nc\n", "a\nB\nc\n", "want", "got");
/// assert_eq!(d, "--- want\n+++ got\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
/// ```
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .missing_newline_hint(true)
        .to_string()
}

/// Line assertions of a case that pins no whole output: every non-empty
/// line of `contains` must be a line of `text`; no non-empty line of
/// `absent` may occur in `text` (as a substring). Returns one message per
/// failed assertion.
///
/// ```
/// let text = "-A KUBE-SERVICES -j KUBE-NODEPORTS\n";
/// let failures = kpinspect_core::golden::check_lines(text, "-A KUBE-SERVICES -j KUBE-NODEPORTS\n", "KUBE-XLB");
/// assert!(failures.is_empty());
/// let failures = kpinspect_core::golden::check_lines(text, "", "NODEPORTS");
/// assert_eq!(failures, ["present but should be absent: NODEPORTS"]);
/// ```
pub fn check_lines(text: &str, contains: &str, absent: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for want in contains.lines().filter(|l| !l.is_empty()) {
        if !text.lines().any(|l| l == want) {
            failures.push(format!("missing line: {want}"));
        }
    }
    for bad in absent.lines().filter(|l| !l.is_empty()) {
        if text.contains(bad) {
            failures.push(format!("present but should be absent: {bad}"));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvs_texts_compare_as_sets() {
        let a = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n";
        let b = "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n-A -t 10.0.0.1:80 -s rr\n";
        assert_eq!(compare(Golden::Ipvsadm, a, b).unwrap(), None);
        let c = b.replace("-w 1", "-w 0");
        let diff = compare(Golden::Ipvsadm, a, &c).unwrap().unwrap();
        assert!(
            diff.contains("\n--a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n"),
            "{diff}"
        );
        assert!(
            diff.contains("\n+-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 0\n"),
            "{diff}"
        );
    }

    #[test]
    fn nftables_texts_compare_after_kube_proxys_sort() {
        let a = "add rule ip kube-proxy a x\nadd rule ip kube-proxy b y\n\
                 add element ip kube-proxy s { 1 }\nadd element ip kube-proxy s { 2 }\n";
        let b = "add rule ip kube-proxy b y\nadd rule ip kube-proxy a x\n\
                 add element ip kube-proxy s { 2 }\n\nadd element ip kube-proxy s { 1 }";
        assert_eq!(compare(Golden::Nftables, a, b).unwrap(), None);
        assert!(
            compare(Golden::Nftables, a, "add rule ip kube-proxy a x\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn families_are_normalised_apart() {
        let v4 = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n";
        let v6 = "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n";
        let both = format!("# iptables-restore\n{v4}# ip6tables-restore\n{v6}");
        assert_eq!(normalize(Golden::Iptables, &both).unwrap(), both);
        let swapped = format!("# iptables-restore\n{v6}# ip6tables-restore\n{v4}");
        assert!(
            compare(Golden::Iptables, &both, &swapped)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn unparsable_iptables_text_is_an_error_naming_the_side() {
        let err = compare(Golden::Iptables, "*nat\nnot a rule\nCOMMIT\n", "").unwrap_err();
        assert!(err.to_string().starts_with("expected: "), "{err}");
    }
}

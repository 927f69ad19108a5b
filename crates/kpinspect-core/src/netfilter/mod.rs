//! The iptables text format and what the kernel does with it, for any
//! program's rules: this module knows no `KUBE-` name.
//!
//! * [`Rule`]: one rule parsed into base matches, match extensions and a
//!   target, with the kernel's canonical form ([`Rule::canonical`]) so that
//!   a rule as written and as `iptables-save` prints it compare equal;
//!   extensions it does not know are kept as written and round-trip;
//! * [`Ruleset`]: `iptables-save` / `iptables-restore` text parsed into
//!   tables, chains and rules, rendered back byte for byte, and changed by
//!   [`Ruleset::restore`] exactly as `iptables-restore` changes the kernel;
//! * [`Restore`]: restore input built line by line in the layout a full
//!   sync writes (filter then nat, or nat then filter: [`TableOrder`]).
//!
//! kube-proxy's modes ([`crate::mode`]) build on it.

mod chain_index;
mod commit;
mod ext;
mod restore;
mod rule;
mod ruleset;

pub use chain_index::ChainIndex;
pub use commit::{BUILTIN_CHAINS, RestoreError, RestoreFlush, TARGETS, builtin_chains, is_target};
pub use ext::deletable_by_spec;
pub(crate) use restore::wln;
pub use restore::{LineBuffer, Restore, RestoreTable, TableOrder};
pub use rule::{
    Match, Opt, Rule, RuleError, Target, addr_matches, mark_pair, parse_counters,
    quantize_probability, split_args,
};
pub(crate) use ruleset::save_text_into;
pub use ruleset::{Chain, Ruleset, SaveParseError, Table, render_rule};

#[cfg(test)]
mod tests {
    /// The format layer stays mode-independent: outside documentation and
    /// tests, its code names no kube-proxy chain.
    #[test]
    fn knows_no_kube_proxy_name() {
        for (file, text) in [
            ("commit.rs", include_str!("commit.rs")),
            ("restore.rs", include_str!("restore.rs")),
            ("rule.rs", include_str!("rule.rs")),
            ("ruleset.rs", include_str!("ruleset.rs")),
        ] {
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, line) in code.lines().enumerate() {
                let l = line.trim_start();
                if l.starts_with("//") {
                    continue;
                }
                assert!(!l.contains("KUBE-"), "{file}:{}: {line}", i + 1);
            }
        }
    }
}

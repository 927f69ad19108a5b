//! A consistency check over restore text, in the spirit of kube-proxy's test
//! helper `checkIPTablesRuleJumps`: every jump goes to a chain that exists,
//! and every per-service chain that is declared is used.

use std::collections::HashSet;

use thiserror::Error;

use super::names::is_service_chain;
use crate::netfilter::{BUILTIN_CHAINS, Ruleset, SaveParseError, is_target};

/// What is inconsistent in a dump.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JumpError {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] SaveParseError),
    /// A rule jumps to a chain that is not declared.
    #[error("table {table}: rule jumps to undeclared chain {chain}: {rule}")]
    Undeclared {
        /// Table.
        table: String,
        /// Target chain.
        chain: String,
        /// The rule.
        rule: String,
    },
    /// A per-service chain is declared (and not deleted) but nothing jumps to it.
    #[error("table {table}: service chain {chain} is declared but never used")]
    Unused {
        /// Table.
        table: String,
        /// Chain.
        chain: String,
    },
    /// A rule jumps to a per-service chain that has no rules.
    #[error("table {table}: rule jumps to empty service chain {chain}: {rule}")]
    Empty {
        /// Table.
        table: String,
        /// Target chain.
        chain: String,
        /// The rule.
        rule: String,
    },
}

/// Checks every table of `text`; returns every problem found.
///
/// ```
/// let bad = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-X\nCOMMIT\n";
/// let errs = kpinspect_core::mode::iptables::check_rule_jumps(bad);
/// assert_eq!(errs.len(), 1);
/// ```
pub fn check_rule_jumps(text: &str) -> Vec<JumpError> {
    let rs = match Ruleset::parse(text) {
        Ok(rs) => rs,
        Err(e) => return vec![e.into()],
    };
    let mut errors = Vec::new();
    for table in rs.tables() {
        let index = table.chain_index();
        let deleted: HashSet<&str> = table.deleted.iter().map(String::as_str).collect();
        let live = |c: &str| index.is_declared(c) && !deleted.contains(c);
        let mut jumped: HashSet<&str> = HashSet::new();
        for (_, rule, text) in rs
            .rules_with_text()
            .filter(|(t, _, _)| std::ptr::eq(*t, table))
        {
            let Some(target) = rule.target_name() else {
                continue;
            };
            if is_target(target) {
                continue;
            }
            if !live(target) && !BUILTIN_CHAINS.contains(&target) {
                errors.push(JumpError::Undeclared {
                    table: table.name.clone(),
                    chain: target.to_string(),
                    rule: text.to_string(),
                });
            } else if is_service_chain(target) && index.get(target).is_none_or(<[_]>::is_empty) {
                errors.push(JumpError::Empty {
                    table: table.name.clone(),
                    chain: target.to_string(),
                    rule: text.to_string(),
                });
            }
            jumped.insert(target);
        }
        for chain in &table.chains {
            if live(&chain.name)
                && is_service_chain(&chain.name)
                && !jumped.contains(chain.name.as_str())
            {
                errors.push(JumpError::Unused {
                    table: table.name.clone(),
                    chain: chain.name.clone(),
                });
            }
        }
    }
    errors
}

//! A consistency check over restore text, in the spirit of kube-proxy's test
//! helper `checkIPTablesRuleJumps`: every jump goes to a chain that exists,
//! and every per-service chain that is declared is used.

use std::collections::HashSet;

use thiserror::Error;

use super::dump::{DumpError, parse_dump, split_args};
use super::names::{BUILTIN_CHAINS, BUILTIN_TARGETS as TARGETS, is_service_chain};

/// What is inconsistent in a dump.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JumpError {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] DumpError),
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
/// let errs = kpinspect_core::iptables::check_rule_jumps(bad);
/// assert_eq!(errs.len(), 1);
/// ```
pub fn check_rule_jumps(text: &str) -> Vec<JumpError> {
    let tables = match parse_dump(text) {
        Ok(t) => t,
        Err(e) => return vec![e.into()],
    };
    let mut errors = Vec::new();
    for table in &tables {
        let live: HashSet<&str> = table
            .chains
            .iter()
            .filter(|c| c.declared && !c.deleted)
            .map(|c| c.name.as_str())
            .collect();
        let mut jumped: HashSet<String> = HashSet::new();
        for chain in &table.chains {
            for rule in &chain.rules {
                let args = split_args(rule);
                let target = args
                    .iter()
                    .position(|a| a == "-j" || a == "-g")
                    .and_then(|i| args.get(i + 1));
                let Some(target) = target else { continue };
                if TARGETS.contains(&target.as_str()) {
                    continue;
                }
                if !live.contains(target.as_str()) && !BUILTIN_CHAINS.contains(&target.as_str()) {
                    errors.push(JumpError::Undeclared {
                        table: table.name.clone(),
                        chain: target.clone(),
                        rule: rule.clone(),
                    });
                } else if is_service_chain(target)
                    && table.chain(target).is_some_and(|c| c.rules.is_empty())
                {
                    errors.push(JumpError::Empty {
                        table: table.name.clone(),
                        chain: target.clone(),
                        rule: rule.clone(),
                    });
                }
                jumped.insert(target.clone());
            }
        }
        for chain in &table.chains {
            if chain.declared
                && !chain.deleted
                && is_service_chain(&chain.name)
                && !jumped.contains(&chain.name)
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

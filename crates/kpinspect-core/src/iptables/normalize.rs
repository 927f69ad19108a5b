//! kube-proxy's test normaliser (`sortIPTablesRules`): kube-proxy writes
//! service ports in random order, so its golden tests compare dumps after
//! sorting tables, chain declarations and the rules of the shared chains.

use thiserror::Error;

use super::dump::{DumpChain, DumpError, DumpTable, parse_dump, split_args};

/// A dump that cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot normalise iptables dump: {0}")]
pub struct NormalizeError(#[from] pub DumpError);

/// Normalises `text` exactly as kube-proxy's `sortIPTablesRules` does.
///
/// Tables are sorted by name; chain declarations put `KUBE-NODEPORTS`, then
/// `KUBE-SERVICES`, then other `KUBE-*` chains, then the rest (each group
/// bytewise); the rules of filter `KUBE-NODEPORTS` / `KUBE-SERVICES` and nat
/// `KUBE-NODEPORTS` / `KUBE-SERVICES` are stably sorted by service name (the
/// comment up to the first space or `:`), the "must be the last rule" jump
/// staying last; rules are then printed chain by chain, and `-X` lines last.
///
/// ```
/// let raw = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
///            -A KUBE-SERVICES -m comment --comment \"ns2/b cluster IP\" -j KUBE-SVC-B\n\
///            -A KUBE-SERVICES -m comment --comment \"ns1/a cluster IP\" -j KUBE-SVC-A\nCOMMIT\n";
/// let sorted = kpinspect_core::iptables::sort_iptables_rules(raw).unwrap();
/// assert_eq!(sorted, "*nat\n:KUBE-NODEPORTS - [0:0]\n:KUBE-SERVICES - [0:0]\n\
///            -A KUBE-SERVICES -m comment --comment \"ns1/a cluster IP\" -j KUBE-SVC-A\n\
///            -A KUBE-SERVICES -m comment --comment \"ns2/b cluster IP\" -j KUBE-SVC-B\nCOMMIT\n");
/// ```
pub fn sort_iptables_rules(text: &str) -> Result<String, NormalizeError> {
    normalize(text, false)
}

/// [`sort_iptables_rules`], then additionally sorts every shared chain
/// (filter `KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`, `KUBE-NODEPORTS`,
/// `KUBE-PROXY-FIREWALL`; nat `KUBE-SERVICES`, `KUBE-NODEPORTS`) stably by
/// full service-port name. Two full syncs of the same cluster that differ
/// only in kube-proxy's random service-port order normalise to the same text.
pub fn sort_iptables_rules_by_service(text: &str) -> Result<String, NormalizeError> {
    normalize(text, true)
}

fn normalize(text: &str, by_port: bool) -> Result<String, NormalizeError> {
    let mut tables = parse_dump(text)?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::with_capacity(text.len());
    for table in &mut tables {
        sort_table(table, by_port);
        out.push('*');
        out.push_str(&table.name);
        out.push('\n');
        for c in table.chains.iter().filter(|c| c.declared) {
            out.push_str(&format!(":{} {} {}\n", c.name, c.policy, c.counters));
        }
        for c in &table.chains {
            for r in &c.rules {
                out.push_str(r);
                out.push('\n');
            }
        }
        for c in table.chains.iter().filter(|c| c.deleted) {
            out.push_str(&format!("-X {}\n", c.name));
        }
        out.push_str("COMMIT\n");
    }
    Ok(out)
}

fn chain_rank(name: &str) -> u8 {
    match name {
        "KUBE-NODEPORTS" => 0,
        "KUBE-SERVICES" => 1,
        n if n.starts_with("KUBE-") => 2,
        _ => 3,
    }
}

fn sort_table(table: &mut DumpTable, by_port: bool) {
    table
        .chains
        .sort_by(|a, b| (chain_rank(&a.name), &a.name).cmp(&(chain_rank(&b.name), &b.name)));
    let is_filter = table.name == "filter";
    let is_nat = table.name == "nat";
    for chain in &mut table.chains {
        let shared = match chain.name.as_str() {
            "KUBE-NODEPORTS" | "KUBE-SERVICES" => is_filter || is_nat,
            "KUBE-EXTERNAL-SERVICES" | "KUBE-PROXY-FIREWALL" => is_filter && by_port,
            _ => false,
        };
        if shared {
            sort_chain(chain, |r| service_name(r, false));
            if by_port {
                sort_chain(chain, |r| service_name(r, true));
            }
        }
    }
}

fn sort_chain(chain: &mut DumpChain, key: impl Fn(&str) -> String) {
    chain.rules.sort_by_cached_key(|r| {
        let last = r.contains("must be the last rule");
        (last, key(r))
    });
}

/// The comment's service name: up to the first space or `:` (or, for the
/// per-port sort, up to the first space only).
fn service_name(rule: &str, with_port: bool) -> String {
    let args = split_args(rule);
    let Some(comment) = super::dump::option_value(&args, "--comment") else {
        return String::new();
    };
    let end = comment
        .find(|c: char| c == ' ' || (!with_port && c == ':'))
        .unwrap_or(comment.len());
    comment[..end].to_string()
}

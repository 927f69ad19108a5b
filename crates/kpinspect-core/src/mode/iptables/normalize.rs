//! kube-proxy's test normaliser (`sortIPTablesRules`): kube-proxy writes
//! service ports in random order, so its golden tests compare dumps after
//! sorting tables, chain declarations and the rules of the shared chains.

use thiserror::Error;

use crate::netfilter::{Rule, Ruleset, SaveParseError};

/// A dump that cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot normalise iptables dump: {0}")]
pub struct NormalizeError(#[from] pub SaveParseError);

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
/// let sorted = kpinspect_core::mode::iptables::sort_iptables_rules(raw).unwrap();
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

/// One chain of a table as the normaliser prints it.
struct SortChain<'a> {
    name: &'a str,
    /// `:NAME POLICY [p:b]` when declared.
    declaration: Option<String>,
    deleted: bool,
    /// Rules with their text as read.
    rules: Vec<(&'a Rule, &'a str)>,
}

fn normalize(text: &str, by_port: bool) -> Result<String, NormalizeError> {
    let rs = Ruleset::parse(text)?;
    let mut tables: Vec<(&str, Vec<SortChain>)> = rs
        .tables()
        .iter()
        .map(|t| {
            let mut chains: Vec<SortChain> = t
                .chains
                .iter()
                .map(|c| {
                    let (p, b) = c.counters.unwrap_or((0, 0));
                    SortChain {
                        name: &c.name,
                        declaration: Some(format!(
                            ":{} {} [{p}:{b}]",
                            c.name,
                            c.policy.as_deref().unwrap_or("-")
                        )),
                        deleted: false,
                        rules: Vec::new(),
                    }
                })
                .collect();
            for d in &t.deleted {
                let i = chain_index(&mut chains, d);
                chains[i].deleted = true;
            }
            (t.name.as_str(), chains)
        })
        .collect();
    for (table, rule, text) in rs.rules_with_text() {
        // `tables` lists `rs.tables()` in order.
        let Some(ti) = rs.tables().iter().position(|t| std::ptr::eq(t, table)) else {
            continue;
        };
        let chains = &mut tables[ti].1;
        let i = chain_index(chains, &rule.chain);
        chains[i].rules.push((rule, text));
    }
    tables.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(text.len());
    for (name, chains) in &mut tables {
        sort_table(name, chains, by_port);
        out.push('*');
        out.push_str(name);
        out.push('\n');
        for d in chains.iter().filter_map(|c| c.declaration.as_ref()) {
            out.push_str(d);
            out.push('\n');
        }
        for c in chains.iter() {
            for (_, r) in &c.rules {
                out.push_str(r);
                out.push('\n');
            }
        }
        for c in chains.iter().filter(|c| c.deleted) {
            out.push_str(&format!("-X {}\n", c.name));
        }
        out.push_str("COMMIT\n");
    }
    Ok(out)
}

/// The index of chain `name`, added undeclared if it is not there yet.
fn chain_index<'a>(chains: &mut Vec<SortChain<'a>>, name: &'a str) -> usize {
    if let Some(i) = chains.iter().position(|c| c.name == name) {
        return i;
    }
    chains.push(SortChain {
        name,
        declaration: None,
        deleted: false,
        rules: Vec::new(),
    });
    chains.len() - 1
}

fn chain_rank(name: &str) -> u8 {
    match name {
        "KUBE-NODEPORTS" => 0,
        "KUBE-SERVICES" => 1,
        n if n.starts_with("KUBE-") => 2,
        _ => 3,
    }
}

fn sort_table(table: &str, chains: &mut [SortChain], by_port: bool) {
    chains.sort_by(|a, b| (chain_rank(a.name), a.name).cmp(&(chain_rank(b.name), b.name)));
    let is_filter = table == "filter";
    let is_nat = table == "nat";
    for chain in chains {
        let shared = match chain.name {
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

fn sort_chain(chain: &mut SortChain, key: impl Fn(&Rule) -> String) {
    chain.rules.sort_by_cached_key(|(r, text)| {
        let last = text.contains("must be the last rule");
        (last, key(r))
    });
}

/// The comment's service name: up to the first space or `:` (or, for the
/// per-port sort, up to the first space only).
fn service_name(rule: &Rule, with_port: bool) -> String {
    let Some(comment) = rule.comment() else {
        return String::new();
    };
    let end = comment
        .find(|c: char| c == ' ' || (!with_port && c == ':'))
        .unwrap_or(comment.len());
    comment[..end].to_string()
}

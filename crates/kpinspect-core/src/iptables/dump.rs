//! A light reader of restore / save text into tables, chains and rule lines,
//! as kube-proxy's test helper `ParseIPTablesDump` does: enough to normalise
//! and check dumps. Rules keep their original text.

use thiserror::Error;

/// A malformed dump line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct DumpError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One chain: its declaration and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpChain {
    /// Chain name.
    pub name: String,
    /// Counters as declared (`[0:0]`), or `-` style policy text.
    pub policy: String,
    /// Counters text (`[pkts:bytes]`).
    pub counters: String,
    /// Whether the chain had a `:NAME` declaration (vs. only `-A` rules).
    pub declared: bool,
    /// Whether a `-X NAME` line deletes it.
    pub deleted: bool,
    /// The rule lines (`-A NAME ...`), verbatim, trimmed.
    pub rules: Vec<String>,
}

/// One `*table` ... `COMMIT` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpTable {
    /// Table name.
    pub name: String,
    /// Chains in declaration order (chains only seen in rules come after).
    pub chains: Vec<DumpChain>,
}

impl DumpTable {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&DumpChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    fn chain_mut(&mut self, name: &str) -> &mut DumpChain {
        if let Some(i) = self.chains.iter().position(|c| c.name == name) {
            return &mut self.chains[i];
        }
        self.chains.push(DumpChain {
            name: name.to_string(),
            policy: "-".into(),
            counters: "[0:0]".into(),
            declared: false,
            deleted: false,
            rules: Vec::new(),
        });
        self.chains.last_mut().expect("just pushed")
    }
}

/// Parses restore or save text. Blank lines and `#` comments are ignored.
pub fn parse_dump(text: &str) -> Result<Vec<DumpTable>, DumpError> {
    let mut tables: Vec<DumpTable> = Vec::new();
    let mut current: Option<DumpTable> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| DumpError {
            line: n,
            message: m.to_string(),
        };
        if let Some(name) = line.strip_prefix('*') {
            if current.is_some() {
                return Err(err("table started before the previous one was committed"));
            }
            current = Some(DumpTable {
                name: name.to_string(),
                chains: Vec::new(),
            });
            continue;
        }
        let Some(table) = current.as_mut() else {
            return Err(err("line outside of a table"));
        };
        if line == "COMMIT" {
            tables.push(current.take().expect("checked above"));
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts
                .next()
                .ok_or_else(|| err("chain declaration without a name"))?;
            let policy = parts.next().unwrap_or("-").to_string();
            let counters = parts.next().unwrap_or("[0:0]").to_string();
            let c = table.chain_mut(name);
            c.declared = true;
            c.policy = policy;
            c.counters = counters;
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let name = rest
                .split_whitespace()
                .next()
                .ok_or_else(|| err("-A without a chain"))?;
            table.chain_mut(name).rules.push(line.to_string());
        } else if let Some(rest) = line.strip_prefix("-X ") {
            table.chain_mut(rest.trim()).deleted = true;
        } else {
            return Err(err(&format!("unexpected line {line:?}")));
        }
    }
    if current.is_some() {
        return Err(DumpError {
            line: text.lines().count(),
            message: "missing COMMIT".into(),
        });
    }
    Ok(tables)
}

/// Splits a rule into arguments (see [`super::split_args`]); text that does
/// not split (an unterminated quote) gives no arguments.
pub fn split_args(rule: &str) -> Vec<String> {
    super::split_args(rule).unwrap_or_default()
}

/// The value following option `opt` in a rule, if any.
pub fn option_value(args: &[String], opt: &str) -> Option<String> {
    args.iter()
        .position(|a| a == opt)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

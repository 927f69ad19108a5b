//! nftables mode on a node: the [`Nftables`] trait (list tables, read one
//! as an in-memory [`Fake`], run one `nft -f -` transaction), the real
//! tool ([`SystemNftables`]) and [`MemoryNode`]'s tables, and the read →
//! plan → write cycles of `apply` ([`plan_nft_apply`],
//! [`PlannedNftApply::write`]) and `cleanup` ([`plan_nft_cleanup`],
//! [`NftCleanup::write`]).
//!
//! Each family's transaction is one `nft -f -`, atomic: a refused one
//! changes nothing and is reported with its line, the chain that line
//! writes and the Service port the chain is of.
//!
//! ```
//! use kpinspect_core::{config::ProxyConfig, mode::nftables, net::IpFamily, proxy::ProxyState};
//! use kpinspect_node::{MemoryNode, apply_nft};
//!
//! let config = ProxyConfig::default();
//! let state = ProxyState::build(&Default::default(), &config, IpFamily::V4);
//! let desired = nftables::compile(&state, &config);
//! let node = MemoryNode::new();
//! let report = apply_nft(&node, &desired).unwrap();
//! assert!(report.to_string().starts_with("IPv4: applied "));
//! let report = apply_nft(&node, &desired).unwrap();
//! assert_eq!(report.to_string(), "IPv4 (nft list table ip kube-proxy): in sync, nothing written");
//! ```

use std::fmt;

use thiserror::Error;

use kpinspect_core::mode::nftables::{self, Compiled, NftPlan, TABLE};
use kpinspect_core::net::IpFamily;
use kpinspect_core::nft::{
    Fake, FakeError, Family, Rule, Ruleset as ListedRuleset, Table, TableContent, Transaction,
};
use kpinspect_core::plan::Refusal;

use crate::error::NodeError;
use crate::memory::{MemoryNode, WriteTarget};

/// A node's nftables, one table at a time.
pub trait Nftables {
    /// The tables on the node: family and name, as `nft list tables`
    /// prints them.
    fn tables(&self) -> Result<Vec<(Family, String)>, NodeError>;

    /// Table `family name` as an in-memory table (what `nft -j list table`
    /// shows, in the form kube-proxy writes); `None` when there is none.
    fn read_table(&self, family: Family, table: &str) -> Result<Option<Fake>, NodeError>;

    /// Runs `tx` as one `nft -f -` (atomic: all or nothing). A refused
    /// transaction is a [`NodeError::Restore`] naming its 1-based line.
    fn run(&self, tx: &Transaction) -> Result<(), NodeError>;
}

/// The nftables family of an IP family's kube-proxy table.
pub fn nft_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::Ip,
        IpFamily::V6 => Family::Ip6,
    }
}

/// The line `nft -f` blames (`/dev/stdin:3:22-25: Error: ...`).
pub fn nft_error_line(stderr: &str) -> Option<usize> {
    let at = stderr.find("stdin:")?;
    let digits: String = stderr[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The node's nftables through the `nft` tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemNftables;

impl Nftables for SystemNftables {
    /// Runs `nft list tables`.
    fn tables(&self) -> Result<Vec<(Family, String)>, NodeError> {
        let text = crate::system::run("nft", &["list", "tables"], None)?;
        Ok(parse_tables(&text))
    }

    /// Runs `nft -j list table FAMILY NAME` and reads it back into
    /// kube-proxy's form.
    fn read_table(&self, family: Family, table: &str) -> Result<Option<Fake>, NodeError> {
        if !self
            .tables()?
            .iter()
            .any(|(f, t)| *f == family && t == table)
        {
            return Ok(None);
        }
        let json = crate::system::run(
            "nft",
            &["-j", "list", "table", family.as_str(), table],
            None,
        )?;
        read_json_table(&json, family, table)
    }

    /// Runs `nft -f -` with the transaction's text on stdin.
    fn run(&self, tx: &Transaction) -> Result<(), NodeError> {
        match crate::system::run("nft", &["-f", "-"], Some(&tx.render())) {
            Ok(_) => Ok(()),
            Err(NodeError::Restore { line, message }) => Err(NodeError::Restore {
                line: nft_error_line(&message).or(line),
                message,
            }),
            Err(e) => Err(e),
        }
    }
}

/// The live table's JSON (`nft -j list table`) as an in-memory table, rules
/// as nft lists them.
fn read_json_table(json: &str, family: Family, table: &str) -> Result<Option<Fake>, NodeError> {
    let bad = |message: String| NodeError::Io {
        program: "nft".into(),
        message,
    };
    let listing = ListedRuleset::parse_json(json, |f, n| f == family.as_str() && n == table)
        .map_err(|e| bad(e.to_string()))?;
    let Some(content) = listing
        .table(family.as_str(), table)
        .and_then(|t| t.content.as_ref())
    else {
        return Ok(None);
    };
    fake_of(family, table, content)
        .map(Some)
        .map_err(|e| bad(format!("table {family} {table} as listed: {e}")))
}

/// A listed table's content as an in-memory table: the table, its chains,
/// sets and maps, then the rules (as nft lists them) and the elements.
pub fn fake_of(family: Family, table: &str, content: &TableContent) -> Result<Fake, FakeError> {
    let mut tx = Transaction::new(family, table, true);
    tx.add(content.table.clone());
    for c in &content.chains {
        tx.add(c.chain.clone());
    }
    for s in &content.sets {
        tx.add(s.clone());
    }
    for m in &content.maps {
        tx.add(m.clone());
    }
    for c in &content.chains {
        for r in &c.rules {
            let mut rule = Rule::new(&c.chain.name, &r.text);
            rule.comment = r.comment.clone();
            tx.add(rule);
        }
    }
    for e in &content.elements {
        tx.add(e.clone());
    }
    let mut fake = Fake::new(family, table, true);
    fake.apply(&tx)?;
    Ok(fake)
}

/// The (family, name) of each `table FAMILY NAME` line.
fn parse_tables(text: &str) -> Vec<(Family, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            if w.next()? != "table" {
                return None;
            }
            let family = match w.next()? {
                "ip" => Family::Ip,
                "ip6" => Family::Ip6,
                "inet" => Family::Inet,
                _ => return None,
            };
            Some((family, w.next()?.to_string()))
        })
        .collect()
}

impl Nftables for MemoryNode {
    fn tables(&self) -> Result<Vec<(Family, String)>, NodeError> {
        Ok(self
            .lock()
            .nft
            .iter()
            .filter(|f| f.table().is_some())
            .map(|f| (f.family(), f.table_name().to_string()))
            .collect())
    }

    fn read_table(&self, family: Family, table: &str) -> Result<Option<Fake>, NodeError> {
        Ok(self
            .lock()
            .nft
            .iter()
            .find(|f| f.family() == family && f.table_name() == table && f.table().is_some())
            .cloned())
    }

    /// Applies `tx` to the in-memory table as the kernel would (all or
    /// nothing); a line made to fail with
    /// [`refuse_next_line_matching`](MemoryNode::refuse_next_line_matching)
    /// is refused like one the kernel refuses.
    fn run(&self, tx: &Transaction) -> Result<(), NodeError> {
        let text = tx.render();
        self.record(WriteTarget::Nft, &text, |state| {
            if let Some(line) = state
                .refuse_next
                .take()
                .and_then(|p| text.lines().position(|l| l.contains(&p)))
            {
                return Err(NodeError::Restore {
                    line: Some(line + 1),
                    message: format!(
                        "/dev/stdin:{}:1-1: Error: Could not process rule: Operation not supported",
                        line + 1
                    ),
                });
            }
            let pos = state
                .nft
                .iter()
                .position(|f| f.family() == tx.family && f.table_name() == tx.table);
            let mut fake = match pos {
                Some(i) => state.nft[i].clone(),
                None => Fake::new(tx.family, &tx.table, tx.object_comments),
            };
            fake.apply(tx).map_err(|e| match e {
                FakeError::NotFound { index, .. } => NodeError::Restore {
                    line: Some(index + 1),
                    message: format!(
                        "/dev/stdin:{}:1-1: Error: {e}: No such file or directory",
                        index + 1
                    ),
                },
                other => NodeError::Restore {
                    line: None,
                    message: other.to_string(),
                },
            })?;
            match pos {
                Some(i) if fake.table().is_none() => {
                    state.nft.remove(i);
                }
                Some(i) => state.nft[i] = fake,
                None if fake.table().is_some() => state.nft.push(fake),
                None => {}
            }
            Ok(())
        })
    }
}

/// Why an nftables cycle failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NftSyncError {
    /// Reading or writing the node failed (no nft, no privileges, ...).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The compiled transaction does not apply to an empty table (a
    /// compiler bug).
    #[error("compiled transaction: {0}")]
    Compiled(FakeError),
    /// nft refused a line of the transaction; nothing was changed.
    #[error("{0}")]
    Refused(Box<NftRefusedLine>),
}

/// A transaction line nft refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "apply failed at transaction line {line} ({}{}): nft -f is atomic, nothing was changed: {error}",
    .object.as_deref().unwrap_or("?"),
    .service.as_deref().map(|s| format!(" for {s}")).unwrap_or_default()
)]
pub struct NftRefusedLine {
    /// The 1-based line.
    pub line: usize,
    /// The chain (or set, map) that line writes.
    pub object: Option<String>,
    /// The Service port (`namespace/name:port`) it belongs to.
    pub service: Option<String>,
    /// The line itself.
    pub text: Option<String>,
    /// nft's error.
    pub error: NodeError,
}

/// An nftables apply read and planned, not written yet.
#[derive(Debug, Clone)]
pub struct PlannedNftApply {
    /// Where the node's table was read from.
    pub from: String,
    /// The transaction and what it changes.
    pub plan: NftPlan,
}

/// Reads the node's `kube-proxy` table of `desired`'s family and plans the
/// transaction that brings it to `desired`.
pub fn plan_nft_apply<N: Nftables + ?Sized>(
    node: &N,
    desired: &Compiled,
) -> Result<PlannedNftApply, NftSyncError> {
    let want = desired.state().map_err(NftSyncError::Compiled)?;
    let family = nft_family(desired.family);
    let actual = node.read_table(family, TABLE)?;
    Ok(PlannedNftApply {
        from: format!("nft list table {family} {TABLE}"),
        plan: nftables::plan(&want, actual.as_ref()),
    })
}

impl PlannedNftApply {
    /// Whether the node already matches.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The `nft -f` input; empty when in sync.
    pub fn text(&self) -> String {
        self.plan.transaction.render()
    }

    /// Why writing this plan would do harm (it deletes most of the node's
    /// service ports), if it would.
    pub fn refusal(&self) -> Option<Refusal> {
        self.plan.refusal()
    }

    /// Writes the transaction (nothing when in sync).
    pub fn write<N: Nftables + ?Sized>(self, node: &N) -> Result<NftApplyReport, NftSyncError> {
        if !self.plan.is_empty() {
            node.run(&self.plan.transaction)
                .map_err(|e| refused(e, &self.plan))?;
        }
        Ok(NftApplyReport {
            from: self.from,
            plan: self.plan,
        })
    }
}

/// What a refused transaction means: its line, chain and Service.
fn refused(error: NodeError, plan: &NftPlan) -> NftSyncError {
    let NodeError::Restore {
        line: Some(line), ..
    } = error
    else {
        return NftSyncError::Node(error);
    };
    let (object, service) = match plan.line_owner(line) {
        Some((o, s)) => (Some(o), s),
        None => (None, None),
    };
    NftSyncError::Refused(Box::new(NftRefusedLine {
        line,
        object,
        service,
        text: plan
            .transaction
            .render()
            .lines()
            .nth(line - 1)
            .map(String::from),
        error,
    }))
}

/// One nftables apply cycle: read, plan, write.
pub fn apply_nft<N: Nftables + ?Sized>(
    node: &N,
    desired: &Compiled,
) -> Result<NftApplyReport, NftSyncError> {
    plan_nft_apply(node, desired)?.write(node)
}

/// What an nftables apply wrote. Its `Display` is one line: `IPv4 (nft
/// list table ip kube-proxy): in sync, nothing written`, or `IPv4: applied
/// N operations: C chains written, S stale chains deleted, A elements
/// added, D elements deleted`.
#[derive(Debug, Clone, PartialEq)]
pub struct NftApplyReport {
    /// Where the node's table was read from.
    pub from: String,
    /// The transaction written and what it changed.
    pub plan: NftPlan,
}

impl NftApplyReport {
    /// Whether nothing was written.
    pub fn in_sync(&self) -> bool {
        self.plan.is_empty()
    }
}

impl fmt::Display for NftApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plan;
        let fam = p.family.as_k8s_str();
        if p.is_empty() {
            return write!(f, "{fam} ({}): in sync, nothing written", self.from);
        }
        use kpinspect_core::mode::nftables::ElementChange as E;
        let added = p.elements.iter().filter(|e| e.change != E::Stale).count();
        let deleted = p.elements.iter().filter(|e| e.change != E::Missing).count();
        write!(
            f,
            "{fam}: applied {} operations: {} chains written, {} stale chains deleted, {} elements added, {} elements deleted",
            p.transaction.len(),
            p.chains_written.len(),
            p.chains_deleted.len(),
            added,
            deleted
        )
    }
}

/// The `kube-proxy` tables a cleanup deletes (`delete table ip
/// kube-proxy`, as kube-proxy's own `CleanupLeftovers`; nothing else).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftCleanup {
    /// The families whose `kube-proxy` table goes.
    pub tables: Vec<Family>,
    /// Whether it was written (its `Display` then says `removed`).
    pub written: bool,
}

/// Lists the node's tables and plans deleting the `kube-proxy` table of
/// `family` (or of both). A node without `nft` has none.
pub fn plan_nft_cleanup<N: Nftables + ?Sized>(
    node: &N,
    family: Option<IpFamily>,
) -> Result<NftCleanup, NodeError> {
    let tables = match node.tables() {
        Ok(t) => t,
        Err(NodeError::Missing { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let wanted: Vec<Family> = match family {
        Some(f) => vec![nft_family(f)],
        None => vec![Family::Ip, Family::Ip6],
    };
    Ok(NftCleanup {
        tables: wanted
            .into_iter()
            .filter(|f| tables.iter().any(|(tf, t)| tf == f && t == TABLE))
            .collect(),
        written: false,
    })
}

impl NftCleanup {
    /// Whether nothing goes.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// One transaction per table.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.tables
            .iter()
            .map(|f| {
                let mut tx = Transaction::new(*f, TABLE, true);
                tx.delete(Table::default());
                tx
            })
            .collect()
    }

    /// What a dry run prints: `# nft -f -` and the lines.
    pub fn commands(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut out = String::from("# nft -f -\n");
        for tx in self.transactions() {
            out.push_str(&tx.render());
        }
        out
    }

    /// Deletes the tables; one gone meanwhile is no error.
    pub fn write<N: Nftables + ?Sized>(mut self, node: &N) -> Result<NftCleanup, NodeError> {
        for tx in self.transactions() {
            let still_there = node
                .tables()?
                .iter()
                .any(|(f, t)| *f == tx.family && t == TABLE);
            if still_there {
                node.run(&tx)?;
            }
        }
        self.written = true;
        Ok(self)
    }
}

impl fmt::Display for NftCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.written {
            "removed"
        } else {
            "would remove"
        };
        for fam in &self.tables {
            writeln!(f, "{verb} nftables table {fam} {TABLE}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_blames_a_line_of_stdin() {
        assert_eq!(
            nft_error_line(
                "/dev/stdin:3:22-25: Error: Could not process rule: No such file or directory\nadd rule ip t a jump nope\n"
            ),
            Some(3)
        );
        assert_eq!(nft_error_line("Error: syntax error"), None);
    }

    #[test]
    fn tables_are_read_from_nft_list_tables() {
        assert_eq!(
            parse_tables(
                "table ip kube-proxy\ntable inet filter\ntable ip6 kube-proxy\ntable bridge x\n"
            ),
            vec![
                (Family::Ip, "kube-proxy".to_string()),
                (Family::Inet, "filter".to_string()),
                (Family::Ip6, "kube-proxy".to_string())
            ]
        );
    }
}

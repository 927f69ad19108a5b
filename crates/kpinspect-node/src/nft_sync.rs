//! nftables mode's read → plan → write cycles on any [`Nftables`] node
//! (the live one, [`SystemNftables`](crate::SystemNftables), or
//! [`MemoryNode`](crate::MemoryNode)): `apply` ([`plan_nft_apply`],
//! [`PlannedNftApply::write`]) reads the node's `kube-proxy` table back
//! into kube-proxy's form ([`read_kube_proxy_table`]), plans with
//! kpinspect-core's `mode::nftables::plan` and writes one transaction;
//! `cleanup` ([`plan_nft_cleanup`], [`NftCleanup::write`]) deletes the
//! `kube-proxy` tables.
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

use kpinspect_core::mode::nftables::{self, Compiled, NftPlan, TABLE, read_listing};
use kpinspect_core::net::IpFamily;
use kpinspect_core::nft::{Fake, FakeError, Family, ListingError, Table, Transaction};
use kpinspect_core::plan::Refusal;
use kpinspect_core::proxy::ProxyState;

use crate::ServingEndpoints;
use crate::nft::{NftError, Nftables};

/// The nftables family of an IP family's kube-proxy table.
pub fn nft_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::Ip,
        IpFamily::V6 => Family::Ip6,
    }
}

/// A listing (`nft -j list table`, or `nft list` text) of the `kube-proxy`
/// table of `family`, read back into kube-proxy's form as an in-memory
/// table; `None` when the listing does not hold it. The dynamic affinity
/// sets' entries (client IPs the kernel remembers) are left out.
pub fn kube_proxy_state(listing: &str, family: Family) -> Result<Option<Fake>, NftSyncError> {
    let node = read_listing(listing).map_err(NftSyncError::Listing)?;
    let Some(table) = node.table(family) else {
        return Ok(None);
    };
    let mut fake = Fake::new(family, TABLE, true);
    fake.apply(&table.transaction())
        .map_err(NftSyncError::Listed)?;
    Ok(Some(fake))
}

/// Reads the node's `kube-proxy` table of `family`, in kube-proxy's form.
pub fn read_kube_proxy_table<N: Nftables + ?Sized>(
    node: &N,
    family: Family,
) -> Result<Option<Fake>, NftSyncError> {
    match node.list_table(family, TABLE)? {
        Some(listing) => kube_proxy_state(&listing, family),
        None => Ok(None),
    }
}

/// Why an nftables cycle failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NftSyncError {
    /// Reading or writing the node failed (no nft, no privileges, ...).
    #[error(transparent)]
    Node(#[from] NftError),
    /// The node's listing does not parse.
    #[error(transparent)]
    Listing(ListingError),
    /// The node's table, as listed, is inconsistent (a rule naming a
    /// missing chain or set).
    #[error("the node's kube-proxy table as listed: {0}")]
    Listed(#[source] FakeError),
    /// The compiled transaction does not apply to an empty table (a
    /// compiler bug).
    #[error("compiled transaction: {0}")]
    Compiled(#[source] FakeError),
    /// nft refused a line of the transaction; nothing was changed.
    #[error(transparent)]
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
    #[source]
    pub error: NftError,
}

/// An nftables apply read and planned, not written yet.
#[derive(Debug, Clone)]
pub struct PlannedNftApply {
    /// Where the node's table was read from.
    pub from: String,
    /// The transaction and what it changes.
    pub plan: NftPlan,
    /// The node's table as read (kube-proxy's form), if it had one.
    pub actual: Option<Fake>,
}

/// Reads the node's `kube-proxy` table of `desired`'s family and plans the
/// transaction that brings it to `desired`.
pub fn plan_nft_apply<N: Nftables + ?Sized>(
    node: &N,
    desired: &Compiled,
) -> Result<PlannedNftApply, NftSyncError> {
    let want = desired.state().map_err(NftSyncError::Compiled)?;
    let family = nft_family(desired.family);
    let actual = read_kube_proxy_table(node, family)?;
    Ok(PlannedNftApply {
        from: format!("nft list table {family} {TABLE}"),
        plan: nftables::plan(&want, actual.as_ref()),
        actual,
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

    /// What kube-proxy's conntrack reconciler keeps after this sync of
    /// `desired` (see [`serving_endpoints`](crate::serving_endpoints)):
    /// UDP frontends and node ports the node's table serves that are not
    /// desired any more are listed with no endpoint.
    pub fn serving_endpoints(&self, desired: &ProxyState) -> ServingEndpoints {
        let mut out = crate::serving_endpoints(desired, &Default::default());
        let Some(actual) = &self.actual else {
            return out;
        };
        for e in actual.elements("service-ips").unwrap_or(&[]) {
            if let [ip, proto, port] = e.key.as_slice()
                && proto == "udp"
                && let (Ok(ip), Ok(port)) = (ip.parse(), port.parse())
            {
                out.frontends.entry((ip, port)).or_default();
            }
        }
        for e in actual.elements("service-nodeports").unwrap_or(&[]) {
            if let [proto, port] = e.key.as_slice()
                && proto == "udp"
                && let Ok(port) = port.parse()
            {
                out.node_ports.entry(port).or_default();
            }
        }
        out
    }

    /// Writes the transaction (nothing when in sync).
    pub fn write<N: Nftables + ?Sized>(self, node: &N) -> Result<NftApplyReport, NftSyncError> {
        if !self.plan.is_empty() {
            node.apply(&self.plan.transaction.render())
                .map_err(|e| refused(e, &self.plan))?;
        }
        Ok(NftApplyReport {
            from: self.from,
            plan: self.plan,
        })
    }
}

/// What a refused transaction means: its line, chain and Service.
fn refused(error: NftError, plan: &NftPlan) -> NftSyncError {
    let NftError::Refused {
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
) -> Result<NftCleanup, NftError> {
    let wanted: Vec<Family> = match family {
        Some(f) => vec![nft_family(f)],
        None => vec![Family::Ip, Family::Ip6],
    };
    let mut tables = Vec::new();
    for f in wanted {
        match node.list_table(f, TABLE) {
            Ok(Some(_)) => tables.push(f),
            Ok(None) | Err(NftError::Missing) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(NftCleanup {
        tables,
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
    pub fn write<N: Nftables + ?Sized>(mut self, node: &N) -> Result<NftCleanup, NftError> {
        for tx in self.transactions() {
            if node.list_table(tx.family, TABLE)?.is_some() {
                node.apply(&tx.render())?;
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

/// knftables' probe at start-up: whether this node's `nft` and kernel take
/// a comment on a table (`nft --check` of `add table FAMILY kube-proxy {
/// comment "test" ; }`; nft before 0.9.7 or a kernel before 5.10 refuse
/// it). `false` when only the table without a comment is accepted: then
/// kube-proxy writes no table, chain, set or map comments. Changes
/// nothing (`--check`).
pub fn nft_object_comments_supported(family: Family) -> Result<bool, NftError> {
    let check =
        |script: &str| match crate::system::run("nft", &["--check", "-f", "-"], Some(script)) {
            Ok(_) => Ok(true),
            Err(crate::NodeError::Missing { .. }) => Err(NftError::Missing),
            Err(crate::NodeError::Permission { message, .. }) => {
                Err(NftError::Permission { message })
            }
            Err(crate::NodeError::Restore { .. } | crate::NodeError::Command { .. }) => Ok(false),
            Err(e) => Err(NftError::Other(e.to_string())),
        };
    if check(&format!(
        "add table {family} {TABLE} {{ comment \"test\" ; }}\n"
    ))? {
        return Ok(true);
    }
    if check(&format!("add table {family} {TABLE}\n"))? {
        return Ok(false);
    }
    Err(NftError::Other(format!(
        "nft --check refuses even `add table {family} {TABLE}`"
    )))
}

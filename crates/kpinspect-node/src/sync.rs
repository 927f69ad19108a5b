//! One cycle of the read → plan → write loop, on any node: the live one
//! ([`LiveNode`](crate::LiveNode)) or one in memory
//! ([`MemoryNode`](crate::MemoryNode)).
//!
//! * [`apply`] reads one family's rules, plans the minimal
//!   `iptables-restore --noflush` payload that brings them to what
//!   kube-proxy should have programmed ([`Desired`]), writes it and
//!   reports; [`plan_apply`] and [`PlannedApply::write`] are its two halves,
//!   for callers that show the plan first (a dry run prints it and stops).
//! * [`cleanup`] reads both families' rules and the ipsets, plans the
//!   removal of one mode's state (or another mode's leftovers), writes it
//!   and reports; [`plan_cleanup`] and [`PlannedCleanup::write`] are its
//!   halves.
//!
//! A cycle takes no lock: callers that may race with another writer hold
//! [`lock_rules`](crate::lock_rules) around it, so that the second cycle
//! plans against what the first wrote. Without it, a plan made against a
//! state that changed before it was written is refused by the node (a rule
//! it deletes by spec is gone) or applied over the other writer's rules.
//!
//! Reports and errors carry everything a command prints: their `Display`
//! is one line (one line per removed item for cleanup reports).
//!
//! ```
//! use kpinspect_core::netfilter::Ruleset;
//! use kpinspect_core::net::IpFamily;
//! use kpinspect_node::{Desired, MemoryNode, apply};
//!
//! let desired = Desired {
//!     family: IpFamily::V4,
//!     rules: Ruleset::parse("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n").unwrap(),
//!     state: None,
//! };
//! let node = MemoryNode::new();
//! let report = apply(&node, &desired).unwrap();
//! assert!(report.to_string().starts_with("IPv4: applied "));
//! // The second cycle plans against what the first wrote: nothing to do.
//! let report = apply(&node, &desired).unwrap();
//! assert_eq!(report.to_string(), "IPv4 (the live node (iptables-save)): in sync, nothing written");
//! assert_eq!(node.writes().len(), 1);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use thiserror::Error;

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::{ProxyMode, iptables};
use kpinspect_core::model::Protocol;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{Ruleset, SaveParseError};
use kpinspect_core::plan::{
    CleanupPlan, CleanupScope, Phase, Plan, Refusal, check_plan, cleanup_plan, plan,
};
use kpinspect_core::proxy::ProxyState;

use crate::conntrack::{
    Conntrack, ConntrackEntry, ConntrackError, ServingEndpoints, stale_entry_filters,
};
use crate::error::NodeError;
use crate::ipset::{IpSetError, IpSetState};
use crate::{IpSets, Iptables};

/// Why a cycle failed. Every message is one line and complete (it includes
/// the node's own error); that error is also its
/// [`source`](std::error::Error::source), for programs that walk the chain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Reading (or writing ipsets for) the node failed: a missing tool,
    /// missing privileges, a tool that failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A save the node printed does not parse.
    #[error("{from}: {error}")]
    Parse {
        /// Where it was read from, e.g. `the live node (iptables-nft-save)`.
        from: String,
        /// What is wrong with it.
        #[source]
        error: SaveParseError,
    },
    /// The compiled rules do not parse (a compiler bug).
    #[error("compiled rules: {0}")]
    Compiled(#[source] SaveParseError),
    /// `ipset save` printed something that does not parse.
    #[error("ipset save: {0}")]
    IpSetParse(#[source] IpSetError),
    /// The node refused a line of an apply payload. The table that line is
    /// in was left as it was; the tables committed before it were applied.
    #[error(transparent)]
    ApplyRefused(Box<RefusedLine>),
    /// One restore of an apply written in pieces (see
    /// [`Iptables::restore_batch_lines`] and
    /// [`Plan::pieces`](kpinspect_core::plan::Plan::pieces)) failed: what
    /// stands depends on its phase (see the message).
    #[error("apply failed in restore {piece} of {pieces}, {}: {error}", phase_text(*.phase))]
    ApplyFailedInPiece {
        /// The failed restore, from 1.
        piece: usize,
        /// How many restores the apply was written in.
        pieces: usize,
        /// Which step it was.
        phase: Phase,
        /// Why it failed; a refused line is counted in the whole payload
        /// (what `--dry-run` shows).
        #[source]
        error: Box<SyncError>,
    },
    /// An apply payload was not written, for a reason that names no line.
    #[error(
        "apply failed (each table of the payload is committed whole or not at all; run diff to see what stands): {0}"
    )]
    ApplyFailed(#[source] NodeError),
    /// A cleanup payload was refused or not written.
    #[error(
        "cleanup failed for {program}, the failing table was left as it was (tables before it in the payload were applied): {error}"
    )]
    CleanupFailed {
        /// The restore program, e.g. `iptables-nft-restore`.
        program: String,
        /// The node's error.
        #[source]
        error: NodeError,
    },
    /// The ipsets' cleanup was refused or not written (the lines before a
    /// refused one were applied).
    #[error("cleanup of ipsets failed: {0}")]
    IpSetCleanupFailed(#[source] NodeError),
    /// [`plan_read`] was given one family's rules and another family's
    /// desired state (a caller's mistake).
    #[error(
        "the node's {} rules cannot be planned against a desired {} state",
        .read.as_k8s_str(),
        .desired.as_k8s_str()
    )]
    FamilyMismatch {
        /// The family of the rules read.
        read: IpFamily,
        /// The family of the desired state.
        desired: IpFamily,
    },
}

/// A line of an apply payload the node refused, with what it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "apply failed at payload line {line}: {}{}; that table was left as it was{}: {error}",
    .chain.as_deref().unwrap_or("?"),
    .service.as_deref().map(|s| format!(" for {s}")).unwrap_or_default(),
    committed_text(.committed)
)]
pub struct RefusedLine {
    /// The 1-based payload line.
    pub line: usize,
    /// The chain that line writes, or `table NAME` for a table's first and
    /// `COMMIT` lines (the legacy backend blames a table's `COMMIT`);
    /// `None` when the line is not in the payload.
    pub chain: Option<String>,
    /// The Service port (`namespace/name:port`, or `namespace/name` for an
    /// unnamed port) that chain is of, when known.
    pub service: Option<String>,
    /// The tables of the payload committed before that line.
    pub committed: Vec<String>,
    /// The node's error.
    #[source]
    pub error: NodeError,
}

/// What stands after a failed restore of `phase`.
fn phase_text(phase: Phase) -> &'static str {
    match phase {
        Phase::Build => {
            "one building chains the node lacked (nothing jumps to them yet: traffic still meets the old rules; the next apply fills or deletes them)"
        }
        Phase::Link => {
            "the one linking the new chains in and the stale ones out (the chains built before it are not jumped to)"
        }
        Phase::Demolish => {
            "one deleting stale chains (the new rules are in force; the stale chains left are not jumped to, and the next apply deletes them)"
        }
    }
}

fn committed_text(tables: &[String]) -> String {
    if tables.is_empty() {
        String::new()
    } else {
        format!(" (the {} table before it was applied)", tables.join(", "))
    }
}

/// One family's rules as read from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRules {
    /// The family.
    pub family: IpFamily,
    /// Where they were read from, for messages:
    /// `the live node (<save program>)`.
    pub from: String,
    /// The rules.
    pub rules: Ruleset,
}

/// Reads and parses `family`'s rules.
pub fn read_rules<N: Iptables + ?Sized>(
    node: &N,
    family: IpFamily,
) -> Result<NodeRules, SyncError> {
    let text = node.save(family)?;
    let from = format!("the live node ({})", node.save_program(family));
    match Ruleset::parse(&text) {
        Ok(rules) => Ok(NodeRules {
            family,
            from,
            rules,
        }),
        Err(error) => Err(SyncError::Parse { from, error }),
    }
}

/// Reads the rules of `family`, or with `None` of both families, IPv4
/// first, leaving out a family whose save program is not installed (a node
/// without ip6tables has no IPv6 rules).
pub fn read_families<N: Iptables + ?Sized>(
    node: &N,
    family: Option<IpFamily>,
) -> Result<Vec<NodeRules>, SyncError> {
    if let Some(f) = family {
        return Ok(vec![read_rules(node, f)?]);
    }
    let mut out = Vec::new();
    for f in [IpFamily::V4, IpFamily::V6] {
        match read_rules(node, f) {
            Ok(r) => out.push(r),
            Err(SyncError::Node(NodeError::Missing { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The names of the node's ipsets; none when the ipset tool is missing.
pub fn ipset_names<S: IpSets + ?Sized>(node: &S) -> Result<Vec<String>, SyncError> {
    match node.save() {
        Ok(text) => Ok(IpSetState::parse(&text)
            .map_err(SyncError::IpSetParse)?
            .sets
            .into_iter()
            .map(|s| s.name)
            .collect()),
        Err(NodeError::Missing { .. }) => Ok(vec![]),
        Err(e) => Err(e.into()),
    }
}

/// What kube-proxy should have programmed in one family's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The family.
    pub family: IpFamily,
    /// The rules, as kube-proxy's restore input.
    pub rules: Ruleset,
    /// The proxier's view the rules were compiled from, when known: it
    /// names the Service of a chain whose rules carry no comment.
    pub state: Option<ProxyState>,
}

impl Desired {
    /// Compiles `state` as kube-proxy's iptables mode does.
    pub fn compile(state: ProxyState, config: &ProxyConfig) -> Result<Desired, SyncError> {
        let text = iptables::compile(&state, config).render();
        let rules = Ruleset::parse(&text).map_err(SyncError::Compiled)?;
        Ok(Desired {
            family: state.family,
            rules,
            state: Some(state),
        })
    }

    /// The Service port whose rules `chain` holds: `namespace/name:port`,
    /// or `namespace/name` for an unnamed port.
    pub fn service_of(&self, chain: &str) -> Option<String> {
        iptables::dump(&self.rules, self.state.as_ref())
            .services
            .into_iter()
            .find(|s| s.chains.iter().any(|c| c == chain))
            .map(|s| {
                if s.port_name.is_empty() {
                    format!("{}/{}", s.namespace, s.name)
                } else {
                    format!("{}/{}:{}", s.namespace, s.name, s.port_name)
                }
            })
    }
}

/// The tables of `plan`'s payload whose `COMMIT` comes before 1-based line
/// `line`: what a restore refused at `line` applied.
pub fn committed_before(plan: &Plan, line: usize) -> Vec<String> {
    plan.payload
        .lines()
        .take(line.saturating_sub(1))
        .enumerate()
        .filter(|(_, l)| *l == "COMMIT")
        .filter_map(|(i, _)| plan.chain_at(i + 1))
        .map(|t| t.trim_start_matches("table ").to_string())
        .collect()
}

/// What a failed restore of `plan`'s payload means: the line, its chain and
/// Service, and the tables applied before it.
pub fn apply_failure(error: NodeError, plan: &Plan, desired: &Desired) -> SyncError {
    let NodeError::Restore {
        line: Some(line), ..
    } = error
    else {
        return SyncError::ApplyFailed(error);
    };
    let chain = plan.chain_at(line).map(String::from);
    SyncError::ApplyRefused(Box::new(RefusedLine {
        line,
        service: chain.as_deref().and_then(|c| desired.service_of(c)),
        chain,
        committed: committed_before(plan, line),
        error,
    }))
}

/// `plan`'s stale chains that stay because another program's rule jumps
/// to them, as warnings.
fn kept_warnings(plan: &Plan) -> Vec<String> {
    plan.chains_kept
        .iter()
        .map(|(chain, rule)| format!("stale chain {chain} kept: still jumped to by `{rule}`"))
        .collect()
}

/// An apply read and planned, not written yet.
#[derive(Debug, Clone)]
pub struct PlannedApply<'a> {
    /// What it brings the node to.
    pub desired: &'a Desired,
    /// Where the node's rules were read from.
    pub from: String,
    /// The payload and what it changes.
    pub plan: Plan,
    /// The node's rules as read.
    pub actual: Ruleset,
}

/// Reads `desired.family`'s rules from `node` and plans the payload that
/// brings them to `desired` ([`read_rules`], then [`plan_read`]).
pub fn plan_apply<'a, N: Iptables + ?Sized>(
    node: &N,
    desired: &'a Desired,
) -> Result<PlannedApply<'a>, SyncError> {
    let mut timer = crate::PhaseTimer::from_env();
    let rules = read_rules(node, desired.family)?;
    timer.mark(&format!("{}: read and parse", desired.family.as_k8s_str()));
    plan_read(rules, desired)
}

/// Plans the payload that brings `read` (the node's rules of
/// `desired.family`, from [`read_rules`]) to `desired`. Reading apart from
/// planning lets a caller parse the node's rules while it compiles the
/// desired state (two cores: the two largest steps of a small change's
/// apply side by side).
///
/// # Errors
/// [`SyncError::FamilyMismatch`] when `read` is of another family than
/// `desired`.
pub fn plan_read(read: NodeRules, desired: &Desired) -> Result<PlannedApply<'_>, SyncError> {
    if read.family != desired.family {
        return Err(SyncError::FamilyMismatch {
            read: read.family,
            desired: desired.family,
        });
    }
    let mut timer = crate::PhaseTimer::from_env();
    let plan = plan(&desired.rules, &read.rules, ProxyMode::Iptables.profile());
    timer.mark(&format!("{}: plan", desired.family.as_k8s_str()));
    Ok(PlannedApply {
        desired,
        from: read.from,
        plan,
        actual: read.rules,
    })
}

impl PlannedApply<'_> {
    /// Whether the node already matches.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The `iptables-restore --noflush` input; empty when in sync.
    pub fn payload(&self) -> &str {
        &self.plan.payload
    }

    /// Why writing this plan would do harm (it deletes most of the node's
    /// service chains), if it would: callers refuse it unless told to
    /// force it.
    pub fn refusal(&self) -> Option<Refusal> {
        check_plan(
            &self.plan,
            &self.actual,
            self.desired.family,
            ProxyMode::Iptables.profile(),
        )
    }

    /// One line for each stale chain kept because another program's rule
    /// jumps to it.
    pub fn warnings(&self) -> Vec<String> {
        kept_warnings(&self.plan)
    }

    /// Writes the payload (nothing when in sync). A refused line is
    /// reported with its chain, Service and the tables applied before it.
    pub fn write<N: Iptables + ?Sized>(self, node: &N) -> Result<ApplyReport, SyncError> {
        let family = self.desired.family;
        let pieces = node
            .restore_batch_lines()
            .and_then(|lines| self.plan.pieces(lines));
        match pieces {
            _ if self.plan.is_empty() => {}
            None => node
                .restore(family, &self.plan.payload)
                .map_err(|e| apply_failure(e, &self.plan, self.desired))?,
            Some(pieces) => {
                for (i, piece) in pieces.iter().enumerate() {
                    node.restore(family, &piece.plan.payload).map_err(|e| {
                        let mut error = apply_failure(e, &piece.plan, self.desired);
                        if let SyncError::ApplyRefused(refused) = &mut error {
                            refused.line = piece.payload_line(refused.line).unwrap_or(refused.line);
                        }
                        SyncError::ApplyFailedInPiece {
                            piece: i + 1,
                            pieces: pieces.len(),
                            phase: piece.phase,
                            error: Box::new(error),
                        }
                    })?;
                }
            }
        }
        Ok(ApplyReport {
            family: self.desired.family,
            from: self.from,
            plan: self.plan,
        })
    }
}

/// One apply cycle: reads `desired.family`'s rules from `node`, plans and
/// writes the payload that brings them to `desired`.
pub fn apply<N: Iptables + ?Sized>(node: &N, desired: &Desired) -> Result<ApplyReport, SyncError> {
    plan_apply(node, desired)?.write(node)
}

/// What an apply wrote. Its `Display` is the one-line summary:
/// `IPv4 (<from>): in sync, nothing written`, or `IPv4: applied N bytes:
/// C chains written, A rules added, D rules deleted, S stale chains
/// deleted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The family.
    pub family: IpFamily,
    /// Where the node's rules were read from.
    pub from: String,
    /// The payload written (empty when in sync) and what it changed.
    pub plan: Plan,
}

impl ApplyReport {
    /// Whether nothing was written.
    pub fn in_sync(&self) -> bool {
        self.plan.is_empty()
    }

    /// One line for each stale chain kept because another program's rule
    /// jumps to it.
    pub fn warnings(&self) -> Vec<String> {
        kept_warnings(&self.plan)
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plan;
        if p.is_empty() {
            return write!(
                f,
                "{} ({}): in sync, nothing written",
                self.family.as_k8s_str(),
                self.from
            );
        }
        write!(
            f,
            "{}: applied {} bytes: {} chains written, {} rules added, {} rules deleted, {} stale chains deleted",
            self.family.as_k8s_str(),
            p.payload.len(),
            p.chains_written,
            p.rules_added,
            p.rules_deleted,
            p.chains_deleted.len()
        )
    }
}

/// A cleanup read and planned, not written yet. Its `Display` lists what
/// it would remove and keep, one line each (`would remove chain nat
/// KUBE-SVC-…`, `kept …: why`), or says there is nothing to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCleanup {
    /// The families read, in the order of the plan's payloads, each with
    /// the program that restores it (`iptables-nft-restore`, ...).
    pub families: Vec<(IpFamily, String)>,
    /// The payloads and what they remove.
    pub plan: CleanupPlan,
}

/// Reads the node's rules (`family`'s, or with `None` those of both
/// families whose tools are installed) and its ipsets, and plans the
/// removal of `scope`. Only the ipsets of the families read are candidates:
/// a set of the other family may be matched by rules this cycle does not
/// see.
pub fn plan_cleanup<N: Iptables + ?Sized, S: IpSets + ?Sized>(
    iptables: &N,
    ipsets: &S,
    scope: CleanupScope,
    family: Option<IpFamily>,
) -> Result<PlannedCleanup, SyncError> {
    let read = read_families(iptables, family)?;
    let was_read = |f: IpFamily| read.iter().any(|r| r.family == f);
    let sets: Vec<String> = ipset_names(ipsets)?
        .into_iter()
        .filter(|s| {
            was_read(if s.starts_with("KUBE-6-") {
                IpFamily::V6
            } else {
                IpFamily::V4
            })
        })
        .collect();
    let rulesets: Vec<&Ruleset> = read.iter().map(|r| &r.rules).collect();
    Ok(PlannedCleanup {
        families: read
            .iter()
            .map(|r| (r.family, iptables.restore_program(r.family)))
            .collect(),
        plan: cleanup_plan(&rulesets, &sets, scope),
    })
}

impl PlannedCleanup {
    /// Whether nothing would be removed.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The payloads as a dry run shows them, each under a comment naming
    /// its program (`# iptables-nft-restore --noflush`,
    /// `# ipset restore`); empty when nothing would be removed.
    pub fn restore_input(&self) -> String {
        let mut out = String::new();
        for ((_, program), payload) in self.families.iter().zip(&self.plan.payloads) {
            if !payload.is_empty() {
                out.push_str(&format!("# {program} --noflush\n"));
                out.push_str(payload);
            }
        }
        if !self.plan.ipset_payload.is_empty() {
            out.push_str("# ipset restore\n");
            out.push_str(&self.plan.ipset_payload);
        }
        out
    }

    /// Writes the payloads: each family's rules, then the ipsets (which
    /// can only go once no rule matches on them).
    pub fn write<N: Iptables + ?Sized, S: IpSets + ?Sized>(
        self,
        iptables: &N,
        ipsets: &S,
    ) -> Result<CleanupReport, SyncError> {
        for ((family, program), payload) in self.families.iter().zip(&self.plan.payloads) {
            if !payload.is_empty() {
                iptables
                    .restore(*family, payload)
                    .map_err(|error| SyncError::CleanupFailed {
                        program: program.clone(),
                        error,
                    })?;
            }
        }
        if !self.plan.ipset_payload.is_empty() {
            ipsets
                .restore(&self.plan.ipset_payload)
                .map_err(SyncError::IpSetCleanupFailed)?;
        }
        Ok(CleanupReport {
            families: self.families,
            plan: self.plan,
        })
    }
}

/// One cleanup cycle: [`plan_cleanup`], then [`PlannedCleanup::write`].
pub fn cleanup<N: Iptables + ?Sized, S: IpSets + ?Sized>(
    iptables: &N,
    ipsets: &S,
    scope: CleanupScope,
    family: Option<IpFamily>,
) -> Result<CleanupReport, SyncError> {
    plan_cleanup(iptables, ipsets, scope, family)?.write(iptables, ipsets)
}

/// What a cleanup removed and kept. Its `Display` lists it, one line each
/// (`removed chain nat KUBE-SVC-…`, `removed rule …`, `removed ipset …`,
/// `kept …: why`), or says `nothing to remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// The families read, in the order of the plan's payloads, each with
    /// the program that restored it.
    pub families: Vec<(IpFamily, String)>,
    /// The payloads written and what they removed.
    pub plan: CleanupPlan,
}

impl CleanupReport {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }
}

/// The lines of a cleanup's report, with `verb` for what goes.
fn cleanup_lines(plan: &CleanupPlan, verb: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (t, c) in &plan.removed_chains {
        writeln!(f, "{verb} chain {t} {c}")?;
    }
    for (t, r) in &plan.removed_rules {
        writeln!(f, "{verb} rule {t} {r}")?;
    }
    let moved = if verb.starts_with("would") {
        "would move"
    } else {
        "moved"
    };
    for (t, r) in &plan.moved_rules {
        writeln!(
            f,
            "{moved} rule {t} {r} back to where a fresh apply puts it"
        )?;
    }
    for s in &plan.removed_ipsets {
        writeln!(f, "{verb} ipset {s}")?;
    }
    for (what, why) in &plan.kept {
        writeln!(f, "kept {what}: {why}")?;
    }
    if plan.is_empty() && plan.kept.is_empty() {
        writeln!(f, "nothing to remove")?;
    }
    Ok(())
}

impl fmt::Display for PlannedCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        cleanup_lines(&self.plan, "would remove", f)
    }
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        cleanup_lines(&self.plan, "removed", f)
    }
}

/// What kube-proxy's conntrack reconciler keeps after a sync of `desired`:
/// for each UDP service port, its frontends (cluster IP, external IPs,
/// load-balancer IPs, each with the service port) and node port, with the
/// serving endpoints (`ip:port`). UDP service ports the node programs in
/// `actual` that are not desired any more are listed with no endpoint:
/// every entry to them is stale.
pub fn serving_endpoints(desired: &ProxyState, actual: &Ruleset) -> ServingEndpoints {
    let mut out = ServingEndpoints::default();
    for entry in &desired.ports {
        let info = &entry.info;
        if info.name.protocol != Protocol::Udp {
            continue;
        }
        let serving: BTreeSet<SocketAddr> = entry
            .endpoints
            .iter()
            .filter(|e| e.serving)
            .map(|e| SocketAddr::new(e.ip, e.port))
            .collect();
        for ip in std::iter::once(&info.cluster_ip)
            .chain(&info.external_ips)
            .chain(&info.load_balancer_vips)
        {
            out.frontends.insert((*ip, info.port), serving.clone());
        }
        if info.node_port != 0 {
            out.node_ports.insert(info.node_port, serving.clone());
        }
    }
    for gone in iptables::dump::services_of_protocol(actual, None, "udp") {
        let Some(port) = gone.port else { continue };
        let ips = gone
            .cluster_ip
            .iter()
            .chain(&gone.external_ips)
            .chain(&gone.load_balancer_ips)
            .filter_map(|ip| {
                kpinspect_core::net::parse_ip_sloppy(ip.split('/').next().unwrap_or(ip))
            });
        for ip in ips {
            out.frontends.entry((ip, port)).or_default();
        }
        if let Some(np) = gone.node_port {
            out.node_ports.entry(np).or_default();
        }
    }
    out
}

/// The stale UDP conntrack entries of one family, found or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackReport {
    /// The family.
    pub family: IpFamily,
    /// The stale entries (deleted, or that a dry run would delete).
    pub stale: Vec<ConntrackEntry>,
    /// Whether they were deleted (else: a dry run).
    pub deleted: bool,
}

impl fmt::Display for ConntrackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.deleted {
            "deleted"
        } else {
            "would delete"
        };
        write!(
            f,
            "{}: {verb} {} stale UDP conntrack entr{}",
            self.family.as_k8s_str(),
            self.stale.len(),
            if self.stale.len() == 1 { "y" } else { "ies" }
        )?;
        for e in &self.stale {
            write!(
                f,
                "\n  {} -> {} (answered by {})",
                e.original.src, e.original.dst, e.reply.src
            )?;
        }
        Ok(())
    }
}

/// Finds `family`'s UDP conntrack entries that point at endpoints `serving`
/// no longer lists (kube-proxy's `CleanStaleEntries`), and deletes them
/// unless `dry_run`: without it, a client keeps sending datagrams to a
/// removed endpoint as long as its entry lives.
pub fn clear_stale_conntrack<C: Conntrack + ?Sized>(
    conntrack: &C,
    family: IpFamily,
    serving: &ServingEndpoints,
    dry_run: bool,
) -> Result<ConntrackReport, ConntrackError> {
    let entries = conntrack.list(family)?;
    let filters = stale_entry_filters(&entries, serving);
    let stale: Vec<ConntrackEntry> = entries
        .into_iter()
        .filter(|e| filters.iter().any(|f| f.matches(e)))
        .collect();
    if !dry_run && !stale.is_empty() {
        conntrack.delete(family, &filters)?;
    }
    Ok(ConntrackReport {
        family,
        stale,
        deleted: !dry_run,
    })
}

#[cfg(test)]
mod error_tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn cycle_errors_keep_the_nodes_error_as_their_source() {
        let node = NodeError::Restore {
            line: Some(3),
            message: "bad rule".into(),
        };
        let e = SyncError::CleanupFailed {
            program: "iptables-nft-restore".into(),
            error: node.clone(),
        };
        assert!(
            e.to_string()
                .ends_with(": restore failed at line 3: bad rule"),
            "{e}"
        );
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), node.to_string());
        // A refused line: the message is the line's, the source the node's.
        let refused = SyncError::ApplyRefused(Box::new(RefusedLine {
            line: 3,
            chain: Some("KUBE-SVC-X".into()),
            service: Some("ns/web:http".into()),
            committed: vec![],
            error: node.clone(),
        }));
        assert!(
            refused
                .to_string()
                .starts_with("apply failed at payload line 3: KUBE-SVC-X for ns/web:http"),
            "{refused}"
        );
        assert_eq!(
            refused.source().map(ToString::to_string),
            Some(node.to_string())
        );
        assert!(SyncError::ApplyFailed(node.clone()).source().is_some());
        assert!(SyncError::IpSetCleanupFailed(node).source().is_some());
    }
}

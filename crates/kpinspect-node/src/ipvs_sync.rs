//! One IPVS-mode apply cycle, on any node: read the virtual servers, the
//! ipsets, the addresses of `kube-ipvs0` and the iptables rules; plan
//! ([`kpinspect_core::mode::ipvs::plan`] and the iptables planner with IPVS
//! mode's profile); write in kube-proxy's order — `kube-ipvs0` ensured,
//! sets, binds, virtual and real servers, the iptables restore, then
//! unbinds and stale virtual servers — and report.
//!
//! [`plan_ipvs_apply`] and [`PlannedIpvsApply::write`] are its two halves
//! (a dry run shows the plan and stops); [`apply_ipvs`] is both.
//!
//! ```
//! use kpinspect_core::{config::ProxyConfig, model::Cluster, net::IpFamily, proxy::ProxyState};
//! use kpinspect_core::mode::ipvs::{Ownership, compile};
//! use kpinspect_node::{MemoryNode, apply_ipvs};
//!
//! let config = ProxyConfig::default();
//! let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
//! let desired = compile(&state, &config);
//! let node = MemoryNode::new();
//! let report = apply_ipvs(&node, &desired, &Ownership::default()).unwrap();
//! assert!(!report.in_sync());
//! let report = apply_ipvs(&node, &desired, &Ownership::default()).unwrap();
//! assert!(report.in_sync(), "{report}");
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use kpinspect_core::mode::ProxyMode;
use kpinspect_core::mode::ipvs::{
    Compiled, ForwardMethod, IpvsNode, IpvsOp, IpvsPlan, Ownership, RealServer, Scheduler,
    ServiceFlags, ServiceKey, VirtualServer, plan,
};
use kpinspect_core::model::Protocol;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::plan::{Plan, Refusal, check_plan};
use kpinspect_core::proxy::ProxyState;
use kpinspect_ipvs::{
    Destination, ForwardingMethod, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Service, Timeouts,
};
use thiserror::Error;

use crate::error::NodeError;
use crate::sync::{SyncError, read_rules};
use crate::{
    AddressAdded, DummyLink, IpSets, Iptables, Ipvs, IpvsError, IpvsWrite, KUBE_IPVS0, Link,
    LinkEnsured, LinkError, ServingEndpoints,
};

/// Why an IPVS-mode cycle failed. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IpvsSyncError {
    /// Reading or writing iptables rules or ipsets failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Reading or changing IPVS failed.
    #[error(transparent)]
    Ipvs(#[from] IpvsError),
    /// `ipset save` printed something that does not parse.
    #[error("ipset save: {0}")]
    IpSetParse(String),
    /// Ensuring `kube-ipvs0` or changing its addresses failed.
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl From<NodeError> for IpvsSyncError {
    fn from(e: NodeError) -> Self {
        IpvsSyncError::Sync(SyncError::Node(e))
    }
}

fn protocol_of(p: u16) -> Option<Protocol> {
    match p {
        IPPROTO_TCP => Some(Protocol::Tcp),
        IPPROTO_UDP => Some(Protocol::Udp),
        IPPROTO_SCTP => Some(Protocol::Sctp),
        _ => None,
    }
}

fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
        Protocol::Sctp => IPPROTO_SCTP,
    }
}

/// A kernel service and its destinations as the core's value; `None` for
/// what kube-proxy never creates (firewall-mark services, other
/// protocols).
pub fn virtual_server(service: &Service, dests: &[Destination]) -> Option<VirtualServer> {
    if service.fwmark.is_some() {
        return None;
    }
    let mut real_servers: Vec<RealServer> = dests
        .iter()
        .filter_map(|d| {
            Some(RealServer {
                address: d.address?,
                port: d.port?,
                weight: d.weight.unwrap_or(0),
                forward: match d.forwarding {
                    Some(ForwardingMethod::Masquerade) | None => ForwardMethod::Masquerade,
                    Some(ForwardingMethod::Local) => ForwardMethod::Local,
                    Some(ForwardingMethod::Tunnel) => ForwardMethod::Tunnel,
                    Some(_) => ForwardMethod::Route,
                },
                active_connections: d.active_conns.map(u64::from),
                inactive_connections: d.inactive_conns.map(u64::from),
            })
        })
        .collect();
    real_servers.sort_by_key(|r| (r.address, r.port));
    Some(VirtualServer {
        address: service.address?,
        protocol: protocol_of(service.protocol?)?,
        port: service.port?,
        scheduler: Scheduler::from_config(service.scheduler.as_deref().unwrap_or("")),
        flags: ServiceFlags(service.flags.map_or(0, |f| f.flags)),
        timeout: service.timeout.unwrap_or(0),
        kind: None,
        service: None,
        bind: false,
        real_servers,
    })
}

/// The kernel service kube-proxy sends for `vs` (scheduler, flags with a
/// full mask, timeout, full netmask).
pub fn kernel_service(vs: &VirtualServer) -> Service {
    let mut s = Service::new(
        protocol_number(vs.protocol),
        SocketAddr::new(vs.address, vs.port),
    )
    .scheduler(vs.scheduler.name());
    s.flags = Some(kpinspect_ipvs::ServiceFlags {
        flags: vs.flags.0 & !kpinspect_ipvs::ServiceFlags::HASHED,
        mask: !0,
    });
    s.timeout = Some(vs.timeout);
    s
}

/// The kernel destination for `rs` (masquerading, its weight).
pub fn kernel_destination(rs: &RealServer) -> Destination {
    Destination::new(
        SocketAddr::new(rs.address, rs.port),
        ForwardingMethod::Masquerade,
        rs.weight,
    )
}

pub(crate) fn service_of_key(key: &ServiceKey) -> Service {
    Service::new(
        protocol_number(key.protocol),
        SocketAddr::new(key.address, key.port),
    )
    .key()
}

/// Reads the node's IPVS-mode state: virtual servers with their real
/// servers, ipsets (none if the `ipset` tool is missing), the addresses of
/// `kube-ipvs0` (none if it does not exist).
pub fn read_ipvs_node<N: Ipvs + IpSets + DummyLink + ?Sized>(
    node: &N,
) -> Result<IpvsNode, IpvsSyncError> {
    let mut servers = Vec::new();
    for (s, dests) in node.services_with_destinations()? {
        servers.extend(virtual_server(&s, &dests));
    }
    let sets = match node.save() {
        Ok(text) => kpinspect_core::ipset::parse_save(&text)
            .map_err(|e| IpvsSyncError::IpSetParse(e.to_string()))?,
        Err(NodeError::Missing { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let bound = match node.link(KUBE_IPVS0)? {
        Some(_) => node.addresses(KUBE_IPVS0)?,
        None => Vec::new(),
    };
    Ok(IpvsNode {
        servers,
        sets,
        bound,
    })
}

/// An IPVS-mode apply read and planned, not written yet.
#[derive(Debug, Clone)]
pub struct PlannedIpvsApply {
    /// The IPVS, ipset and address writes.
    pub ipvs: IpvsPlan,
    /// The iptables payload (IPVS mode's chains and jump rules).
    pub rules: Plan,
    /// The node's rules of the family as read.
    pub actual: Ruleset,
    /// Where the rules were read from.
    pub from: String,
}

/// Reads `node` and plans what brings it to `desired`, owning stale
/// virtual servers as `owner` proves.
pub fn plan_ipvs_apply<N: Ipvs + IpSets + DummyLink + Iptables + ?Sized>(
    node: &N,
    desired: &Compiled,
    owner: &Ownership,
) -> Result<PlannedIpvsApply, IpvsSyncError> {
    let mut timer = crate::PhaseTimer::from_env();
    let state = read_ipvs_node(node)?;
    timer.mark(&format!(
        "read IPVS, ipsets, kube-ipvs0 ({} virtual servers)",
        state.servers.len()
    ));
    plan_ipvs_apply_from(node, &state, desired, owner)
}

/// [`plan_ipvs_apply`] from `state`, the node's IPVS-mode state as
/// [`read_ipvs_node`] read it: one read serves the plans of both families
/// (it holds both; each plan takes its family's) when nothing is written
/// in between. Reads `desired.family`'s rules from `node`.
pub fn plan_ipvs_apply_from<N: Iptables + ?Sized>(
    node: &N,
    state: &IpvsNode,
    desired: &Compiled,
    owner: &Ownership,
) -> Result<PlannedIpvsApply, IpvsSyncError> {
    let mut timer = crate::PhaseTimer::from_env();
    let family = desired.family.as_k8s_str();
    let rules = read_rules(node, desired.family)?;
    timer.mark(&format!("{family}: read iptables"));
    let wanted = Ruleset::parse(&desired.restore.render()).map_err(SyncError::Compiled)?;
    let ipvs = plan(desired, state, owner);
    let rules_plan = kpinspect_core::plan::plan(&wanted, &rules.rules, ProxyMode::Ipvs.profile());
    timer.mark(&format!("{family}: plan"));
    Ok(PlannedIpvsApply {
        ipvs,
        rules: rules_plan,
        actual: rules.rules,
        from: rules.from,
    })
}

impl PlannedIpvsApply {
    /// Whether the node already matches.
    pub fn is_empty(&self) -> bool {
        self.ipvs.is_empty() && self.rules.is_empty()
    }

    /// Why writing this plan would do harm (it deletes most of the node's
    /// kube-proxy virtual servers), if it would.
    pub fn refusal(&self) -> Option<Refusal> {
        self.ipvs.check().or_else(|| {
            check_plan(
                &self.rules,
                &self.actual,
                self.ipvs.family,
                ProxyMode::Ipvs.profile(),
            )
        })
    }

    /// What kube-proxy's conntrack reconciler keeps after writing this
    /// plan for `desired` (the [`ProxyState`] compiled into it):
    /// [`serving_endpoints`](crate::serving_endpoints), plus the UDP
    /// virtual servers the plan deletes, with no endpoint (every entry to
    /// them is stale).
    pub fn serving_endpoints(&self, desired: &ProxyState) -> ServingEndpoints {
        let mut out = crate::serving_endpoints(desired, &self.actual);
        for vs in self.ipvs.deleted_services() {
            if vs.protocol == Protocol::Udp {
                out.frontends.entry((vs.address, vs.port)).or_default();
            }
        }
        out
    }

    /// What the plan leaves alone and why: kept virtual servers, draining
    /// real servers, stale chains still jumped to.
    pub fn warnings(&self) -> Vec<String> {
        warnings(&self.ipvs, &self.rules)
    }

    /// Writes the plan in kube-proxy's order: `kube-ipvs0` ensured, sets,
    /// binds, virtual and real servers, the iptables payload, then unbinds
    /// and stale virtual servers. Nothing is written when in sync. The
    /// sets' restore may overlap the binds and IPVS writes
    /// ([`IpSets::start_restore`]); it ends before the iptables payload,
    /// whose rules use the sets.
    pub fn write<N: Ipvs + IpSets + DummyLink + Iptables + ?Sized>(
        self,
        node: &N,
    ) -> Result<IpvsApplyReport, IpvsSyncError> {
        let mut timer = crate::PhaseTimer::from_env();
        let family = self.ipvs.family.as_k8s_str();
        if !self.ipvs.is_empty() {
            node.ensure_dummy(KUBE_IPVS0)?;
        }
        timer.mark(&format!("{family}: write: kube-ipvs0 ensured"));
        let (before, after): (Vec<&IpvsOp>, Vec<&IpvsOp>) =
            self.ipvs.ops.iter().partition(|o| !o.after_restore());
        write_ops(node, &before, &mut timer)?;
        if !self.rules.is_empty() {
            Iptables::restore(node, self.ipvs.family, &self.rules.payload)
                .map_err(SyncError::ApplyFailed)?;
        }
        timer.mark(&format!(
            "{family}: write: iptables restore ({} bytes)",
            self.rules.payload.len()
        ));
        write_ops(node, &after, &mut timer)?;
        Ok(IpvsApplyReport {
            from: self.from,
            ipvs: self.ipvs,
            rules: self.rules,
        })
    }
}

fn set_line(op: &IpvsOp) -> Option<String> {
    match op {
        IpvsOp::CreateSet {
            name,
            set_type,
            options,
        } => Some(format!("create {name} {set_type} {options} -exist")),
        IpvsOp::AddMember { set, member } => Some(format!("add {set} {member} -exist")),
        IpvsOp::DelMember { set, member } => Some(format!("del {set} {member} -exist")),
        _ => None,
    }
}

/// What kind of write an op is: consecutive ops of one kind go to the
/// node together (one `ipset restore`, one batch of address changes, one
/// batch of IPVS messages), in the plan's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Set,
    Bind,
    Unbind,
    Ipvs,
}

fn write_kind(op: &IpvsOp) -> WriteKind {
    match op {
        IpvsOp::CreateSet { .. } | IpvsOp::AddMember { .. } | IpvsOp::DelMember { .. } => {
            WriteKind::Set
        }
        IpvsOp::Bind(_) => WriteKind::Bind,
        IpvsOp::Unbind(_) => WriteKind::Unbind,
        IpvsOp::AddService(_)
        | IpvsOp::UpdateService(_)
        | IpvsOp::DelService(_)
        | IpvsOp::AddRealServer { .. }
        | IpvsOp::SetWeight { .. }
        | IpvsOp::DelRealServer { .. } => WriteKind::Ipvs,
    }
}

/// The IPVS message of an op (none for set and address ops).
pub(crate) fn ipvs_write(op: &IpvsOp) -> Option<IpvsWrite> {
    Some(match op {
        IpvsOp::AddService(vs) => IpvsWrite::NewService(kernel_service(vs)),
        IpvsOp::UpdateService(vs) => IpvsWrite::SetService(kernel_service(vs)),
        IpvsOp::DelService(vs) => IpvsWrite::DelService(kernel_service(vs).key()),
        IpvsOp::AddRealServer { service, server } => {
            IpvsWrite::NewDestination(service_of_key(service), kernel_destination(server))
        }
        IpvsOp::SetWeight { service, server } => {
            IpvsWrite::SetDestination(service_of_key(service), kernel_destination(server))
        }
        IpvsOp::DelRealServer { service, server } => {
            IpvsWrite::DelDestination(service_of_key(service), kernel_destination(server).key())
        }
        IpvsOp::CreateSet { .. }
        | IpvsOp::AddMember { .. }
        | IpvsOp::DelMember { .. }
        | IpvsOp::Bind(_)
        | IpvsOp::Unbind(_) => return None,
    })
}

/// Writes `ops`: the set lines in one `ipset restore`
/// ([`IpSets::start_restore`]: on the live node it runs while the rest is
/// written), each run of consecutive address or IPVS ops as one batch. A
/// failing restore is returned before a failing batch.
fn write_ops<N: Ipvs + IpSets + DummyLink + ?Sized>(
    node: &N,
    ops: &[&IpvsOp],
    timer: &mut crate::PhaseTimer,
) -> Result<(), IpvsSyncError> {
    let lines: String = ops
        .iter()
        .filter_map(|o| set_line(o))
        .map(|l| l + "\n")
        .collect();
    // The sets are restored while the addresses and IPVS are written
    // (they touch no set; `ipset restore` is a process of its own), and
    // are complete when this returns, before the iptables restore whose
    // rules use them.
    let sets = (!lines.is_empty()).then(|| node.start_restore(&lines));
    let written = write_runs(node, ops, timer);
    if let Some(sets) = sets {
        sets.wait()?;
        timer.mark(&format!(
            "write: ipset restore ({} lines) done",
            lines.lines().count()
        ));
    }
    written
}

/// Writes each run of consecutive address or IPVS ops of `ops` as one
/// batch (the set ops are skipped).
fn write_runs<N: Ipvs + DummyLink + ?Sized>(
    node: &N,
    ops: &[&IpvsOp],
    timer: &mut crate::PhaseTimer,
) -> Result<(), IpvsSyncError> {
    let mut rest = ops
        .iter()
        .copied()
        .filter(|o| write_kind(o) != WriteKind::Set)
        .peekable();
    while let Some(op) = rest.next() {
        let kind = write_kind(op);
        let mut run = vec![op];
        while let Some(next) = rest.next_if(|o| write_kind(o) == kind) {
            run.push(next);
        }
        let addresses = || -> Vec<IpAddr> {
            run.iter()
                .filter_map(|o| match o {
                    IpvsOp::Bind(ip) | IpvsOp::Unbind(ip) => Some(*ip),
                    _ => None,
                })
                .collect()
        };
        match kind {
            WriteKind::Set => {}
            WriteKind::Bind => {
                node.add_addresses(KUBE_IPVS0, &addresses())?;
                timer.mark(&format!("write: {} addresses bound", run.len()));
            }
            WriteKind::Unbind => {
                node.del_addresses(KUBE_IPVS0, &addresses())?;
                timer.mark(&format!("write: {} addresses unbound", run.len()));
            }
            WriteKind::Ipvs => {
                let writes: Vec<IpvsWrite> = run.iter().filter_map(|o| ipvs_write(o)).collect();
                node.write_all(&writes)?;
                timer.mark(&format!("write: {} IPVS messages", writes.len()));
            }
        }
    }
    Ok(())
}

fn warnings(ipvs: &IpvsPlan, rules: &Plan) -> Vec<String> {
    let mut w: Vec<String> = ipvs
        .kept
        .iter()
        .map(|k| {
            format!(
                "virtual server {} kept: {}",
                k.service,
                match k.reason {
                    kpinspect_core::mode::ipvs::KeptReason::ExcludeCidrs =>
                        "its address is in ipvs.excludeCIDRs",
                    kpinspect_core::mode::ipvs::KeptReason::Foreign =>
                        "not provably kube-proxy's (kube-proxy itself would delete it)",
                }
            )
        })
        .collect();
    w.extend(ipvs.draining.iter().map(|d| {
        format!(
            "real server {} of {} draining at weight 0 ({} active, {} inactive connections)",
            d.server.endpoint(),
            d.service,
            count(d.server.active_connections),
            count(d.server.inactive_connections)
        )
    }));
    w.extend(
        rules
            .chains_kept
            .iter()
            .map(|(chain, rule)| format!("stale chain {chain} kept: still jumped to by `{rule}`")),
    );
    w
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

/// One IPVS-mode apply cycle: [`plan_ipvs_apply`], then
/// [`PlannedIpvsApply::write`] (no guard: callers that want one check
/// [`PlannedIpvsApply::refusal`] in between).
pub fn apply_ipvs<N: Ipvs + IpSets + DummyLink + Iptables + ?Sized>(
    node: &N,
    desired: &Compiled,
    owner: &Ownership,
) -> Result<IpvsApplyReport, IpvsSyncError> {
    plan_ipvs_apply(node, desired, owner)?.write(node)
}

/// What an IPVS-mode apply wrote. Its `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsApplyReport {
    /// Where the node's rules were read from.
    pub from: String,
    /// The IPVS, ipset and address writes.
    pub ipvs: IpvsPlan,
    /// The iptables payload written.
    pub rules: Plan,
}

impl IpvsApplyReport {
    /// Whether nothing was written.
    pub fn in_sync(&self) -> bool {
        self.ipvs.is_empty() && self.rules.is_empty()
    }

    /// What was left alone, one line each.
    pub fn warnings(&self) -> Vec<String> {
        warnings(&self.ipvs, &self.rules)
    }
}

/// How many addresses a plan binds and unbinds.
fn address_ops(p: &IpvsPlan) -> (usize, usize) {
    let bind = p
        .ops
        .iter()
        .filter(|o| matches!(o, IpvsOp::Bind(_)))
        .count();
    let unbind = p
        .ops
        .iter()
        .filter(|o| matches!(o, IpvsOp::Unbind(_)))
        .count();
    (bind, unbind)
}

impl fmt::Display for IpvsApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = self.ipvs.family.as_k8s_str();
        if self.in_sync() {
            return write!(
                f,
                "{family} ({}): IPVS mode in sync, nothing written",
                self.from
            );
        }
        let n = |pred: fn(&IpvsOp) -> bool| self.ipvs.ops.iter().filter(|o| pred(o)).count();
        let (bind, unbind) = address_ops(&self.ipvs);
        write!(
            f,
            "{family}: IPVS mode applied: {} virtual servers added, {} updated, {} deleted; {} real servers added, {} reweighted, {} deleted; {} set members changed; {bind} addresses bound, {unbind} unbound; {} iptables bytes",
            n(|o| matches!(o, IpvsOp::AddService(_))),
            n(|o| matches!(o, IpvsOp::UpdateService(_))),
            n(|o| matches!(o, IpvsOp::DelService(_))),
            n(|o| matches!(o, IpvsOp::AddRealServer { .. })),
            n(|o| matches!(o, IpvsOp::SetWeight { .. })),
            n(|o| matches!(o, IpvsOp::DelRealServer { .. })),
            n(|o| matches!(o, IpvsOp::AddMember { .. } | IpvsOp::DelMember { .. })),
            self.rules.payload.len(),
        )
    }
}

/// A node assembled from parts: iptables and ipsets from `rules` (e.g.
/// [`LiveNode`](crate::LiveNode)), IPVS from `ipvs` ([`SystemIpvs`](crate::SystemIpvs)),
/// links from `links` ([`SystemLinks`](crate::SystemLinks)) — what an
/// IPVS-mode cycle needs of a live node.
#[derive(Debug, Clone, Copy)]
pub struct NodeParts<'a, R: ?Sized, V: ?Sized, L: ?Sized> {
    /// Iptables and ipsets.
    pub rules: &'a R,
    /// IPVS.
    pub ipvs: &'a V,
    /// Links and their addresses.
    pub links: &'a L,
}

impl<R: Iptables + ?Sized, V: ?Sized, L: ?Sized> Iptables for NodeParts<'_, R, V, L> {
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        self.rules.save(family)
    }
    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        self.rules.restore(family, payload)
    }
    fn save_program(&self, family: IpFamily) -> String {
        self.rules.save_program(family)
    }
    fn restore_program(&self, family: IpFamily) -> String {
        self.rules.restore_program(family)
    }

    fn restore_batch_lines(&self) -> Option<usize> {
        self.rules.restore_batch_lines()
    }
}

impl<R: IpSets + ?Sized, V: ?Sized, L: ?Sized> IpSets for NodeParts<'_, R, V, L> {
    fn save(&self) -> Result<String, NodeError> {
        self.rules.save()
    }
    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        self.rules.restore(payload)
    }
    fn start_restore(&self, payload: &str) -> crate::PendingRestore {
        self.rules.start_restore(payload)
    }
}

impl<R: ?Sized, V: Ipvs + ?Sized, L: ?Sized> Ipvs for NodeParts<'_, R, V, L> {
    fn services(&self) -> Result<Vec<Service>, IpvsError> {
        self.ipvs.services()
    }
    fn destinations(&self, service: &Service) -> Result<Vec<Destination>, IpvsError> {
        self.ipvs.destinations(service)
    }
    fn new_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.ipvs.new_service(service)
    }
    fn set_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.ipvs.set_service(service)
    }
    fn del_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.ipvs.del_service(service)
    }
    fn new_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.ipvs.new_destination(service, dest)
    }
    fn set_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.ipvs.set_destination(service, dest)
    }
    fn del_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.ipvs.del_destination(service, dest)
    }
    fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        self.ipvs.timeouts()
    }
    fn set_timeouts(&self, timeouts: Timeouts) -> Result<(), IpvsError> {
        self.ipvs.set_timeouts(timeouts)
    }
    fn services_with_destinations(&self) -> Result<Vec<(Service, Vec<Destination>)>, IpvsError> {
        self.ipvs.services_with_destinations()
    }
    fn write_all(&self, writes: &[IpvsWrite]) -> Result<(), IpvsError> {
        self.ipvs.write_all(writes)
    }
}

impl<R: ?Sized, V: ?Sized, L: DummyLink + ?Sized> DummyLink for NodeParts<'_, R, V, L> {
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        self.links.link(name)
    }
    fn ensure_dummy(&self, name: &str) -> Result<LinkEnsured, LinkError> {
        self.links.ensure_dummy(name)
    }
    fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        self.links.delete_link(name)
    }
    fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LinkError> {
        self.links.addresses(name)
    }
    fn add_address(&self, name: &str, address: IpAddr) -> Result<AddressAdded, LinkError> {
        self.links.add_address(name, address)
    }
    fn del_address(&self, name: &str, address: IpAddr) -> Result<bool, LinkError> {
        self.links.del_address(name, address)
    }
    fn add_addresses(
        &self,
        name: &str,
        addresses: &[IpAddr],
    ) -> Result<Vec<AddressAdded>, LinkError> {
        self.links.add_addresses(name, addresses)
    }
    fn del_addresses(&self, name: &str, addresses: &[IpAddr]) -> Result<Vec<bool>, LinkError> {
        self.links.del_addresses(name, addresses)
    }
}

#[cfg(test)]
mod tests;

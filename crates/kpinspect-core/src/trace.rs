//! Walks a new connection through a node's iptables rules the way the
//! kernel's netfilter hooks would, and lists every possible outcome.
//!
//! A packet from a non-local source enters at nat `PREROUTING`, is routed
//! (filter `INPUT` when its destination — after DNAT — is a local address,
//! filter `FORWARD` otherwise) and leaves through nat `POSTROUTING`. A packet
//! from a local address starts at nat `OUTPUT`, then filter `OUTPUT`, nat
//! `POSTROUTING`, and filter `INPUT` when it loops back to a local address.
//!
//! Rules that pick at random (`-m statistic`) split the walk into branches
//! with probabilities; rules whose result depends on state the trace cannot
//! know (`-m recent --rcheck`, `-m set`, `-m physdev`, an unknown input or
//! output interface, ...) split it into branches with *conditions*, so
//! nothing is guessed silently. What a branch assumed holds for the rest of
//! it: a later rule that those assumptions decide is decided, not split
//! again (after "the packet leaves on `weave`", `! -o weave` does not match
//! and `-o docker0` does not either). The output interface is one unknown
//! per destination address — routing picks it — so it stays the same from
//! filter `FORWARD` to nat `POSTROUTING`.
//!
//! Branches that reach the same rule in the same state (destination, port,
//! mark, DNAT, masquerade) have the same future, and are joined when that
//! is exact: with the same assumptions, their probabilities add up; with
//! assumptions no world shares (disjoint) and the same probability, the
//! joined branch holds if either's do. A joined outcome keeps each branch
//! as one of its [`Outcome::ways`] (its own assumptions, probability and
//! path); its conditions are the disjunction, simplified (`x or (not x and
//! y)` is `x or y`): what every way assumes alike, each once, then one
//! "either ..., or ..." for the rest. Rules that test interfaces, ipsets
//! or physdev on every packet thus cost a few outcomes, not one per
//! combination.
//!
//! With the node's ipsets ([`TraceOptions::ipsets`]), `-m set` is decided
//! from their members instead (`hash:ip,port`, `hash:ip,port,ip`,
//! `hash:ip,port,net`, `hash:net`, `bitmap:port`, ..., the protocol of a
//! port member included). With IPVS's virtual servers
//! ([`TraceOptions::virtual_servers`]), a packet to one of them is taken by
//! IPVS after filter `INPUT` (or, sent by the node, after nat `OUTPUT`),
//! sent to each real server of weight > 0 with its scheduler's share, and
//! goes on through filter `OUTPUT` and nat `POSTROUTING` (see
//! [`IpvsChoice`] for what the kernel does).
//!
//! [`trace_nftables`] walks an nftables table (kube-proxy's nftables mode)
//! the same way, by hook and base-chain priority, with the same outcomes,
//! conditions, joins and paths (see [`nftables`]).
//!
//! Outcomes without conditions depend on no unknown, except that a client
//! is assumed to have no session-affinity history unless a condition says
//! it has; when nothing else is unknown, their probabilities add up to 1.
//!
//! Built-in chains missing from the save (kube-proxy's restore input has
//! none) are assumed to hold the jump rules of kube-proxy's mode
//! ([`TraceOptions::mode`]) that lead to a chain of the save, as on a fresh
//! host; the [`Trace::assumptions`] say so. When the rules hold no chain of
//! that mode at all (or are of the other IP family), nothing is assumed and
//! [`Trace::notes`] says there are no kube-proxy rules for the packet's
//! family. Otherwise the walk knows no kube-proxy chain: it follows the
//! rules as the kernel would.
//!
//! ```
//! use kpinspect_core::netfilter::Ruleset;
//! use kpinspect_core::model::Protocol;
//! use kpinspect_core::trace::{Action, Packet, TraceOptions, trace};
//!
//! let save = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-1 - [0:0]\n:KUBE-SEP-2 - [0:0]\n\
//!   -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
//!   -A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1\n\
//!   -A KUBE-SVC-A -j KUBE-SEP-2\n\
//!   -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80\n\
//!   -A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.180.0.2:80\nCOMMIT\n";
//! let rules = Ruleset::parse(save).unwrap();
//! let packet = Packet::new("10.0.0.2".parse().unwrap(), "172.30.0.41".parse().unwrap(), 80, Protocol::Tcp);
//! let t = trace(&rules, &packet, &TraceOptions::default());
//! let to: Vec<String> = t.outcomes.iter().map(|o| o.to.unwrap().to_string()).collect();
//! assert_eq!(to, ["10.180.0.1:80", "10.180.0.2:80"]);
//! assert!(t.outcomes.iter().all(|o| o.action == Action::Dnat && (o.probability - 0.5).abs() < 1e-6));
//! ```

mod facts;
mod ipvs;
pub mod nftables;
mod sets;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use serde::Serialize;

use self::facts::{Atom, Facts, Pred, Prop, Query};
use self::sets::{KnownSet, Lookup};
use crate::ipset::SetText;
use crate::mode::ProxyMode;
use crate::mode::ipvs::VirtualServer;
use crate::model::Protocol;
use crate::net::{IpFamily, parse_ip_sloppy, split_host_port};
use crate::netfilter::{Rule, Ruleset, addr_matches, is_target, mark_pair, render_rule};

/// A new connection's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
    /// Source port, when it matters; rules matching `--sport` branch otherwise.
    pub sport: Option<u16>,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl Packet {
    /// A packet without a known source port.
    pub fn new(src: IpAddr, dst: IpAddr, dport: u16, protocol: Protocol) -> Packet {
        Packet {
            src,
            dst,
            dport,
            sport: None,
            protocol,
        }
    }
}

/// What the trace knows about the node. Built from
/// [`TraceOptions::new`] (or `default()`) with the `with_*` setters; its
/// fields stay readable and assignable, and new ones may come
/// (`#[non_exhaustive]`).
///
/// ```
/// use kpinspect_core::mode::ProxyMode;
/// use kpinspect_core::trace::TraceOptions;
/// let opts = TraceOptions::new()
///     .with_local_ips(["192.168.0.2".parse().unwrap()])
///     .with_in_interface("eth0")
///     .with_mode(ProxyMode::Ipvs)
///     .with_source("node1.save");
/// assert_eq!(opts.local_ips.len(), 1);
/// assert_eq!((opts.in_interface.as_deref(), opts.mark), (Some("eth0"), 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceOptions {
    /// The node's own addresses (`--src-type/--dst-type LOCAL`, and where
    /// the walk starts). Loopback addresses are always local.
    pub local_ips: Vec<IpAddr>,
    /// The interface a non-local packet arrives on, if known; rules matching
    /// `-i` branch otherwise.
    pub in_interface: Option<String>,
    /// The packet's firewall mark when it arrives (usually 0).
    pub mark: u32,
    /// The proxy mode whose jump rules built-in chains missing from the
    /// rules are assumed to hold.
    pub mode: ProxyMode,
    /// Where the rules come from (a file name, `ip6tables-save`), for the
    /// notes; "the rules" when not given.
    pub source: Option<String>,
    /// The node's ipsets (`ipset save`), when known: `-m set` matches on
    /// them are decided from their members (see the module
    /// documentation). When `None`, or for a set not among them, `-m set`
    /// is a condition.
    pub ipsets: Option<Vec<SetText>>,
    /// IPVS's virtual servers with their real servers (IPVS mode), when
    /// known: a packet to one of them is taken by IPVS at LOCAL_IN (after
    /// filter `INPUT`) or, sent by the node, at LOCAL_OUT (after nat
    /// `OUTPUT`), and leaves towards one real server. Their addresses count
    /// as the node's own (kube-proxy binds them on `kube-ipvs0`). When
    /// `None`, IPVS is not modelled.
    pub virtual_servers: Option<Vec<VirtualServer>>,
}

impl TraceOptions {
    /// Options that know nothing of the node: no local addresses, no
    /// interface, mark 0, iptables mode's jump rules, no ipsets, IPVS not
    /// modelled.
    pub fn new() -> TraceOptions {
        TraceOptions::default()
    }

    /// With the node's own addresses ([`TraceOptions::local_ips`]).
    pub fn with_local_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> TraceOptions {
        self.local_ips = ips.into_iter().collect();
        self
    }

    /// With the interface a non-local packet arrives on
    /// ([`TraceOptions::in_interface`]).
    pub fn with_in_interface(mut self, interface: impl Into<String>) -> TraceOptions {
        self.in_interface = Some(interface.into());
        self
    }

    /// With the packet's firewall mark on arrival ([`TraceOptions::mark`]).
    pub fn with_mark(mut self, mark: u32) -> TraceOptions {
        self.mark = mark;
        self
    }

    /// With the proxy mode whose jump rules missing built-in chains are
    /// assumed to hold ([`TraceOptions::mode`]).
    pub fn with_mode(mut self, mode: ProxyMode) -> TraceOptions {
        self.mode = mode;
        self
    }

    /// With where the rules come from, for the notes
    /// ([`TraceOptions::source`]).
    pub fn with_source(mut self, source: impl Into<String>) -> TraceOptions {
        self.source = Some(source.into());
        self
    }

    /// With the node's ipsets ([`TraceOptions::ipsets`]).
    pub fn with_ipsets(mut self, sets: Vec<SetText>) -> TraceOptions {
        self.ipsets = Some(sets);
        self
    }

    /// With IPVS's virtual servers ([`TraceOptions::virtual_servers`]).
    pub fn with_virtual_servers(mut self, servers: Vec<VirtualServer>) -> TraceOptions {
        self.virtual_servers = Some(servers);
        self
    }
}

/// Where the walk started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    /// A packet arriving from outside the node (or from a pod).
    Prerouting,
    /// A packet sent by the node itself.
    Output,
}

/// The final verdict of one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// The destination was rewritten and the packet passes.
    Dnat,
    /// The packet passes unchanged (by a rule or a chain policy).
    Accept,
    /// Dropped silently.
    Drop,
    /// Rejected with an ICMP error (or TCP reset).
    Reject,
}

/// One rule (or chain policy) on an outcome's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// 1-based position of the rule in its chain; `None` for a policy.
    pub rule: Option<usize>,
    /// The rule as iptables-save prints it, or `policy ACCEPT`.
    pub text: String,
}

/// One way the connection can go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The verdict.
    pub action: Action,
    /// The DNAT destination, if the destination was rewritten.
    #[serde(serialize_with = "ser_opt_display")]
    pub to: Option<SocketAddr>,
    /// How likely this outcome is, given its conditions.
    pub probability: f64,
    /// Whether the source is masqueraded (SNAT to the node) on the way out.
    pub masquerade: bool,
    /// Whether the packet is delivered to the node itself (else forwarded);
    /// meaningless for DROP/REJECT.
    pub local: bool,
    /// What must hold for this outcome, beyond a brand-new client: each
    /// once, never two that contradict each other. When several ways lead
    /// here, the last one is "either ..., or ...".
    pub conditions: Vec<String>,
    /// Every rule that matched, in order, with the policies that decided
    /// (of the first way, when there are several). IPVS's choice is a step
    /// of table `ipvs`, chain `LOCAL_IN` or `LOCAL_OUT`.
    pub path: Vec<Step>,
    /// The IPVS virtual server that took the packet and the real server it
    /// chose (absent from JSON when IPVS did not take it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipvs: Option<IpvsChoice>,
    /// The ways to this outcome when there are several (branches that
    /// reached the same place in the same state, joined): each with what it
    /// assumed, its probability given that, and its path. Empty (and absent
    /// from JSON) when `path` is the only way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ways: Vec<Way>,
}

/// One way to an outcome joined from several.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Way {
    /// What this way assumed (a client without session-affinity history
    /// included).
    pub conditions: Vec<String>,
    /// How likely this way is, given its conditions.
    pub probability: f64,
    /// Every rule that matched on this way.
    pub path: Vec<Step>,
    /// How many other paths with the same conditions this way's probability
    /// includes, when there were too many to list (absent from JSON when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub unlisted: usize,
}

pub use self::ipvs::IpvsChoice;
pub use self::nftables::trace_nftables;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every outcome of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// Where the walk started.
    pub hook: Hook,
    /// The outcomes, in rule order.
    pub outcomes: Vec<Outcome>,
    /// What the trace assumed about the node or the rules.
    pub assumptions: Vec<String>,
    /// What is worth saying first about the rules, e.g. that they hold no
    /// kube-proxy rules for the packet's family.
    pub notes: Vec<String>,
}

fn ser_opt_display<S: serde::Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

/// More branches than this and the walk stops splitting on conditions.
const MAX_BRANCHES: usize = 4096;

/// Branches at one place in one state are joined pairwise only up to this
/// many (joining is quadratic; more means the splitting cap is near anyway).
const MAX_JOIN: usize = 512;

/// Traces `packet` through `rules`. See the module documentation.
pub fn trace(rules: &Ruleset, packet: &Packet, opts: &TraceOptions) -> Trace {
    let family = IpFamily::of(&packet.dst);
    let source = opts.source.as_deref().unwrap_or("the rules");
    let mut notes = Vec::new();
    let empty = Ruleset::default();
    let rules = match rules.family() {
        Some(f) if f != family => {
            notes.push(format!(
                "no kube-proxy rules for {} in {source}: it holds {} rules, which an {} packet never meets",
                family.as_k8s_str(),
                f.as_k8s_str(),
                family.as_k8s_str()
            ));
            &empty
        }
        _ => rules,
    };
    let kube_proxy = has_mode_chains(rules, opts.mode);
    if !kube_proxy && notes.is_empty() {
        notes.push(format!(
            "no kube-proxy rules for {} in {source}: no kube-proxy chain to jump to, so none is assumed",
            family.as_k8s_str()
        ));
    }
    let mut w = Walker {
        tables: HashMap::new(),
        packet,
        opts,
        assumptions: Vec::new(),
        in_dev: None,
        routed: false,
        splits: 0,
        affinity: false,
        sets: known_sets(opts),
        ipvs_notes: Vec::new(),
    };
    for table in ["raw", "mangle", "security"] {
        if rules.table(table).is_some_and(|t| !t.rules.is_empty()) {
            w.assumptions.push(format!(
                "the {table} table has rules, which this trace does not evaluate \
                 (e.g. NOTRACK in raw would skip nat, MARK in mangle could change masquerading)"
            ));
        }
    }
    for table in ["nat", "filter"] {
        let view = w.view(rules, table, kube_proxy);
        w.tables.insert(table, view);
    }
    if let Some(given) = &opts.ipsets {
        w.assumptions.extend(unread_sets(rules, given, &w.sets));
    }
    let start = Branch {
        dst: packet.dst,
        dport: packet.dport,
        mark: opts.mark,
        dnat: None,
        masquerade: false,
        ipvs: None,
        probability: 1.0,
        ways: vec![WayState {
            facts: Facts::default(),
            path: Vec::new(),
            probability: 1.0,
            unlisted: 0,
        }],
        order: Vec::new(),
    };
    let hook = if w.is_local(&packet.src) {
        Hook::Output
    } else {
        Hook::Prerouting
    };
    let first = match hook {
        Hook::Prerouting => ("nat", "PREROUTING"),
        Hook::Output => ("nat", "OUTPUT"),
    };
    // Branches that ended: (branch, verdict, delivered locally).
    let mut ended: Vec<(Branch, Action, bool)> = Vec::new();
    let mut routed: [Vec<Branch>; 2] = Default::default();
    // Branches IPVS sent to a real server (from LOCAL_IN or LOCAL_OUT): on
    // through filter OUTPUT and nat POSTROUTING, as if sent by the node.
    let mut sent: [Vec<Branch>; 2] = Default::default();
    for (b, v) in w.hook(first.0, first.1, vec![start], hook) {
        match v {
            Some(v) => ended.push((b, v, false)),
            None if hook == Hook::Output && w.virtual_server(&b).is_some() => {
                w.ipvs(b, "LOCAL_OUT", &mut ended, &mut sent);
            }
            None => {
                let local = w.is_local(&b.dst);
                routed[usize::from(local)].push(b);
            }
        }
    }
    for (local, live) in routed.into_iter().enumerate() {
        w.stages(hook, local == 1, live, &mut ended, &mut sent);
    }
    for (local, live) in sent.into_iter().enumerate() {
        // IPVS takes a packet once.
        w.stages(
            Hook::Output,
            local == 1,
            live,
            &mut ended,
            &mut Default::default(),
        );
    }
    // Outcomes that end alike are one outcome, when that is exact.
    let mut groups: Vec<((Action, bool), Vec<Branch>)> = Vec::new();
    for (b, action, local) in ended {
        match groups.iter_mut().find(|(k, _)| *k == (action, local)) {
            Some((_, bs)) => bs.push(b),
            None => groups.push(((action, local), vec![b])),
        }
    }
    let mut ended: Vec<(Vec<u32>, Outcome)> = Vec::new();
    let mut ipvs_affinity = false;
    for ((action, local), bs) in groups {
        for b in join(bs) {
            w.affinity |= b
                .ways
                .iter()
                .any(|w| w.facts.has_quiet(|p| !ipvs::is_persistence(p)));
            ipvs_affinity |= b
                .ways
                .iter()
                .any(|w| w.facts.has_quiet(ipvs::is_persistence));
            ended.push((b.order.clone(), b.finish(action, local)));
        }
    }
    // Rule order: the order in which a depth-first walk finds them.
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    let outcomes: Vec<Outcome> = ended.into_iter().map(|(_, o)| o).collect();
    let mut assumptions = w.assumptions;
    for n in w.ipvs_notes {
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
    if w.affinity {
        assumptions.push(
            "the client has no session-affinity history (`recent --rcheck` does not match) \
             unless an outcome's conditions say so"
                .into(),
        );
    }
    if ipvs_affinity {
        assumptions.push(
            "the client has no IPVS persistence template (ClientIP affinity) \
             unless an outcome's conditions say so"
                .into(),
        );
    }
    Trace {
        hook,
        outcomes,
        assumptions,
        notes,
    }
}

/// What to say of the sets the nat and filter rules match on whose members
/// the trace does not know although ipsets were given: missing, or of a
/// type it does not read.
fn unread_sets(
    rules: &Ruleset,
    given: &[SetText],
    known: &HashMap<String, Rc<KnownSet>>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let named = ["nat", "filter"]
        .into_iter()
        .filter_map(|t| rules.table(t))
        .flat_map(|t| &t.rules)
        .flat_map(|r| &r.matches)
        .filter(|m| m.module == "set")
        .filter_map(|m| m.value("--match-set"));
    for name in named {
        if known.contains_key(name) {
            continue;
        }
        let text = match given.iter().find(|s| s.name == name) {
            Some(s) => format!(
                "ipset {name} is of type {} (or has members) the trace does not read: \
                 its matches are conditions",
                s.set_type
            ),
            None => format!(
                "ipset {name} is not among the ipsets read (iptables-restore refuses a rule \
                 naming a missing set): its matches are conditions"
            ),
        };
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// Whether `rules` hold any nat or filter chain of `mode`.
fn has_mode_chains(rules: &Ruleset, mode: ProxyMode) -> bool {
    let profile = mode.profile();
    ["nat", "filter"].into_iter().any(|name| {
        rules.table(name).is_some_and(|t| {
            t.chains.iter().any(|c| profile.owns_chain(name, &c.name))
                || t.rules.iter().any(|r| profile.owns_chain(name, &r.chain))
        })
    })
}

/// One branch of the walk: a packet state at a place, reached by one or
/// more ways.
#[derive(Debug, Clone)]
struct Branch {
    dst: IpAddr,
    dport: u16,
    mark: u32,
    dnat: Option<SocketAddr>,
    masquerade: bool,
    /// What IPVS did with the packet, once it took it.
    ipvs: Option<IpvsChoice>,
    /// How likely the branch is, given any one of its ways' assumptions.
    probability: f64,
    /// Never empty. Several when branches joined: either with the same
    /// assumptions (their probabilities added up) or with disjoint ones and
    /// the same probability.
    ways: Vec<WayState>,
    /// The choices that led here (index among the branches of each split):
    /// sorting by it gives the order of a depth-first walk, matched first.
    order: Vec<u32>,
}

/// One way a branch was reached.
#[derive(Debug, Clone)]
struct WayState {
    /// What it assumed about unknown state.
    facts: Facts,
    path: Vec<Step>,
    /// How likely it is, given its assumptions.
    probability: f64,
    /// Other ways with the same assumptions whose probability this one
    /// took, when there were too many to list.
    unlisted: usize,
}

/// What makes two branches' futures the same: destination, port, mark,
/// DNAT, masquerade.
type StateKey = (IpAddr, u16, u32, Option<SocketAddr>, bool);

/// At most this many ways are listed in one branch: branches with disjoint
/// assumptions that would need more are not joined; ways with the same
/// assumptions as a listed one are counted in it.
const MAX_WAYS: usize = 32;

impl Branch {
    fn finish(self, action: Action, local: bool) -> Outcome {
        let action = match (action, self.dnat) {
            (Action::Accept, Some(_)) => Action::Dnat,
            (a, _) => a,
        };
        let alts: Vec<&Facts> = self.ways.iter().map(|w| &w.facts).collect();
        let conditions = facts::conditions(&alts, self.dst);
        let path = self.ways[0].path.clone();
        let ways = if self.ways.len() > 1 {
            self.ways
                .into_iter()
                .map(|w| Way {
                    conditions: w.facts.conditions(self.dst, true),
                    probability: w.probability,
                    path: w.path,
                    unlisted: w.unlisted,
                })
                .collect()
        } else {
            Vec::new()
        };
        Outcome {
            action,
            to: self.dnat,
            probability: self.probability,
            masquerade: self.masquerade,
            local,
            conditions,
            path,
            ipvs: self.ipvs,
            ways,
        }
    }

    /// The packet state: from the same place on, the same state has the
    /// same future.
    fn state_key(&self) -> StateKey {
        (self.dst, self.dport, self.mark, self.dnat, self.masquerade)
    }

    fn alternatives(&self) -> Vec<&Facts> {
        self.ways.iter().map(|w| &w.facts).collect()
    }

    fn push_step(&mut self, step: Step) {
        for w in &mut self.ways {
            w.path.push(step.clone());
        }
    }

    fn scale(&mut self, p: f64) {
        self.probability *= p;
        for w in &mut self.ways {
            w.probability *= p;
        }
    }

    /// The match's result if every way decides it alike.
    fn decide(&self, q: &Query) -> Option<bool> {
        facts::decide(&self.alternatives(), q)
    }

    /// The branch where the match matches (or not): its ways that can, with
    /// that assumed; `None` when none can.
    fn restrict(&self, q: &Query, matched: bool) -> Option<Branch> {
        let ways: Vec<WayState> = self
            .ways
            .iter()
            .filter_map(|w| {
                Some(WayState {
                    facts: w.facts.restrict(q, matched)?,
                    ..w.clone()
                })
            })
            .collect();
        (!ways.is_empty()).then(|| Branch {
            ways,
            ..self.clone()
        })
    }

    /// `self` and `other` (the same state) as one branch, when that is
    /// exact: the same assumptions (disjoint random ways: probabilities add
    /// up), or disjoint assumptions and the same probability.
    fn join(&self, other: &Branch) -> Option<Branch> {
        let (mine, theirs) = (self.alternatives(), other.alternatives());
        let same = facts::same_alternatives(&mine, &theirs);
        let probability = if same {
            self.probability + other.probability
        } else if (self.probability - other.probability).abs() <= 1e-9
            && self.ways.len() + other.ways.len() <= MAX_WAYS
            && facts::disjoint_alternatives(&mine, &theirs)
        {
            self.probability
        } else {
            return None;
        };
        let (first, second) = if self.order <= other.order {
            (self, other)
        } else {
            (other, self)
        };
        let mut ways = first.ways.clone();
        for w in &second.ways {
            // The same way twice (same assumptions, same rules): one way.
            if let Some(x) = ways
                .iter_mut()
                .find(|x| x.path == w.path && x.facts.same(&w.facts))
            {
                x.probability += w.probability;
                x.unlisted += w.unlisted;
            } else if ways.len() < MAX_WAYS {
                ways.push(w.clone());
            } else if let Some(x) = ways.iter_mut().find(|x| x.facts.same(&w.facts)) {
                // Too many ways to list: one with the same assumptions
                // takes its probability (its path stays one example).
                x.probability += w.probability;
                x.unlisted += 1 + w.unlisted;
            } else {
                return None;
            }
        }
        debug_assert!(same || ways.len() == first.ways.len() + second.ways.len());
        Some(Branch {
            probability,
            ways,
            order: first.order.clone(),
            ..first.clone()
        })
    }
}

/// Joins the branches at one place that have the same future (the same
/// state), when that is exact: see [`Branch::join`].
fn join(bs: Vec<Branch>) -> Vec<Branch> {
    if bs.len() < 2 {
        return bs;
    }
    let mut index: HashMap<StateKey, usize> = HashMap::new();
    let mut groups: Vec<Vec<Branch>> = Vec::new();
    for b in bs {
        match index.entry(b.state_key()) {
            std::collections::hash_map::Entry::Occupied(e) => groups[*e.get()].push(b),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(groups.len());
                groups.push(vec![b]);
            }
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        if g.len() <= MAX_JOIN {
            while join_one(&mut g) {}
        }
        out.extend(g);
    }
    out
}

/// Joins one pair of `g` (all of the same state); whether it did.
fn join_one(g: &mut Vec<Branch>) -> bool {
    for i in 0..g.len() {
        for j in i + 1..g.len() {
            if let Some(b) = g[i].join(&g[j]) {
                g.remove(j);
                g[i] = b;
                return true;
            }
        }
    }
    false
}

/// How a chain (or a hook) ended for a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Fell off the end or hit RETURN.
    Continue,
    /// ACCEPT, or a terminating NAT target: this hook is done, the packet goes on.
    Accept,
    /// DROP.
    Drop,
    /// REJECT.
    Reject,
}

/// A table's rules by chain, with declared policies.
struct TableView<'a> {
    chains: HashMap<&'a str, Vec<(usize, RuleRef<'a>)>>,
    declared: HashMap<&'a str, Option<&'a str>>,
}

#[derive(Clone)]
enum RuleRef<'a> {
    Saved(&'a Rule),
    Assumed(std::rc::Rc<Rule>),
}

impl RuleRef<'_> {
    fn rule(&self) -> &Rule {
        match self {
            RuleRef::Saved(r) => r,
            RuleRef::Assumed(r) => r,
        }
    }
}

struct Walker<'a> {
    tables: HashMap<&'static str, TableView<'a>>,
    packet: &'a Packet,
    opts: &'a TraceOptions,
    assumptions: Vec<String>,
    /// The input interface at the current hook: `Some("")` where there is
    /// none (locally generated, or in POSTROUTING), `Some("lo")` on
    /// loop-back delivery, `None` when unknown (an [`Atom::In`]).
    in_dev: Option<String>,
    /// Whether the current hook has an output interface (FORWARD, OUTPUT,
    /// POSTROUTING): `lo` for a local destination, else the route's (an
    /// [`Atom::Out`]). Without one, `-o` sees no interface.
    routed: bool,
    /// Branch splits so far, over the whole trace.
    splits: usize,
    /// Whether an outcome assumed no session-affinity history.
    affinity: bool,
    /// The sets of [`TraceOptions::ipsets`] the trace can match against, by name.
    sets: HashMap<String, Rc<KnownSet>>,
    /// What IPVS's virtual servers make worth saying (weight 0, no real server).
    ipvs_notes: Vec<String>,
}

/// The sets of `opts` whose members the trace can read.
fn known_sets(opts: &TraceOptions) -> HashMap<String, Rc<KnownSet>> {
    opts.ipsets
        .iter()
        .flatten()
        .filter_map(|s| Some((s.name.clone(), Rc::new(KnownSet::new(s)?))))
        .collect()
}

/// A match's result for one branch.
enum Test {
    Known(bool),
    /// Matches with this probability.
    Random(f64),
    /// Depends on state the trace does not know.
    Unknown(Query),
}

type TestFn = Box<dyn Fn(&Walker<'_>, &Branch) -> Test>;

impl<'a> Walker<'a> {
    fn view(&mut self, rules: &'a Ruleset, name: &'static str, kube_proxy: bool) -> TableView<'a> {
        let mut chains: HashMap<&str, Vec<(usize, RuleRef<'a>)>> = HashMap::new();
        let mut declared = HashMap::new();
        if let Some(t) = rules.table(name) {
            for c in &t.chains {
                declared.insert(c.name.as_str(), c.policy.as_deref());
            }
            for r in &t.rules {
                let rules = chains.entry(r.chain.as_str()).or_default();
                let n = rules.len() + 1;
                rules.push((n, RuleRef::Saved(r)));
            }
        }
        if !kube_proxy {
            return TableView { chains, declared };
        }
        let builtins: &[&'static str] = match name {
            "nat" => &["PREROUTING", "OUTPUT", "POSTROUTING"],
            _ => &["INPUT", "FORWARD", "OUTPUT"],
        };
        for &chain in builtins {
            if declared.contains_key(chain) || chains.contains_key(chain) {
                continue;
            }
            // Only jumps that lead somewhere: a chain of the rules.
            let assumed: Vec<(usize, RuleRef<'a>)> = self
                .opts
                .mode
                .profile()
                .fresh_builtin_rules(name, chain)
                .into_iter()
                .filter(|r| {
                    r.target_name()
                        .is_some_and(|t| declared.contains_key(t) || chains.contains_key(t))
                })
                .enumerate()
                .map(|(i, r)| (i + 1, RuleRef::Assumed(std::rc::Rc::new(r))))
                .collect();
            if !assumed.is_empty() {
                self.assumptions.push(format!(
                    "{name} {chain} is not in the rules: assumed kube-proxy's jump rules, as on a fresh node"
                ));
                chains.insert(chain, assumed);
            }
        }
        TableView { chains, declared }
    }

    fn is_local(&self, ip: &IpAddr) -> bool {
        ip.is_loopback()
            || self.opts.local_ips.contains(ip)
            || self
                .opts
                .virtual_servers
                .iter()
                .flatten()
                .any(|v| v.address == *ip)
    }

    /// Runs the built-in chains a routed packet meets from `hook` on (to a
    /// local destination or not); a packet from outside that filter INPUT
    /// accepts and whose destination is a virtual server is IPVS's
    /// (LOCAL_IN), and goes on to `sent`.
    fn stages(
        &mut self,
        hook: Hook,
        local: bool,
        mut live: Vec<Branch>,
        ended: &mut Vec<(Branch, Action, bool)>,
        sent: &mut [Vec<Branch>; 2],
    ) {
        let stages: &[(&'static str, &'static str)] = match (hook, local) {
            (Hook::Prerouting, true) => &[("filter", "INPUT")],
            (Hook::Prerouting, false) => &[("filter", "FORWARD"), ("nat", "POSTROUTING")],
            (Hook::Output, true) => &[
                ("filter", "OUTPUT"),
                ("nat", "POSTROUTING"),
                ("filter", "INPUT"),
            ],
            (Hook::Output, false) => &[("filter", "OUTPUT"), ("nat", "POSTROUTING")],
        };
        for &(table, chain) in stages {
            if live.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (b, v) in self.hook(table, chain, live, hook) {
                match v {
                    Some(v) => ended.push((b, v, local)),
                    None => next.push(b),
                }
            }
            live = next;
        }
        for b in live {
            if hook == Hook::Prerouting && local && self.virtual_server(&b).is_some() {
                self.ipvs(b, "LOCAL_IN", ended, sent);
            } else {
                ended.push((b, Action::Accept, local));
            }
        }
    }

    /// Runs built-in `chain` of `table` for `bs`: `None` means the packet goes on.
    fn hook(
        &mut self,
        table: &'static str,
        chain: &'static str,
        bs: Vec<Branch>,
        hook: Hook,
    ) -> Vec<(Branch, Option<Action>)> {
        (self.in_dev, self.routed) = match (hook, chain) {
            (Hook::Prerouting, "POSTROUTING") => (Some(String::new()), true),
            (Hook::Prerouting, _) => (self.opts.in_interface.clone(), chain == "FORWARD"),
            (Hook::Output, "INPUT") => (Some("lo".into()), false),
            (Hook::Output, _) => (Some(String::new()), true),
        };
        let policy = self
            .tables
            .get(table)
            .and_then(|t| t.declared.get(chain).copied().flatten())
            .unwrap_or("ACCEPT")
            .to_string();
        self.chain(table, chain, bs, 0)
            .into_iter()
            .map(|(mut b, flow)| match flow {
                Flow::Accept => (b, None),
                Flow::Drop => (b, Some(Action::Drop)),
                Flow::Reject => (b, Some(Action::Reject)),
                Flow::Continue => {
                    let verdict = match policy.as_str() {
                        "DROP" => Some(Action::Drop),
                        _ => None,
                    };
                    if verdict.is_some() {
                        b.push_step(Step {
                            table: table.into(),
                            chain: chain.into(),
                            rule: None,
                            text: format!("policy {policy}"),
                        });
                    }
                    (b, verdict)
                }
            })
            .collect()
    }

    /// Runs user or built-in `chain` for the branches entering it, rule by
    /// rule (all branches at a rule at once, so those in the same state
    /// join), returning every branch's end.
    fn chain(
        &mut self,
        table: &'static str,
        chain: &str,
        entering: Vec<Branch>,
        depth: usize,
    ) -> Vec<(Branch, Flow)> {
        let rules: Vec<(usize, RuleRef<'a>)> = self
            .tables
            .get(table)
            .and_then(|t| t.chains.get(chain))
            .cloned()
            .unwrap_or_default();
        let mut done: Vec<(Branch, Flow)> = Vec::new();
        // at[i]: the branches about to run rule i (at[len]: fell off the end).
        let mut at: Vec<Vec<Branch>> = vec![Vec::new(); rules.len() + 1];
        at[0] = entering;
        for (i, (n, rule)) in rules.iter().enumerate() {
            let here = join(std::mem::take(&mut at[i]));
            if here.is_empty() {
                continue;
            }
            let rule = rule.rule();
            let tests = self.tests(rule);
            let mut jumping = Vec::new();
            for b in here {
                for (mut b, matched) in self.matches(&tests, b) {
                    if !matched {
                        at[i + 1].push(b);
                        continue;
                    }
                    b.push_step(Step {
                        table: table.into(),
                        chain: chain.into(),
                        rule: Some(*n),
                        text: render_rule(rule),
                    });
                    let Some(target) = &rule.target else {
                        at[i + 1].push(b);
                        continue;
                    };
                    match target.name.as_str() {
                        "ACCEPT" => done.push((b, Flow::Accept)),
                        "DROP" => done.push((b, Flow::Drop)),
                        "REJECT" => done.push((b, Flow::Reject)),
                        "RETURN" => done.push((b, Flow::Continue)),
                        "DNAT" => {
                            let to = target
                                .value("--to-destination")
                                .and_then(|v| parse_destination(v, b.dport));
                            match to {
                                Some(to) => {
                                    b.dst = to.ip();
                                    b.dport = to.port();
                                    b.dnat = Some(to);
                                }
                                None => self.assume(format!(
                                    "DNAT without a single destination in {table} {chain} rule {n}: destination left unchanged"
                                )),
                            }
                            done.push((b, Flow::Accept));
                        }
                        "MASQUERADE" | "SNAT" => {
                            b.masquerade = true;
                            done.push((b, Flow::Accept));
                        }
                        "MARK" => {
                            b.mark = apply_mark(b.mark, rule);
                            at[i + 1].push(b);
                        }
                        "LOG" | "NFLOG" | "TRACE" | "CONNMARK" | "CT" | "NOTRACK" => {
                            at[i + 1].push(b);
                        }
                        sub if self.has_chain(table, sub) => jumping.push(b),
                        other => {
                            self.assume(if !is_target(other) {
                                format!("{table} {chain} rule {n} jumps to {other}, which does not exist: ignored")
                            } else {
                                format!("target {other} in {table} {chain} rule {n} is not modelled: treated as continuing")
                            });
                            at[i + 1].push(b);
                        }
                    }
                }
            }
            if jumping.is_empty() {
                continue;
            }
            let Some(target) = &rule.target else {
                continue;
            };
            let sub = target.name.as_str();
            if depth > 64 {
                self.assume(format!(
                    "jumps nested deeper than 64 at {table} {sub}: not followed"
                ));
                at[i + 1].extend(jumping);
                continue;
            }
            for (b, flow) in self.chain(table, sub, jumping, depth + 1) {
                match flow {
                    Flow::Continue if target.goto => done.push((b, Flow::Continue)),
                    Flow::Continue => at[i + 1].push(b),
                    f => done.push((b, f)),
                }
            }
        }
        let last = std::mem::take(&mut at[rules.len()]);
        done.extend(last.into_iter().map(|b| (b, Flow::Continue)));
        // Branches that leave the chain alike join.
        let mut groups: Vec<(Flow, Vec<Branch>)> = Vec::new();
        for (b, flow) in done {
            match groups.iter_mut().find(|(f, _)| *f == flow) {
                Some((_, bs)) => bs.push(b),
                None => groups.push((flow, vec![b])),
            }
        }
        groups
            .into_iter()
            .flat_map(|(flow, bs)| join(bs).into_iter().map(move |b| (b, flow)))
            .collect()
    }

    fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.tables
            .get(table)
            .is_some_and(|t| t.chains.contains_key(chain) || t.declared.contains_key(chain))
    }

    fn assume(&mut self, text: String) {
        if !self.assumptions.contains(&text) {
            self.assumptions.push(text);
        }
    }

    /// Splits `b` by a rule's matches: `(branch, matched)` pairs, matched
    /// first. Matches the trace knows are checked first (one that fails
    /// splits nothing), then unknowns against what the branch assumed (a
    /// decided one splits nothing either), then the random ones.
    fn matches(&mut self, tests: &[TestFn], b: Branch) -> Vec<(Branch, bool)> {
        let mut random = 1.0;
        let mut unknown = Vec::new();
        for t in tests {
            match t(self, &b) {
                Test::Known(true) => {}
                Test::Known(false) => return vec![(b, false)],
                Test::Random(p) => random *= p,
                Test::Unknown(q) => unknown.push(q),
            }
        }
        let mut missed: Vec<Branch> = Vec::new();
        let mut hit = Some(b);
        for q in unknown {
            let Some(b) = hit.take() else { break };
            match b.decide(&q) {
                Some(true) => hit = Some(b),
                Some(false) => missed.push(b),
                None if self.splits >= MAX_BRANCHES => {
                    let cond = Facts::default()
                        .restrict(&q, true)
                        .map(|f| f.conditions(b.dst, true))
                        .unwrap_or_default();
                    self.assume(format!(
                        "too many branches: assumed that this does not hold: {}",
                        cond.join(", and ")
                    ));
                    missed.extend(b.restrict(&q, false));
                }
                None => {
                    self.splits += 1;
                    missed.extend(b.restrict(&q, false));
                    hit = b.restrict(&q, true);
                }
            }
        }
        let mut out: Vec<(Branch, bool)> = Vec::new();
        if let Some(mut b) = hit {
            if random >= 1.0 {
                out.push((b, true));
            } else if random <= 0.0 {
                missed.insert(0, b);
            } else if self.splits >= MAX_BRANCHES {
                self.assume(format!(
                    "more than {MAX_BRANCHES} branches: from here on, random matches take their more likely side, so probabilities are approximate"
                ));
                if random >= 0.5 {
                    out.push((b, true));
                } else {
                    missed.insert(0, b);
                }
            } else {
                self.splits += 1;
                let mut miss = b.clone();
                miss.scale(1.0 - random);
                b.scale(random);
                out.push((b, true));
                missed.insert(0, miss);
            }
        }
        out.extend(missed.into_iter().map(|b| (b, false)));
        if out.len() > 1 {
            for (k, (b, _)) in out.iter_mut().enumerate() {
                b.order.push(k as u32);
            }
        }
        out
    }

    /// The rule's matches as tests, in the order the kernel runs them.
    fn tests(&self, rule: &Rule) -> Vec<TestFn> {
        let mut tests: Vec<TestFn> = Vec::new();
        let src = self.packet.src;
        let proto = self.packet.protocol;
        for o in &rule.base {
            let neg = o.negated;
            let v = o.values.first().cloned().unwrap_or_default();
            match o.name.as_str() {
                "-s" => tests.push(Box::new(move |_, _| known(neg, addr_matches(&v, &src)))),
                "-d" => tests.push(Box::new(move |_, b| known(neg, addr_matches(&v, &b.dst)))),
                "-p" => tests.push(Box::new(move |_, _| known(neg, protocol_is(&v, proto)))),
                "-f" => tests.push(Box::new(move |_, _| known(neg, false))),
                "-i" => tests.push(Box::new(move |w, _| match &w.in_dev {
                    Some(dev) => known(neg, facts::iface_matches(&v, dev)),
                    None => iface_query(Atom::In, &v, neg),
                })),
                "-o" => tests.push(Box::new(move |w, b| {
                    if !w.routed {
                        known(neg, facts::iface_matches(&v, ""))
                    } else if w.is_local(&b.dst) {
                        known(neg, facts::iface_matches(&v, "lo"))
                    } else {
                        iface_query(Atom::Out(b.dst), &v, neg)
                    }
                })),
                other => {
                    let prop = Prop::matches(&format!("{other} {v}"));
                    tests.push(Box::new(move |_, _| prop_query(&prop, neg)));
                }
            }
        }
        for m in &rule.matches {
            for o in &m.options {
                let neg = o.negated;
                let v = o.values.first().cloned().unwrap_or_default();
                let module = m.module.as_str();
                let t: Option<TestFn> = match (module, o.name.as_str()) {
                    ("comment", _) | ("nfacct", _) => None,
                    ("tcp" | "udp" | "sctp", "--dport" | "--destination-port") => {
                        Some(Box::new(move |_, b| known(neg, port_matches(&v, b.dport))))
                    }
                    ("tcp" | "udp" | "sctp", "--sport" | "--source-port") => {
                        let sport = self.packet.sport;
                        let prop = Prop {
                            yes: format!("the source port is {v}"),
                            no: format!("the source port is not {v}"),
                            quiet_no: false,
                        };
                        Some(Box::new(move |_, _| match sport {
                            Some(p) => known(neg, port_matches(&v, p)),
                            None => prop_query(&prop, neg),
                        }))
                    }
                    ("tcp", "--syn") => Some(Box::new(move |_, _| known(neg, true))),
                    ("multiport", "--dports" | "--destination-ports" | "--ports") => {
                        Some(Box::new(move |_, b| {
                            known(neg, v.split(',').any(|p| port_matches(p, b.dport)))
                        }))
                    }
                    ("conntrack", "--ctstate") | ("state", "--state") => {
                        Some(Box::new(move |_, b| {
                            known(neg, v.split(',').any(|s| ct_state(s, b)))
                        }))
                    }
                    ("conntrack", "--ctorigdst") => {
                        let dst = self.packet.dst;
                        Some(Box::new(move |_, _| known(neg, addr_matches(&v, &dst))))
                    }
                    ("conntrack", "--ctorigdstport") => {
                        let port = self.packet.dport;
                        Some(Box::new(move |_, _| known(neg, port_matches(&v, port))))
                    }
                    ("mark", "--mark") => Some(Box::new(move |_, b| {
                        known(
                            neg,
                            mark_pair(&v).is_some_and(|(val, mask)| b.mark & mask == val),
                        )
                    })),
                    ("addrtype", "--src-type") => {
                        Some(Box::new(move |w, _| addr_type(w, neg, &v, &src)))
                    }
                    ("addrtype", "--dst-type") => {
                        Some(Box::new(move |w, b| addr_type(w, neg, &v, &b.dst)))
                    }
                    ("addrtype", "--limit-iface-in" | "--limit-iface-out") => None,
                    ("statistic", "--probability") => {
                        let p = rule.probability().unwrap_or(1.0);
                        let p = if neg { 1.0 - p } else { p };
                        Some(Box::new(move |_, _| Test::Random(p)))
                    }
                    ("statistic", "--every") => {
                        let every: f64 = v.parse().unwrap_or(1.0);
                        let p = 1.0 / every.max(1.0);
                        let p = if neg { 1.0 - p } else { p };
                        Some(Box::new(move |_, _| Test::Random(p)))
                    }
                    ("statistic", _) => None,
                    ("recent", "--rcheck" | "--update") => {
                        let name = m.value("--name").unwrap_or("DEFAULT").to_string();
                        let secs = m
                            .value("--seconds")
                            .map(|s| format!(" within {s}s"))
                            .unwrap_or_default();
                        let prop = Prop {
                            yes: format!("the client was sent to {name}{secs} (session affinity)"),
                            no: format!("the client was not sent to {name}{secs}"),
                            quiet_no: true,
                        };
                        Some(Box::new(move |_, _| prop_query(&prop, neg)))
                    }
                    ("recent", _) => None,
                    ("limit" | "hashlimit", _) => None,
                    ("set", "--match-set") => {
                        let name = v.clone();
                        let flags = o.values.get(1).cloned().unwrap_or_else(|| "dst".into());
                        let members = self.sets.get(&name).cloned();
                        let sport = self.packet.sport;
                        Some(Box::new(move |_, b| {
                            let lookup = Lookup {
                                src,
                                dst: b.dst,
                                sport,
                                dport: b.dport,
                                protocol: proto,
                            };
                            if let Some(m) =
                                members.as_ref().and_then(|k| k.lookup(&flags, &lookup))
                            {
                                return known(neg, m);
                            }
                            let what = set_element(&flags, src, b, proto);
                            let prop = Prop {
                                yes: format!("ipset {name} holds {what}"),
                                no: format!("ipset {name} does not hold {what}"),
                                quiet_no: false,
                            };
                            prop_query(&prop, neg)
                        }))
                    }
                    ("set", _) => None,
                    ("ipvs", opt) if self.opts.virtual_servers.is_some() => {
                        let opt = opt.to_string();
                        let prop = Prop::matches(format!("-m ipvs {opt} {v}").trim_end());
                        // Without the IPVS property (a packet IPVS did
                        // not take) the whole match fails, negated or not.
                        Some(Box::new(move |_, b| match &b.ipvs {
                            None if opt == "--ipvs" => known(neg, false),
                            None => Test::Known(false),
                            Some(c) => match ipvs::ipvs_match(&opt, &v, c) {
                                Some(m) => known(neg, m),
                                None => prop_query(&prop, neg),
                            },
                        }))
                    }
                    (module, name) => {
                        let text = format!("-m {module} {name} {}", o.values.join(" "));
                        let prop = Prop::matches(text.trim_end());
                        Some(Box::new(move |_, _| prop_query(&prop, neg)))
                    }
                };
                if let Some(t) = t {
                    tests.push(t);
                }
            }
            if m.module == "icmp" || m.module == "icmp6" {
                tests.push(Box::new(|_, _| Test::Known(false)));
            }
        }
        tests
    }
}

fn known(negated: bool, matched: bool) -> Test {
    Test::Known(matched != negated)
}

fn prop_query(prop: &Prop, negated: bool) -> Test {
    Test::Unknown(Query {
        atom: Atom::Prop(prop.clone()),
        pred: Pred::Is(!negated),
    })
}

fn iface_query(atom: Atom, spec: &str, negated: bool) -> Test {
    Test::Unknown(Query {
        atom,
        pred: Pred::Iface {
            spec: spec.to_string(),
            negated,
        },
    })
}

/// What `-m set --match-set NAME FLAGS` looks up: `the destination
/// 10.32.0.2`, or for several dimensions `10.96.0.10,udp:53`.
fn set_element(flags: &str, src: IpAddr, b: &Branch, proto: Protocol) -> String {
    let flags: Vec<&str> = flags.split(',').collect();
    if let [one] = flags.as_slice() {
        return match *one {
            "src" => format!("the source {src}"),
            _ => format!("the destination {}", b.dst),
        };
    }
    flags
        .iter()
        .enumerate()
        .map(|(i, f)| match (i, *f) {
            (1, "src") => format!("{proto}:(source port)"),
            (1, _) => format!("{proto}:{}", b.dport),
            (_, "src") => src.to_string(),
            (_, _) => b.dst.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn addr_type(w: &Walker<'_>, neg: bool, ty: &str, ip: &IpAddr) -> Test {
    match ty {
        "LOCAL" => known(neg, w.is_local(ip)),
        "UNICAST" => known(neg, !ip.is_multicast() && !w.is_local(ip)),
        "MULTICAST" => known(neg, ip.is_multicast()),
        other => prop_query(
            &Prop {
                yes: format!("the address {ip} is of type {other}"),
                no: format!("the address {ip} is not of type {other}"),
                quiet_no: false,
            },
            neg,
        ),
    }
}

fn protocol_is(spec: &str, p: Protocol) -> bool {
    let spec = spec.to_ascii_lowercase();
    spec == "all"
        || spec == "0"
        || spec == p.as_str()
        || spec
            == match p {
                Protocol::Tcp => "6",
                Protocol::Udp => "17",
                Protocol::Sctp => "132",
            }
}

fn port_matches(spec: &str, port: u16) -> bool {
    match spec.split_once(':') {
        Some((lo, hi)) => {
            let lo: u16 = lo.parse().unwrap_or(0);
            let hi: u16 = hi.parse().unwrap_or(u16::MAX);
            (lo..=hi).contains(&port)
        }
        None => spec.parse() == Ok(port),
    }
}

/// Conntrack state of a new connection's first packet at this point.
fn ct_state(state: &str, b: &Branch) -> bool {
    match state {
        "NEW" => true,
        "DNAT" => b.dnat.is_some(),
        _ => false,
    }
}

/// The packet mark after a `-j MARK` rule.
fn apply_mark(mark: u32, rule: &Rule) -> u32 {
    let Some(t) = &rule.target else { return mark };
    let get = |name: &str| t.value(name).and_then(mark_pair);
    if let Some((v, m)) = get("--set-xmark") {
        (mark & !m) ^ v
    } else if let Some((v, m)) = get("--set-mark") {
        (mark & !m) | v
    } else if let Some((v, _)) = get("--or-mark") {
        mark | v
    } else if let Some((v, _)) = get("--xor-mark") {
        mark ^ v
    } else if let Some((v, _)) = get("--and-mark") {
        mark & v
    } else {
        mark
    }
}

/// `ip:port`, `[ip]:port` or a bare `ip` (port unchanged).
fn parse_destination(v: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Some(sa);
    }
    if let Some(ip) = parse_ip_sloppy(v) {
        return Some(SocketAddr::new(ip, port));
    }
    let (host, p) = split_host_port(v)?;
    Some(SocketAddr::new(parse_ip_sloppy(host)?, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SAVE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-2 --mask 255.255.255.255 --rsource -j KUBE-SEP-2
-A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1
-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2
-A KUBE-SVC-A -j KUBE-SEP-3
-A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-2 -p tcp -m recent --set --name KUBE-SEP-2 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.180.0.3:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -j KUBE-FORWARD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -s 10.0.0.0/8 -j ACCEPT
COMMIT
";

    fn run(src: &str, dst: &str, port: u16) -> Trace {
        let rs = Ruleset::parse(SAVE).unwrap();
        let opts = TraceOptions {
            local_ips: vec![ip("192.168.0.2")],
            ..Default::default()
        };
        trace(
            &rs,
            &Packet::new(ip(src), ip(dst), port, Protocol::Tcp),
            &opts,
        )
    }

    #[test]
    fn probabilities_are_effective_and_sum_to_one() {
        let t = run("10.0.0.5", "172.30.0.41", 80);
        let plain: Vec<&Outcome> = t
            .outcomes
            .iter()
            .filter(|o| o.conditions.is_empty())
            .collect();
        let to: Vec<String> = plain.iter().map(|o| o.to.unwrap().to_string()).collect();
        assert_eq!(to, ["10.180.0.1:80", "10.180.0.2:80", "10.180.0.3:8080"]);
        for o in &plain {
            assert!((o.probability - 1.0 / 3.0).abs() < 1e-6, "{o:?}");
            assert_eq!(o.action, Action::Dnat);
            assert!(!o.masquerade);
        }
        let sum: f64 = plain.iter().map(|o| o.probability).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        // The affinity branch is conditional and certain.
        let sticky: Vec<&Outcome> = t
            .outcomes
            .iter()
            .filter(|o| !o.conditions.is_empty())
            .collect();
        assert_eq!(sticky.len(), 1);
        assert_eq!(sticky[0].to.unwrap().to_string(), "10.180.0.2:80");
        assert_eq!(sticky[0].probability, 1.0);
        assert!(sticky[0].conditions[0].contains("KUBE-SEP-2 within 10800s"));
    }

    #[test]
    fn masquerade_follows_the_mark_through_postrouting() {
        let t = run("203.0.113.9", "172.30.0.41", 80);
        assert!(
            t.outcomes
                .iter()
                .all(|o| o.masquerade && o.action == Action::Dnat)
        );
        let last = t.outcomes[0].path.last().unwrap();
        assert_eq!(
            (last.table.as_str(), last.chain.as_str(), last.rule),
            ("nat", "KUBE-POSTROUTING", Some(3))
        );
    }

    #[test]
    fn policies_and_paths() {
        // Not a service, not from the pod network: FORWARD's DROP policy.
        let t = run("203.0.113.9", "8.8.8.8", 53);
        assert_eq!(t.outcomes.len(), 1);
        assert_eq!(t.outcomes[0].action, Action::Drop);
        assert_eq!(t.outcomes[0].path.last().unwrap().text, "policy DROP");
        // From the node itself: OUTPUT, and accepted by OUTPUT's policy.
        let t = run("192.168.0.2", "8.8.8.8", 53);
        assert_eq!(t.hook, Hook::Output);
        assert_eq!(t.outcomes[0].action, Action::Accept);
        let chains: Vec<&str> = t.outcomes[0]
            .path
            .iter()
            .map(|s| s.chain.as_str())
            .collect();
        assert_eq!(chains, ["OUTPUT", "POSTROUTING", "KUBE-POSTROUTING"]);
        assert!(!t.outcomes[0].masquerade);
    }

    /// Each outcome's action and conditions.
    fn actions_and_conditions(t: &Trace) -> Vec<(Action, Vec<String>)> {
        t.outcomes
            .iter()
            .map(|o| (o.action, o.conditions.clone()))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_matches_branch_with_conditions() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m physdev --physdev-is-in -j DROP\n-A INPUT -i eth0 -j REJECT\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let p = Packet::new(ip("10.1.1.1"), ip("127.0.0.1"), 22, Protocol::Tcp);
        let t = trace(&rs, &p, &TraceOptions::default());
        let got = actions_and_conditions(&t);
        assert_eq!(
            got,
            [
                (
                    Action::Drop,
                    strings(&["`-m physdev --physdev-is-in` matches"])
                ),
                (
                    Action::Reject,
                    strings(&[
                        "`-m physdev --physdev-is-in` does not match",
                        "the packet arrives on interface eth0"
                    ])
                ),
                (
                    Action::Accept,
                    strings(&[
                        "`-m physdev --physdev-is-in` does not match",
                        "the packet does not arrive on eth0"
                    ])
                ),
            ]
        );
        let opts = TraceOptions {
            in_interface: Some("eth1".into()),
            ..Default::default()
        };
        let t = trace(&rs, &p, &opts);
        assert_eq!(t.outcomes.len(), 2);
    }

    /// What a branch assumed decides later rules: `-o weave` taken as true
    /// makes `! -o weave` false and `-o docker0` false; taken as false, the
    /// DROP for `-o weave` is never reached.
    #[test]
    fn assumptions_hold_for_the_rest_of_a_branch() {
        let save = "*filter\n:FORWARD DROP [0:0]\n\
            -A FORWARD -o weave -j LOG\n\
            -A FORWARD -o weave -j DROP\n\
            -A FORWARD -i weave ! -o weave -j ACCEPT\n\
            -A FORWARD -o docker0 -j ACCEPT\n\
            -A FORWARD -i docker0 ! -o docker0 -j ACCEPT\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let p = Packet::new(ip("10.32.0.5"), ip("10.32.0.9"), 53, Protocol::Udp);
        let t = trace(&rs, &p, &TraceOptions::default());
        let got = actions_and_conditions(&t);
        assert_eq!(
            got,
            [
                (
                    Action::Drop,
                    strings(&["either the packet leaves on interface weave, or \
                        (the packet does not leave on docker0 and the packet does not arrive on docker0 or weave)"])
                ),
                (
                    Action::Accept,
                    strings(&["either the packet leaves on interface docker0, or \
                        (the packet does not leave on weave and the packet arrives on interface docker0 or weave)"])
                ),
            ]
        );
        // Each way as it was walked: two drops, three accepts.
        let ways = |o: &Outcome| -> Vec<Vec<String>> {
            o.ways.iter().map(|w| w.conditions.clone()).collect()
        };
        assert_eq!(
            ways(&t.outcomes[0]),
            [
                strings(&["the packet leaves on interface weave"]),
                strings(&[
                    "the packet does not leave on docker0 or weave",
                    "the packet does not arrive on docker0 or weave"
                ]),
            ]
        );
        assert_eq!(
            ways(&t.outcomes[1]),
            [
                strings(&[
                    "the packet does not leave on weave",
                    "the packet arrives on interface weave"
                ]),
                strings(&[
                    "the packet leaves on interface docker0",
                    "the packet does not arrive on weave"
                ]),
                strings(&[
                    "the packet does not leave on docker0 or weave",
                    "the packet arrives on interface docker0"
                ]),
            ]
        );
        // The LOG rule on the first way's path, the policy on the last.
        assert_eq!(t.outcomes[0].ways[0].path.len(), 2);
        assert_eq!(
            t.outcomes[0].ways[1].path.last().unwrap().text,
            "policy DROP"
        );
    }

    /// A rule that returns to where its skipped branch is: one branch again,
    /// the unknown dropped from the outcome's conditions, each way kept.
    #[test]
    fn branches_with_the_same_future_join() {
        let save = "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n\
            -A FORWARD -o docker0 -j DOCKER\n\
            -A FORWARD -m set --match-set allowed dst -j ACCEPT\n\
            -A DOCKER -d 172.17.0.2/32 -j ACCEPT\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let p = Packet::new(ip("10.0.0.5"), ip("10.0.0.9"), 80, Protocol::Tcp);
        let t = trace(&rs, &p, &TraceOptions::default());
        assert_eq!(t.outcomes.len(), 2, "{t:#?}");
        assert_eq!(
            t.outcomes[0].conditions,
            ["ipset allowed holds the destination 10.0.0.9"]
        );
        assert_eq!(
            t.outcomes[1].conditions,
            ["ipset allowed does not hold the destination 10.0.0.9"]
        );
        // Each outcome was reached two ways, with and without the DOCKER jump.
        let ways = &t.outcomes[0].ways;
        assert_eq!(ways.len(), 2, "{t:#?}");
        assert_eq!(
            ways[0].conditions,
            [
                "the packet leaves on interface docker0",
                "ipset allowed holds the destination 10.0.0.9"
            ]
        );
        assert_eq!(ways[0].path[0].text, "-A FORWARD -o docker0 -j DOCKER");
        assert_eq!(ways[1].path.len(), 1);
        assert_eq!(t.outcomes[0].path, ways[0].path);
        // The same DNAT reached by affinity and by the only random choice.
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:SVC - [0:0]\n:SEP - [0:0]\n\
            -A PREROUTING -j SVC\n\
            -A SVC -m recent --rcheck --seconds 10800 --reap --name SEP --mask 255.255.255.255 --rsource -j SEP\n\
            -A SVC -j SEP\n\
            -A SEP -p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let t = trace(&rs, &p, &TraceOptions::default());
        assert_eq!(t.outcomes.len(), 1, "{t:#?}");
        assert!(t.outcomes[0].conditions.is_empty());
        assert_eq!(t.outcomes[0].probability, 1.0);
        let ways: Vec<&[String]> = t.outcomes[0]
            .ways
            .iter()
            .map(|w| w.conditions.as_slice())
            .collect();
        assert_eq!(
            ways,
            [
                ["the client was sent to SEP within 10800s (session affinity)"],
                ["the client was not sent to SEP within 10800s"]
            ]
        );
    }

    /// No kube-proxy chain in the rules (or rules of the other family): said
    /// plainly, nothing assumed. With kube-proxy's chains, only jumps that
    /// lead to one of them are assumed.
    #[test]
    fn jump_rules_are_assumed_only_towards_kube_proxy_chains() {
        let empty = Ruleset::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        )
        .unwrap();
        let p = Packet::new(ip("fd00::5"), ip("fd00::10"), 80, Protocol::Tcp);
        let opts = TraceOptions {
            source: Some("ip6tables-save".into()),
            ..Default::default()
        };
        let t = trace(&empty, &p, &opts);
        assert_eq!(
            t.notes,
            [
                "no kube-proxy rules for IPv6 in ip6tables-save: no kube-proxy chain to jump to, so none is assumed"
            ]
        );
        assert!(t.assumptions.is_empty(), "{:?}", t.assumptions);
        assert_eq!(t.outcomes.len(), 1);
        assert_eq!(t.outcomes[0].action, Action::Accept);
        assert!(t.outcomes[0].path.is_empty());
        // IPv4 rules, IPv6 packet.
        let v4 = Ruleset::parse(SAVE).unwrap();
        let t = trace(&v4, &p, &TraceOptions::default());
        assert!(
            t.notes[0]
                .starts_with("no kube-proxy rules for IPv6 in the rules: it holds IPv4 rules"),
            "{:?}",
            t.notes
        );
        assert!(t.outcomes[0].path.is_empty());
        // Restore text with nat chains only: no filter jump is invented.
        let nat_only = Ruleset::parse(
            "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:80\nCOMMIT\n",
        )
        .unwrap();
        let p = Packet::new(ip("10.0.0.5"), ip("172.30.0.41"), 80, Protocol::Tcp);
        let t = trace(&nat_only, &p, &TraceOptions::default());
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!(
            t.assumptions,
            [
                "nat PREROUTING is not in the rules: assumed kube-proxy's jump rules, as on a fresh node",
                "nat OUTPUT is not in the rules: assumed kube-proxy's jump rules, as on a fresh node"
            ]
        );
        assert_eq!(t.outcomes[0].to.unwrap().to_string(), "10.1.0.1:80");
    }

    #[test]
    fn loopback_delivery_arrives_on_lo() {
        let save = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let p = Packet::new(ip("127.0.0.1"), ip("127.0.0.1"), 22, Protocol::Tcp);
        let t = trace(&rs, &p, &TraceOptions::default());
        assert_eq!(t.outcomes.len(), 1);
        assert_eq!(t.outcomes[0].action, Action::Accept);
        assert!(t.outcomes[0].local);
    }

    #[test]
    fn random_branching_is_bounded() {
        // Random rules that lead to the same state join: exact.
        let mut save = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
        for _ in 0..24 {
            save.push_str("-A PREROUTING -m statistic --mode random --probability 0.5 -j MARK --set-xmark 0x1/0x0\n");
        }
        save.push_str("COMMIT\n");
        let rs = Ruleset::parse(&save).unwrap();
        let p = Packet::new(ip("10.0.0.1"), ip("10.0.0.2"), 80, Protocol::Tcp);
        let t = trace(&rs, &p, &TraceOptions::default());
        // Marked or not: two states, two outcomes.
        assert_eq!(t.outcomes.len(), 2, "{t:#?}");
        let sum: f64 = t.outcomes.iter().map(|o| o.probability).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        // `--set-xmark 0x1/0x0` flips the bit: an even or odd number of flips.
        assert!(
            t.outcomes
                .iter()
                .all(|o| (o.probability - 0.5).abs() < 1e-9)
        );
        assert!(!t.assumptions.iter().any(|a| a.contains("approximate")));
        // Random rules that each lead to a new state: capped.
        let mut save = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
        for k in 0..16 {
            save.push_str(&format!(
                "-A PREROUTING -m statistic --mode random --probability 0.5 -j MARK --set-xmark {:#x}/0x0\n",
                1u32 << k
            ));
        }
        save.push_str("COMMIT\n");
        let rs = Ruleset::parse(&save).unwrap();
        let t = trace(&rs, &p, &TraceOptions::default());
        assert!(t.outcomes.len() <= 2 * MAX_BRANCHES, "{}", t.outcomes.len());
        assert!(t.assumptions.iter().any(|a| a.contains("approximate")));
    }

    #[test]
    fn ports_marks_and_destinations() {
        assert!(port_matches("30000:32767", 30080));
        assert!(!port_matches("80", 81));
        assert_eq!(mark_pair("0x4000/0x4000"), Some((0x4000, 0x4000)));
        assert_eq!(
            parse_destination("[fd00::1]:80", 1).unwrap().to_string(),
            "[fd00::1]:80"
        );
        assert_eq!(
            parse_destination("10.0.0.1", 8080).unwrap().to_string(),
            "10.0.0.1:8080"
        );
        assert!(facts::iface_matches("veth+", "veth12"));
        assert!(protocol_is("6", Protocol::Tcp));
    }
}

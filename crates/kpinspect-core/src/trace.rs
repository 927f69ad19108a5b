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
//! know (`-m recent --rcheck`, `-m set`, `-m physdev`, an unknown input
//! interface, ...) split it into branches with *conditions*, so nothing is
//! guessed silently. Outcomes without conditions are the ones of a brand-new
//! client (no session-affinity history) and their probabilities add up to 1.
//!
//! Built-in chains missing from the save (kube-proxy's restore input has
//! none) are assumed to hold the jump rules of kube-proxy's mode
//! ([`TraceOptions::mode`]), as on a fresh host; the [`Trace::assumptions`]
//! say so. Otherwise the walk knows no kube-proxy chain: it follows the
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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::mode::ProxyMode;
use crate::model::Protocol;
use crate::net::{parse_ip_sloppy, split_host_port};
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

/// What the trace knows about the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// What must hold for this outcome, beyond a brand-new client.
    pub conditions: Vec<String>,
    /// Every rule that matched, in order, with the policies that decided.
    pub path: Vec<Step>,
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
}

fn ser_opt_display<S: serde::Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

/// More branches than this and the walk stops splitting on conditions.
const MAX_BRANCHES: usize = 4096;

/// Traces `packet` through `rules`. See the module documentation.
pub fn trace(rules: &Ruleset, packet: &Packet, opts: &TraceOptions) -> Trace {
    let mut w = Walker {
        tables: HashMap::new(),
        packet,
        opts,
        assumptions: Vec::new(),
        in_iface: None,
        splits: 0,
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
        let view = w.view(rules, table);
        w.tables.insert(table, view);
    }
    let start = Branch {
        dst: packet.dst,
        dport: packet.dport,
        mark: opts.mark,
        dnat: None,
        masquerade: false,
        probability: 1.0,
        conditions: Vec::new(),
        path: Vec::new(),
    };
    let hook = if w.is_local(&packet.src) {
        Hook::Output
    } else {
        Hook::Prerouting
    };
    let mut outcomes = Vec::new();
    let first = match hook {
        Hook::Prerouting => ("nat", "PREROUTING"),
        Hook::Output => ("nat", "OUTPUT"),
    };
    for (b, v) in w.hook(first.0, first.1, start, hook) {
        if let Some(v) = v {
            outcomes.push(b.finish(v, false));
            continue;
        }
        let local = w.is_local(&b.dst);
        let mut stages: Vec<(&str, &str)> = match (hook, local) {
            (Hook::Prerouting, true) => vec![("filter", "INPUT")],
            (Hook::Prerouting, false) => vec![("filter", "FORWARD"), ("nat", "POSTROUTING")],
            (Hook::Output, true) => vec![
                ("filter", "OUTPUT"),
                ("nat", "POSTROUTING"),
                ("filter", "INPUT"),
            ],
            (Hook::Output, false) => vec![("filter", "OUTPUT"), ("nat", "POSTROUTING")],
        };
        stages.reverse();
        w.stages(b, stages, local, hook, &mut outcomes);
    }
    let mut assumptions = w.assumptions;
    if outcomes.iter().any(|o| !o.conditions.is_empty()) {
        assumptions.push(
            "outcomes without conditions are those of a client with no session-affinity history \
             and of rules whose unknown matches do not match"
                .into(),
        );
    }
    Trace {
        hook,
        outcomes,
        assumptions,
    }
}

/// One branch of the walk.
#[derive(Debug, Clone)]
struct Branch {
    dst: IpAddr,
    dport: u16,
    mark: u32,
    dnat: Option<SocketAddr>,
    masquerade: bool,
    probability: f64,
    conditions: Vec<String>,
    path: Vec<Step>,
}

impl Branch {
    fn finish(self, action: Action, local: bool) -> Outcome {
        let action = match (action, self.dnat) {
            (Action::Accept, Some(_)) => Action::Dnat,
            (a, _) => a,
        };
        Outcome {
            action,
            to: self.dnat,
            probability: self.probability,
            masquerade: self.masquerade,
            local,
            conditions: self.conditions,
            path: self.path,
        }
    }
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
    /// none (locally generated), `Some("lo")` on loop-back delivery, `None`
    /// when unknown.
    in_iface: Option<String>,
    /// Branch splits so far, over the whole trace.
    splits: usize,
}

/// A match's result for one branch.
enum Test {
    Known(bool),
    /// Matches with this probability.
    Random(f64),
    /// Depends on state the trace does not know; the text says what holds
    /// when it matches.
    Unknown(String),
}

impl<'a> Walker<'a> {
    fn view(&mut self, rules: &'a Ruleset, name: &'static str) -> TableView<'a> {
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
        let builtins: &[&'static str] = match name {
            "nat" => &["PREROUTING", "OUTPUT", "POSTROUTING"],
            _ => &["INPUT", "FORWARD", "OUTPUT"],
        };
        for &chain in builtins {
            if declared.contains_key(chain) || chains.contains_key(chain) {
                continue;
            }
            let assumed: Vec<(usize, RuleRef<'a>)> = self
                .opts
                .mode
                .profile()
                .fresh_builtin_rules(name, chain)
                .into_iter()
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
        ip.is_loopback() || self.opts.local_ips.contains(ip)
    }

    /// Runs the remaining `stages` (in reverse order) for `b`, pushing outcomes.
    fn stages(
        &mut self,
        b: Branch,
        mut stages: Vec<(&'static str, &'static str)>,
        local: bool,
        hook: Hook,
        outcomes: &mut Vec<Outcome>,
    ) {
        let Some((table, chain)) = stages.pop() else {
            outcomes.push(b.finish(Action::Accept, local));
            return;
        };
        for (b, v) in self.hook(table, chain, b, hook) {
            match v {
                Some(v) => outcomes.push(b.finish(v, local)),
                None => self.stages(b, stages.clone(), local, hook, outcomes),
            }
        }
    }

    /// Runs built-in `chain` of `table`: `None` means the packet goes on.
    fn hook(
        &mut self,
        table: &'static str,
        chain: &'static str,
        b: Branch,
        hook: Hook,
    ) -> Vec<(Branch, Option<Action>)> {
        self.in_iface = match (hook, chain) {
            (Hook::Output, "INPUT") => Some("lo".into()),
            (Hook::Output, _) => Some(String::new()),
            (Hook::Prerouting, _) => self.opts.in_interface.clone(),
        };
        let policy = self
            .tables
            .get(table)
            .and_then(|t| t.declared.get(chain).copied().flatten())
            .unwrap_or("ACCEPT")
            .to_string();
        self.chain(table, chain, b, 0)
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
                        b.path.push(Step {
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

    /// Runs user or built-in `chain`, returning every branch's end.
    fn chain(
        &mut self,
        table: &'static str,
        chain: &str,
        b: Branch,
        depth: usize,
    ) -> Vec<(Branch, Flow)> {
        let rules: Vec<(usize, RuleRef<'a>)> = self
            .tables
            .get(table)
            .and_then(|t| t.chains.get(chain))
            .cloned()
            .unwrap_or_default();
        let mut done = Vec::new();
        // A stack of branches, each either running (next rule) or finished;
        // the branch to handle first is on top, so outcomes come out in
        // rule order (matched before unmatched, first endpoint first).
        let mut active: Vec<(Branch, Result<usize, Flow>)> = vec![(b, Ok(0))];
        while let Some((b, state)) = active.pop() {
            let i = match state {
                Ok(i) => i,
                Err(flow) => {
                    done.push((b, flow));
                    continue;
                }
            };
            let Some((n, rule)) = rules.get(i) else {
                done.push((b, Flow::Continue));
                continue;
            };
            let rule = rule.rule();
            let splits = self.matches(rule, b);
            // Built in order, pushed reversed.
            let mut next: Vec<(Branch, Result<usize, Flow>)> = Vec::new();
            for (mut b, matched) in splits {
                if !matched {
                    next.push((b, Ok(i + 1)));
                    continue;
                }
                b.path.push(Step {
                    table: table.into(),
                    chain: chain.into(),
                    rule: Some(*n),
                    text: render_rule(rule),
                });
                let Some(target) = &rule.target else {
                    next.push((b, Ok(i + 1)));
                    continue;
                };
                match target.name.as_str() {
                    "ACCEPT" => next.push((b, Err(Flow::Accept))),
                    "DROP" => next.push((b, Err(Flow::Drop))),
                    "REJECT" => next.push((b, Err(Flow::Reject))),
                    "RETURN" => next.push((b, Err(Flow::Continue))),
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
                        next.push((b, Err(Flow::Accept)));
                    }
                    "MASQUERADE" | "SNAT" => {
                        b.masquerade = true;
                        next.push((b, Err(Flow::Accept)));
                    }
                    "MARK" => {
                        b.mark = apply_mark(b.mark, rule);
                        next.push((b, Ok(i + 1)));
                    }
                    "LOG" | "NFLOG" | "TRACE" | "CONNMARK" | "CT" | "NOTRACK" => {
                        next.push((b, Ok(i + 1)));
                    }
                    sub if self.has_chain(table, sub) => {
                        if depth > 64 {
                            self.assume(format!(
                                "jumps nested deeper than 64 at {table} {sub}: not followed"
                            ));
                            next.push((b, Ok(i + 1)));
                            continue;
                        }
                        let goto = target.goto;
                        for (b, flow) in self.chain(table, sub, b, depth + 1) {
                            match flow {
                                Flow::Continue if goto => next.push((b, Err(Flow::Continue))),
                                Flow::Continue => next.push((b, Ok(i + 1))),
                                f => next.push((b, Err(f))),
                            }
                        }
                    }
                    other => {
                        self.assume(if !is_target(other) {
                            format!("{table} {chain} rule {n} jumps to {other}, which does not exist: ignored")
                        } else {
                            format!("target {other} in {table} {chain} rule {n} is not modelled: treated as continuing")
                        });
                        next.push((b, Ok(i + 1)));
                    }
                }
            }
            active.extend(next.into_iter().rev());
        }
        done
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

    /// Splits `b` by the rule's matches: `(branch, matched)` pairs in order.
    fn matches(&mut self, rule: &Rule, b: Branch) -> Vec<(Branch, bool)> {
        let mut out = Vec::new();
        let mut pending = vec![(b, 0usize)];
        let tests = self.tests(rule);
        while let Some((b, k)) = pending.pop() {
            let Some(test) = tests.get(k) else {
                out.push((b, true));
                continue;
            };
            match test(self, &b) {
                Test::Known(true) => pending.push((b, k + 1)),
                Test::Known(false) => out.push((b, false)),
                Test::Random(p) if self.splits >= MAX_BRANCHES => {
                    self.assume(format!(
                        "more than {MAX_BRANCHES} branches: from here on, random matches take their more likely side, so probabilities are approximate"
                    ));
                    if p >= 0.5 {
                        pending.push((b, k + 1));
                    } else {
                        out.push((b, false));
                    }
                }
                Test::Random(p) => {
                    self.splits += 1;
                    let mut miss = b.clone();
                    miss.probability *= 1.0 - p;
                    let mut hit = b;
                    hit.probability *= p;
                    if miss.probability > 0.0 {
                        out.push((miss, false));
                    }
                    if hit.probability > 0.0 {
                        pending.push((hit, k + 1));
                    }
                }
                Test::Unknown(cond) => {
                    self.splits += 1;
                    if self.splits > MAX_BRANCHES {
                        self.assume(format!(
                            "too many branches: assumed that {cond} does not hold"
                        ));
                        out.push((b, false));
                        continue;
                    }
                    let mut hit = b.clone();
                    hit.conditions.push(cond);
                    out.push((b, false));
                    pending.push((hit, k + 1));
                }
            }
        }
        // Matched branches first, in the order they were found.
        out.sort_by_key(|(_, matched)| !matched);
        out
    }

    /// The rule's matches as tests, in the order the kernel runs them.
    #[allow(clippy::type_complexity)]
    fn tests(&self, rule: &Rule) -> Vec<Box<dyn Fn(&Walker<'_>, &Branch) -> Test>> {
        let mut tests: Vec<Box<dyn Fn(&Walker<'_>, &Branch) -> Test>> = Vec::new();
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
                "-i" => {
                    let iface = self.in_iface.clone();
                    tests.push(Box::new(move |_, _| match &iface {
                        Some(i) => known(neg, iface_matches(&v, i)),
                        None => unknown(neg, format!("the packet arrives on interface {v}")),
                    }));
                }
                other => {
                    let text = format!("{}{other} {v}", if neg { "! " } else { "" });
                    tests.push(Box::new(move |_, _| {
                        Test::Unknown(format!("`{text}` matches"))
                    }));
                }
            }
        }
        for m in &rule.matches {
            for o in &m.options {
                let neg = o.negated;
                let v = o.values.first().cloned().unwrap_or_default();
                let module = m.module.as_str();
                let t: Option<Box<dyn Fn(&Walker<'_>, &Branch) -> Test>> =
                    match (module, o.name.as_str()) {
                        ("comment", _) | ("nfacct", _) => None,
                        ("tcp" | "udp" | "sctp", "--dport" | "--destination-port") => {
                            Some(Box::new(move |_, b| known(neg, port_matches(&v, b.dport))))
                        }
                        ("tcp" | "udp" | "sctp", "--sport" | "--source-port") => {
                            let sport = self.packet.sport;
                            Some(Box::new(move |_, _| match sport {
                                Some(p) => known(neg, port_matches(&v, p)),
                                None => unknown(neg, format!("the source port is {v}")),
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
                            Some(Box::new(move |_, _| {
                                unknown(
                                    neg,
                                    format!(
                                        "the client was sent to {name}{secs} (session affinity)"
                                    ),
                                )
                            }))
                        }
                        ("recent", _) => None,
                        ("limit" | "hashlimit", _) => None,
                        (module, name) => {
                            let text = format!(
                                "-m {module} {}{name} {}",
                                if neg { "! " } else { "" },
                                o.values.join(" ")
                            );
                            Some(Box::new(move |_, _| {
                                Test::Unknown(format!("`{}` matches", text.trim_end()))
                            }))
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

fn unknown(negated: bool, holds: String) -> Test {
    if negated {
        Test::Unknown(format!("not: {holds}"))
    } else {
        Test::Unknown(holds)
    }
}

fn addr_type(w: &Walker<'_>, neg: bool, ty: &str, ip: &IpAddr) -> Test {
    match ty {
        "LOCAL" => known(neg, w.is_local(ip)),
        "UNICAST" => known(neg, !ip.is_multicast() && !w.is_local(ip)),
        "MULTICAST" => known(neg, ip.is_multicast()),
        other => unknown(neg, format!("the address {ip} is of type {other}")),
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

fn iface_matches(spec: &str, iface: &str) -> bool {
    match spec.strip_suffix('+') {
        Some(prefix) => iface.starts_with(prefix),
        None => spec == iface,
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

    #[test]
    fn unknown_matches_branch_with_conditions() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m physdev --physdev-is-in -j DROP\n-A INPUT -i eth0 -j REJECT\nCOMMIT\n";
        let rs = Ruleset::parse(save).unwrap();
        let p = Packet::new(ip("10.1.1.1"), ip("127.0.0.1"), 22, Protocol::Tcp);
        let t = trace(&rs, &p, &TraceOptions::default());
        let got: Vec<(Action, Vec<String>)> = t
            .outcomes
            .iter()
            .map(|o| (o.action, o.conditions.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Action::Drop,
                    vec!["`-m physdev --physdev-is-in` matches".to_string()]
                ),
                (
                    Action::Reject,
                    vec!["the packet arrives on interface eth0".to_string()]
                ),
                (Action::Accept, vec![]),
            ]
        );
        let opts = TraceOptions {
            in_interface: Some("eth1".into()),
            ..Default::default()
        };
        let t = trace(&rs, &p, &opts);
        assert_eq!(t.outcomes.len(), 2);
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
        let mut save = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
        for _ in 0..24 {
            save.push_str("-A PREROUTING -m statistic --mode random --probability 0.5 -j MARK --set-xmark 0x1/0x0\n");
        }
        save.push_str("COMMIT\n");
        let rs = Ruleset::parse(&save).unwrap();
        let p = Packet::new(ip("10.0.0.1"), ip("10.0.0.2"), 80, Protocol::Tcp);
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
        assert!(iface_matches("veth+", "veth12"));
        assert!(protocol_is("6", Protocol::Tcp));
    }
}

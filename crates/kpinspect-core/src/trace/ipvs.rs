//! IPVS in the walk ([`super::TraceOptions::virtual_servers`]).
//!
//! IPVS hooks netfilter at LOCAL_IN after filter `INPUT` (priority
//! `NF_IP_PRI_NAT_SRC - 1`) and at LOCAL_OUT after nat `OUTPUT`
//! (`NF_IP_PRI_NAT_DST + 2`). A new connection to a virtual server's
//! address, port and protocol is scheduled to one real server: the
//! destination is rewritten (kube-proxy's real servers are all
//! masquerading, i.e. NAT) and the packet is sent on through the LOCAL_OUT
//! hook (filter `OUTPUT`) and nat `POSTROUTING`, where kube-proxy's
//! `KUBE-POSTROUTING` masquerades it by mark or by `KUBE-LOOP-BACK`
//! (`ip_vs_nat_send_or_cont`). A packet taken at LOCAL_IN for a real
//! server that is the node itself goes on up the stack instead: delivered,
//! with no filter `OUTPUT` or nat `POSTROUTING`.
//!
//! The share of each real server is [`crate::mode::ipvs::shares`]: `rr`
//! and `wrr` have a static one (the outcome's probability); for the other
//! schedulers (`lc`, `wlc`, `sh`, `mh`, ...) the choice depends on
//! connections or hashes the trace does not know, so each outcome gets a
//! condition naming the scheduler instead. Real servers of weight 0
//! (quiesced, draining) take no new connection and are named in the notes.
//! A virtual server with no real server of weight > 0 makes the kernel
//! log "no destination available" and leave the packet to `ip_vs_leave`,
//! which answers with ICMP port unreachable and drops it: the outcome is
//! `REJECT`. A persistent virtual server (ClientIP affinity) sends a client
//! with a persistence template to that template's real server: one
//! outcome per real server with that condition, as for iptables mode's
//! `-m recent`; the others assume a client without a template.

use std::net::SocketAddr;

use serde::Serialize;

use super::facts::{Atom, Pred, Prop, Query};
use super::{Action, Branch, Step, Walker, protocol_is, ser_opt_display};
use crate::mode::ipvs::{RealServer, VirtualServer, protocol_name, shares};
use crate::model::Protocol;
use crate::netfilter::addr_matches;

/// What IPVS did with a packet it took.
///
/// IPVS takes a new connection to a virtual server's address, port and
/// protocol at LOCAL_IN, after filter `INPUT`, or (sent by the node) at
/// LOCAL_OUT, after nat `OUTPUT`; it rewrites the destination to one real
/// server of weight > 0 and sends the packet on through filter `OUTPUT` and
/// nat `POSTROUTING` (a packet from outside for a real server that is the
/// node itself is delivered at once). `rr` and `wrr` give each real server a static share
/// (the outcome's probability); other schedulers (`lc`, `sh`, `mh`, ...)
/// depend on state the trace does not know, so their outcomes carry a
/// condition naming the scheduler. With no real server of weight > 0 the
/// kernel ("no destination available") answers ICMP port unreachable and
/// drops the packet: a `REJECT` outcome with no `real_server`. A
/// persistent virtual server (ClientIP affinity) sends a client with a
/// persistence template to that template's real server: one outcome per
/// real server under that condition.
///
/// ```
/// use kpinspect_core::mode::ipvs::{RealServer, Scheduler, ServiceFlags, VirtualServer};
/// use kpinspect_core::model::Protocol;
/// use kpinspect_core::netfilter::Ruleset;
/// use kpinspect_core::trace::{Action, Packet, TraceOptions, trace};
///
/// let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
/// let vs = VirtualServer {
///     address: ip("10.96.0.1"),
///     protocol: Protocol::Tcp,
///     port: 443,
///     scheduler: Scheduler::from_config("wrr"),
///     flags: ServiceFlags::default(),
///     timeout: 0,
///     kind: None,
///     service: None,
///     bind: true,
///     real_servers: vec![
///         RealServer::new(ip("192.168.0.10"), 6443),
///         RealServer { weight: 3, ..RealServer::new(ip("192.168.0.11"), 6443) },
///     ],
/// };
/// let opts = TraceOptions::new().with_virtual_servers(vec![vs]);
/// let rules = Ruleset::parse("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n").unwrap();
/// let packet = Packet::new(ip("10.0.0.5"), ip("10.96.0.1"), 443, Protocol::Tcp);
/// let t = trace(&rules, &packet, &opts);
/// let got: Vec<(String, f64)> = t
///     .outcomes
///     .iter()
///     .map(|o| (o.ipvs.as_ref().unwrap().real_server.unwrap().to_string(), o.probability))
///     .collect();
/// assert_eq!(got, [("192.168.0.10:6443".to_string(), 0.25), ("192.168.0.11:6443".to_string(), 0.75)]);
/// assert!(t.outcomes.iter().all(|o| o.action == Action::Dnat));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpvsChoice {
    /// Where IPVS took it: `LOCAL_IN` (a packet from outside, after filter
    /// `INPUT`) or `LOCAL_OUT` (sent by the node, after nat `OUTPUT`).
    pub hook: &'static str,
    /// The virtual server, as kube-proxy names it: `ip:port/PROTO`.
    pub virtual_server: String,
    /// Its scheduler (`rr`, `wrr`, `lc`, ...).
    pub scheduler: String,
    /// Its persistence timeout in seconds (ClientIP affinity); absent from
    /// JSON when it is not persistent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<u32>,
    /// The real server it chose; `null` when it had none of weight > 0.
    #[serde(serialize_with = "ser_opt_display")]
    pub real_server: Option<SocketAddr>,
    /// The chosen real server's weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The virtual server's address, port and protocol (for `-m ipvs`).
    #[serde(skip)]
    pub(super) vip: (std::net::IpAddr, u16, Protocol),
}

/// The end of a persistence condition's text, which tells it from
/// iptables mode's session affinity.
const PERSISTENCE: &str = "(IPVS persistence)";

/// Whether `p` is an IPVS persistence fact.
pub(super) fn is_persistence(p: &Prop) -> bool {
    p.yes.ends_with(PERSISTENCE)
}

/// `-m ipvs OPTION VALUE` for a packet IPVS took (`choice`): `None` for
/// options the trace does not model (`--vmethod`, `--vportctl`).
pub(super) fn ipvs_match(option: &str, value: &str, choice: &IpvsChoice) -> Option<bool> {
    let (addr, port, protocol) = choice.vip;
    match option {
        "--ipvs" => Some(true),
        "--vaddr" => Some(addr_matches(value, &addr)),
        "--vport" => Some(value.parse() == Ok(port)),
        "--vproto" => Some(protocol_is(value, protocol)),
        // A new connection's first packet goes the original way.
        "--vdir" => Some(value.eq_ignore_ascii_case("ORIGINAL")),
        _ => None,
    }
}

impl<'a> Walker<'a> {
    /// The virtual server the branch's destination is, if any.
    pub(super) fn virtual_server(&self, b: &Branch) -> Option<&'a VirtualServer> {
        let protocol = self.packet.protocol;
        self.opts
            .virtual_servers
            .as_ref()?
            .iter()
            .find(|v| v.address == b.dst && v.port == b.dport && v.protocol == protocol)
    }

    /// IPVS takes `b` at `hook` (`LOCAL_IN`, `LOCAL_OUT`): a REJECT into
    /// `ended`, or one branch per real server it may choose into `sent`
    /// (by whether the real server is local).
    pub(super) fn ipvs(
        &mut self,
        b: Branch,
        hook: &'static str,
        ended: &mut Vec<(Branch, Action, bool)>,
        sent: &mut [Vec<Branch>; 2],
    ) {
        let Some(vs) = self.virtual_server(&b) else {
            ended.push((b, Action::Accept, true));
            return;
        };
        let key = format!(
            "{}/{}",
            SocketAddr::new(vs.address, vs.port),
            protocol_name(vs.protocol)
        );
        let scheduler = vs.scheduler.name().to_string();
        let persistence = vs.flags.persistent().then_some(vs.timeout);
        let choice = |rs: Option<&RealServer>| IpvsChoice {
            hook,
            virtual_server: key.clone(),
            scheduler: scheduler.clone(),
            persistence,
            real_server: rs.map(|r| SocketAddr::new(r.address, r.port)),
            weight: rs.map(|r| r.weight),
            vip: (vs.address, vs.port, vs.protocol),
        };
        let about = match persistence {
            Some(t) => format!("{key} ({scheduler}, persistent {t}s)"),
            None => format!("{key} ({scheduler})"),
        };
        for r in vs.real_servers.iter().filter(|r| r.weight == 0) {
            self.note(format!(
                "IPVS {key}: real server {} has weight 0 (quiesced or draining): it takes no new connections",
                SocketAddr::new(r.address, r.port)
            ));
        }
        let live: Vec<(&RealServer, Option<f64>)> = vs
            .real_servers
            .iter()
            .zip(shares(&scheduler, &vs.real_servers))
            .filter(|(r, _)| r.weight > 0)
            .collect();
        if live.is_empty() {
            let mut b = b;
            b.push_step(Step {
                table: "ipvs".into(),
                chain: hook.into(),
                rule: None,
                text: format!(
                    "virtual server {about} has no real server of weight > 0: \
                     ICMP port unreachable, packet dropped"
                ),
            });
            b.ipvs = Some(choice(None));
            ended.push((b, Action::Reject, true));
            return;
        }
        let persist = |r: &RealServer| -> Query {
            let to = SocketAddr::new(r.address, r.port);
            let within = persistence
                .map(|t| format!(" within {t}s"))
                .unwrap_or_default();
            Query {
                atom: Atom::Prop(Prop {
                    yes: format!("the client was sent to {to} by {key}{within} {PERSISTENCE}"),
                    no: format!("the client was not sent to {to} by {key}{within}"),
                    quiet_no: true,
                }),
                pred: Pred::Is(true),
            }
        };
        // (branch, real server, how it was chosen)
        let mut out: Vec<(Branch, &RealServer, String)> = Vec::new();
        let mut fresh = Some(b);
        if persistence.is_some() {
            for (r, _) in &live {
                let q = persist(r);
                if let Some(f) = &fresh {
                    if let Some(nb) = f.restrict(&q, true) {
                        out.push((nb, r, "the client's persistence template".into()));
                    }
                    fresh = f.restrict(&q, false);
                }
            }
        }
        if let Some(f) = fresh {
            let n = live.len();
            for (r, share) in &live {
                let to = SocketAddr::new(r.address, r.port);
                match share {
                    Some(p) => {
                        let mut nb = f.clone();
                        nb.scale(*p);
                        out.push((nb, r, format!("weight {}, {n} to choose from", r.weight)));
                    }
                    None => {
                        let q = Query {
                            atom: Atom::Prop(Prop {
                                yes: format!("the {scheduler} scheduler of {key} picks {to}"),
                                no: format!(
                                    "the {scheduler} scheduler of {key} does not pick {to}"
                                ),
                                quiet_no: false,
                            }),
                            pred: Pred::Is(true),
                        };
                        if let Some(nb) = f.restrict(&q, true) {
                            out.push((nb, r, format!("weight {}, no static share", r.weight)));
                        }
                    }
                }
            }
        }
        let split = out.len() > 1;
        self.splits += out.len().saturating_sub(1);
        for (k, (mut nb, r, how)) in out.into_iter().enumerate() {
            let to = SocketAddr::new(r.address, r.port);
            nb.push_step(Step {
                table: "ipvs".into(),
                chain: hook.into(),
                rule: None,
                text: format!("virtual server {about} -> real server {to} ({how})"),
            });
            nb.dst = r.address;
            nb.dport = r.port;
            nb.dnat = Some(to);
            nb.ipvs = Some(choice(Some(r)));
            if split {
                nb.order.push(k as u32);
            }
            let local = self.is_local(&nb.dst);
            if local && hook == "LOCAL_IN" {
                // `ip_vs_nat_send_or_cont`: a local real server keeps the
                // packet on its way up the stack (NF_ACCEPT), without
                // LOCAL_OUT or POSTROUTING.
                ended.push((nb, Action::Accept, true));
            } else {
                sent[usize::from(local)].push(nb);
            }
        }
    }

    fn note(&mut self, text: String) {
        if !self.ipvs_notes.contains(&text) {
            self.ipvs_notes.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::ipset::{SetText, parse_save};
    use crate::mode::ProxyMode;
    use crate::mode::ipvs::{Scheduler, ServiceFlags};
    use crate::netfilter::Ruleset;
    use crate::trace::{Action, Hook, Outcome, Packet, Trace, TraceOptions, trace};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// IPVS mode's rules in kube-proxy's shape, reduced to what the tests
    /// need.
    const SAVE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES ! -s 10.0.0.0/8 -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A INPUT -j KUBE-IPVS-FILTER
-A OUTPUT -j KUBE-IPVS-OUT-FILTER
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
-A KUBE-IPVS-OUT-FILTER -s 10.96.0.11 -m ipvs --vaddr 10.96.0.11 --vproto tcp --vport 80 -j DROP
COMMIT
";

    const SETS: &str = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.96.0.10,tcp:80
add KUBE-CLUSTER-IP 10.96.0.11,tcp:80
add KUBE-CLUSTER-IP 10.96.0.12,udp:53
add KUBE-CLUSTER-IP 10.96.0.13,tcp:80
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-IPVS-IPS 10.96.0.10
add KUBE-IPVS-IPS 10.96.0.11
add KUBE-IPVS-IPS 10.96.0.12
add KUBE-IPVS-IPS 10.96.0.13
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.180.0.1,tcp:80,10.180.0.1
";

    fn vs(
        addr: &str,
        port: u16,
        protocol: Protocol,
        scheduler: &str,
        reals: &[(&str, u32)],
    ) -> VirtualServer {
        VirtualServer {
            address: ip(addr),
            protocol,
            port,
            scheduler: Scheduler::from_config(scheduler),
            flags: ServiceFlags::default(),
            timeout: 0,
            kind: None,
            service: None,
            bind: false,
            real_servers: reals
                .iter()
                .map(|(a, w)| RealServer {
                    weight: *w,
                    ..RealServer::new(ip(a), port)
                })
                .collect(),
        }
    }

    fn servers() -> Vec<VirtualServer> {
        let mut persistent = vs(
            "10.96.0.13",
            80,
            Protocol::Tcp,
            "rr",
            &[("10.180.0.1", 1), ("10.180.0.2", 1)],
        );
        persistent.flags = ServiceFlags(ServiceFlags::PERSISTENT);
        persistent.timeout = 10800;
        vec![
            vs(
                "10.96.0.10",
                80,
                Protocol::Tcp,
                "rr",
                &[("10.180.0.1", 1), ("10.180.0.2", 1), ("10.180.0.3", 0)],
            ),
            vs(
                "10.96.0.11",
                80,
                Protocol::Tcp,
                "wrr",
                &[("10.180.0.1", 1), ("10.180.0.2", 3)],
            ),
            vs("10.96.0.12", 53, Protocol::Udp, "rr", &[]),
            persistent,
        ]
    }

    fn opts(sets: Option<Vec<SetText>>, servers: Vec<VirtualServer>) -> TraceOptions {
        TraceOptions {
            local_ips: vec![ip("192.168.0.2")],
            mode: ProxyMode::Ipvs,
            ipsets: sets,
            virtual_servers: Some(servers),
            ..Default::default()
        }
    }

    fn run_with(o: &TraceOptions, src: &str, dst: &str, port: u16, protocol: Protocol) -> Trace {
        let rules = Ruleset::parse(SAVE).unwrap();
        trace(&rules, &Packet::new(ip(src), ip(dst), port, protocol), o)
    }

    fn run(src: &str, dst: &str, port: u16, protocol: Protocol) -> Trace {
        let o = opts(Some(parse_save(SETS).unwrap()), servers());
        run_with(&o, src, dst, port, protocol)
    }

    fn targets(t: &Trace) -> Vec<(String, f64)> {
        t.outcomes
            .iter()
            .map(|o| {
                (
                    o.to.map(|a| a.to_string()).unwrap_or_default(),
                    o.probability,
                )
            })
            .collect()
    }

    fn sum(t: &Trace) -> f64 {
        t.outcomes.iter().map(|o| o.probability).sum()
    }

    #[test]
    fn round_robin_shares_sum_to_one_and_weight_zero_is_noted() {
        let t = run("10.180.0.5", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(
            targets(&t),
            [
                ("10.180.0.1:80".to_string(), 0.5),
                ("10.180.0.2:80".to_string(), 0.5)
            ]
        );
        assert!((sum(&t) - 1.0).abs() < 1e-9);
        for o in &t.outcomes {
            assert_eq!(o.action, Action::Dnat);
            assert!(o.conditions.is_empty(), "{o:?}");
            assert!(
                !o.masquerade,
                "a pod's connection is not masqueraded: {o:?}"
            );
            let c = o.ipvs.as_ref().unwrap();
            assert_eq!(c.virtual_server, "10.96.0.10:80/TCP");
            assert_eq!(
                (c.hook, c.scheduler.as_str(), c.weight),
                ("LOCAL_IN", "rr", Some(1))
            );
            // After filter INPUT, IPVS; then filter OUTPUT and nat POSTROUTING.
            let at = o.path.iter().position(|s| s.table == "ipvs").unwrap();
            assert!(o.path[..at].iter().any(|s| s.chain == "KUBE-IPVS-FILTER"));
            assert!(
                o.path[at + 1..]
                    .iter()
                    .any(|s| s.table == "filter" && s.chain == "OUTPUT")
            );
            assert!(o.path[at + 1..].iter().any(|s| s.chain == "POSTROUTING"));
        }
        assert_eq!(
            t.notes,
            [
                "IPVS 10.96.0.10:80/TCP: real server 10.180.0.3:80 has weight 0 (quiesced or draining): it takes no new connections"
            ]
        );
        // wrr: weight over the sum of weights.
        let t = run("10.180.0.5", "10.96.0.11", 80, Protocol::Tcp);
        assert_eq!(
            targets(&t),
            [
                ("10.180.0.1:80".to_string(), 0.25),
                ("10.180.0.2:80".to_string(), 0.75)
            ]
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    #[test]
    fn a_virtual_server_without_real_servers_rejects() {
        let t = run("10.180.0.5", "10.96.0.12", 53, Protocol::Udp);
        assert_eq!(t.outcomes.len(), 1, "{t:#?}");
        let o = &t.outcomes[0];
        assert_eq!(o.action, Action::Reject);
        assert_eq!(o.probability, 1.0);
        let c = o.ipvs.as_ref().unwrap();
        assert_eq!((c.real_server, c.weight), (None, None));
        assert!(
            o.path
                .last()
                .unwrap()
                .text
                .contains("ICMP port unreachable")
        );
        // All real servers at weight 0: the same.
        let servers = vec![vs(
            "10.96.0.10",
            80,
            Protocol::Tcp,
            "rr",
            &[("10.180.0.3", 0)],
        )];
        let o = opts(Some(parse_save(SETS).unwrap()), servers);
        let t = run_with(&o, "10.180.0.5", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(t.outcomes.len(), 1);
        assert_eq!(t.outcomes[0].action, Action::Reject);
        // A port of a service address that no virtual server has: rejected
        // by KUBE-IPVS-FILTER, decided from the sets' members.
        let t = run("10.180.0.5", "10.96.0.10", 81, Protocol::Tcp);
        assert_eq!(t.outcomes.len(), 1, "{t:#?}");
        assert_eq!(t.outcomes[0].action, Action::Reject);
        assert!(t.outcomes[0].ipvs.is_none());
        assert!(t.outcomes[0].conditions.is_empty());
        assert_eq!(t.outcomes[0].path.last().unwrap().chain, "KUBE-IPVS-FILTER");
    }

    #[test]
    fn a_real_server_on_the_node_takes_the_packet_at_once() {
        // The kubernetes Service: its real server is the node's apiserver.
        let servers = vec![vs(
            "10.96.0.10",
            80,
            Protocol::Tcp,
            "rr",
            &[("192.168.0.2", 1)],
        )];
        let o = opts(Some(parse_save(SETS).unwrap()), servers);
        let t = run_with(&o, "203.0.113.9", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(t.outcomes.len(), 1, "{t:#?}");
        let out = &t.outcomes[0];
        assert_eq!(out.action, Action::Dnat);
        assert!(out.local);
        // Marked in PREROUTING, but no POSTROUTING on this way: not masqueraded.
        assert!(!out.masquerade);
        assert_eq!(out.path.last().unwrap().table, "ipvs");
        // From the node itself: LOCAL_OUT, then OUTPUT, POSTROUTING and INPUT.
        let t = run_with(&o, "192.168.0.2", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(t.outcomes.len(), 1, "{t:#?}");
        assert!(t.outcomes[0].local);
        assert!(t.outcomes[0].path.iter().any(|s| s.chain == "POSTROUTING"));
    }

    #[test]
    fn masquerade_by_loop_back_set_and_by_mark() {
        // A pod reaching itself through the service: KUBE-LOOP-BACK.
        let t = run("10.180.0.1", "10.96.0.10", 80, Protocol::Tcp);
        let masq: Vec<(String, bool)> = t
            .outcomes
            .iter()
            .map(|o| (o.to.unwrap().to_string(), o.masquerade))
            .collect();
        assert_eq!(
            masq,
            [
                ("10.180.0.1:80".to_string(), true),
                ("10.180.0.2:80".to_string(), false)
            ]
        );
        let hairpin = t.outcomes[0].path.last().unwrap();
        assert!(hairpin.text.contains("KUBE-LOOP-BACK"), "{hairpin:?}");
        // From outside the cluster CIDR: marked, masqueraded in POSTROUTING.
        let t = run("203.0.113.9", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(t.hook, Hook::Prerouting);
        assert_eq!(t.outcomes.len(), 2);
        for o in &t.outcomes {
            assert!(o.masquerade, "{o:?}");
            assert!(o.path.iter().any(|s| s.chain == "KUBE-MARK-MASQ"));
            assert_eq!(
                o.path.last().unwrap().text,
                "-A KUBE-POSTROUTING -j MASQUERADE"
            );
        }
    }

    #[test]
    fn other_schedulers_name_themselves_and_persistence_is_a_condition() {
        let mut servers = servers();
        servers[0].scheduler = Scheduler::from_config("lc");
        let o = opts(Some(parse_save(SETS).unwrap()), servers);
        let t = run_with(&o, "10.180.0.5", "10.96.0.10", 80, Protocol::Tcp);
        let got: Vec<(f64, Vec<String>)> = t
            .outcomes
            .iter()
            .map(|o| (o.probability, o.conditions.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    1.0,
                    vec!["the lc scheduler of 10.96.0.10:80/TCP picks 10.180.0.1:80".to_string()]
                ),
                (
                    1.0,
                    vec!["the lc scheduler of 10.96.0.10:80/TCP picks 10.180.0.2:80".to_string()]
                ),
            ]
        );
        // Persistence: a client with a template goes to its real server;
        // a new client is scheduled.
        let t = run("10.180.0.5", "10.96.0.13", 80, Protocol::Tcp);
        let sticky: Vec<&Outcome> = t
            .outcomes
            .iter()
            .filter(|o| !o.conditions.is_empty())
            .collect();
        let fresh: Vec<&Outcome> = t
            .outcomes
            .iter()
            .filter(|o| o.conditions.is_empty())
            .collect();
        assert_eq!(sticky.len(), 2, "{t:#?}");
        assert_eq!(sticky[0].probability, 1.0);
        assert_eq!(
            sticky[0].conditions,
            [
                "the client was sent to 10.180.0.1:80 by 10.96.0.13:80/TCP within 10800s (IPVS persistence)"
            ]
        );
        assert_eq!(fresh.len(), 2);
        assert!(fresh.iter().all(|o| (o.probability - 0.5).abs() < 1e-9));
        assert_eq!(fresh[0].ipvs.as_ref().unwrap().persistence, Some(10800));
        assert_eq!(
            t.assumptions.last().unwrap(),
            "the client has no IPVS persistence template (ClientIP affinity) unless an outcome's conditions say so"
        );
        assert!(!t.assumptions.iter().any(|a| a.contains("recent --rcheck")));
    }

    #[test]
    fn the_node_itself_is_scheduled_at_local_out_and_meets_the_ipvs_match() {
        // From the node: LOCAL_OUT, then filter OUTPUT sees the virtual
        // server through `-m ipvs`.
        let t = run("192.168.0.2", "10.96.0.10", 80, Protocol::Tcp);
        assert_eq!(t.hook, Hook::Output);
        assert_eq!(t.outcomes.len(), 2);
        assert!(
            t.outcomes
                .iter()
                .all(|o| o.ipvs.as_ref().unwrap().hook == "LOCAL_OUT")
        );
        assert!(t.outcomes.iter().all(|o| o.action == Action::Dnat));
        // The virtual server's own address as the source: KUBE-IPVS-OUT-FILTER
        // drops what IPVS scheduled for 10.96.0.11:80.
        let t = run("10.96.0.11", "10.96.0.11", 80, Protocol::Tcp);
        assert_eq!(t.hook, Hook::Output);
        assert!(!t.outcomes.is_empty());
        for o in &t.outcomes {
            assert_eq!(o.action, Action::Drop, "{o:?}");
            assert_eq!(o.path.last().unwrap().chain, "KUBE-IPVS-OUT-FILTER");
        }
        // The same source to another virtual server: `--vaddr` does not match.
        let t = run("10.96.0.11", "10.96.0.10", 80, Protocol::Tcp);
        assert!(
            t.outcomes.iter().all(|o| o.action == Action::Dnat),
            "{t:#?}"
        );
    }

    #[test]
    fn sets_unknown_stay_conditions_and_negation_inverts_known_ones() {
        // Without the ipsets, -m set is a condition, as in iptables mode.
        let o = opts(None, servers());
        let t = run_with(&o, "10.180.0.5", "10.96.0.10", 80, Protocol::Tcp);
        assert!(t.outcomes.iter().any(|o| {
            o.conditions
                .iter()
                .any(|c| c.contains("ipset KUBE-CLUSTER-IP holds 10.96.0.10,tcp:80"))
        }));
        // A set the rules name that the ipsets read lack: said, and a condition.
        let o = opts(
            Some(
                parse_save(SETS)
                    .unwrap()
                    .into_iter()
                    .filter(|s| s.name != "KUBE-LOOP-BACK")
                    .collect(),
            ),
            servers(),
        );
        let t = run_with(&o, "10.180.0.1", "10.96.0.10", 80, Protocol::Tcp);
        assert!(
            t.assumptions
                .iter()
                .any(|a| a.starts_with("ipset KUBE-LOOP-BACK is not among the ipsets read")),
            "{:?}",
            t.assumptions
        );
        assert!(t.outcomes.iter().any(|o| {
            o.conditions
                .iter()
                .any(|c| c.contains("ipset KUBE-LOOP-BACK holds 10.180.0.1,tcp:80,10.180.0.1"))
        }));
        // `! --match-set` with known members.
        let save = "*filter\n:FORWARD ACCEPT [0:0]\n\
            -A FORWARD -m set ! --match-set ALLOWED src -j DROP\nCOMMIT\n";
        let rules = Ruleset::parse(save).unwrap();
        let sets =
            parse_save("create ALLOWED hash:net family inet\nadd ALLOWED 10.0.0.0/8\n").unwrap();
        let o = TraceOptions {
            ipsets: Some(sets),
            ..Default::default()
        };
        let verdict = |src: &str| {
            let t = trace(
                &rules,
                &Packet::new(ip(src), ip("8.8.8.8"), 53, Protocol::Udp),
                &o,
            );
            assert_eq!(t.outcomes.len(), 1, "{t:#?}");
            assert!(t.outcomes[0].conditions.is_empty());
            t.outcomes[0].action
        };
        assert_eq!(verdict("10.1.2.3"), Action::Accept);
        assert_eq!(verdict("172.16.0.1"), Action::Drop);
    }
}

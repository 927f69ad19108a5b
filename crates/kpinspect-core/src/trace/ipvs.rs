//! IPVS in the walk ([`super::TraceOptions::virtual_servers`]).
//!
//! IPVS hooks netfilter at LOCAL_IN after filter `INPUT` (priority
//! `NF_IP_PRI_NAT_SRC - 1`) and at LOCAL_OUT after nat `OUTPUT`
//! (`NF_IP_PRI_NAT_DST + 2`). A new connection to a virtual server's
//! address, port and protocol is scheduled to one real server: the
//! destination is rewritten (kube-proxy's real servers are all
//! masquerading, i.e. NAT) and the packet is sent on through the LOCAL_OUT
//! hook (filter `OUTPUT`) and nat `POSTROUTING`, where kube-proxy's
//! `KUBE-POSTROUTING` masquerades it by mark or by `KUBE-LOOP-BACK`.
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
            sent[usize::from(local)].push(nb);
        }
    }

    fn note(&mut self, text: String) {
        if !self.ipvs_notes.contains(&text) {
            self.ipvs_notes.push(text);
        }
    }
}

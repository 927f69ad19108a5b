//! Which kube-proxy wrote a save's rules: its proxy mode and, as far as the
//! rules show it, its version. The dump's anomalies are judged against it:
//! kube-proxy 1.11 never jumped from filter FORWARD to KUBE-SERVICES, so a
//! node whose rules show that generation is not missing that jump.
//!
//! Every clue is something kube-proxy writes only from, or only before, a
//! version on: a chain, a jump, the form of a fixed rule. The newest
//! generation a clue shows is the one running (kube-proxy never removes a
//! jump it no longer installs, nor a chain of an older layout it does not
//! know); clues of an older one are then leftovers.

use std::fmt;

use serde::{Serialize, Serializer};

use super::super::names::{is_old_service_chain, is_service_chain};
use super::Indexed;
use crate::mode::ipvs;
use crate::netfilter::ChainIndex;
use crate::netfilter::{Rule, Table};

/// A table of the save with its chains indexed, if the save holds it.
type Tbl<'x> = Option<(&'x Table, &'x ChainIndex<'x>)>;

/// A Kubernetes minor version, `1.24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version (1).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Version {
    /// `1.minor`.
    pub const fn v1(minor: u32) -> Version {
        Version { major: 1, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The proxy mode whose rules a save holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RulesMode {
    /// No kube-proxy chain at all (kubelet's own chains do not count).
    None,
    /// iptables mode: per-Service chains (`KUBE-SVC-`, `KUBE-SEP-`, ...)
    /// or its own fixed chains (`KUBE-NODEPORTS` in nat, ...).
    Iptables,
    /// IPVS mode: `KUBE-NODE-PORT`, `KUBE-LOAD-BALANCER`, ipset matches.
    /// Its Services are IPVS virtual servers, not iptables rules.
    Ipvs,
    /// kube-proxy's shared chains (`KUBE-SERVICES`, ...) without anything
    /// that tells the mode.
    Unknown,
    /// nftables mode: the `ip`/`ip6 kube-proxy` tables (never shown by
    /// iptables rules; `mode::nftables::dump` reports it).
    Nftables,
}

impl RulesMode {
    /// As printed: `iptables`, `ipvs`, `none`, `unknown`, `nftables`.
    pub fn as_str(self) -> &'static str {
        match self {
            RulesMode::None => "none",
            RulesMode::Iptables => "iptables",
            RulesMode::Ipvs => "ipvs",
            RulesMode::Unknown => "unknown",
            RulesMode::Nftables => "nftables",
        }
    }
}

/// The kube-proxy generation a save's rules show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    /// The proxy mode.
    pub mode: RulesMode,
    /// The oldest kube-proxy version the rules can be from, when a clue
    /// shows it (`"1.24"`: 1.24 or newer).
    pub since: Option<Version>,
    /// The first kube-proxy version that would not have written them, when
    /// a clue shows it (`"1.24"`: older than 1.24).
    pub before: Option<Version>,
    /// The clues `mode`, `since` and `before` rest on, one phrase each.
    pub evidence: Vec<String>,
    /// Clues of a kube-proxy older than `since`: leftovers of an upgrade.
    pub leftovers: Vec<String>,
    /// One line for people, e.g. `iptables mode, kube-proxy < 1.24 (KUBE-XLB
    /// chains)`, saying what the anomalies were judged against.
    pub summary: String,
}

impl Generation {
    /// Whether the rules show a kube-proxy of `version` or newer: what
    /// decides whether something that version introduced is expected.
    pub fn at_least(&self, version: Version) -> bool {
        self.since.is_some_and(|s| s >= version)
    }
}

/// Something kube-proxy writes only from (`since`) or only before
/// (`before`) a version on.
struct Clue {
    what: String,
    since: Option<Version>,
    before: Option<Version>,
    /// Drawn from something missing: never reported as a leftover, and
    /// dropped when a newer generation shows.
    absence: bool,
}

impl Clue {
    fn since(what: impl Into<String>, v: Version) -> Clue {
        Clue {
            what: what.into(),
            since: Some(v),
            before: None,
            absence: false,
        }
    }

    fn before(what: impl Into<String>, v: Version) -> Clue {
        Clue {
            what: what.into(),
            since: None,
            before: Some(v),
            absence: false,
        }
    }

    /// `what (kube-proxy >= 1.24)`.
    fn text(&self) -> String {
        let range = match (self.since, self.before) {
            (Some(s), Some(b)) => format!(">= {s}, < {b}"),
            (Some(s), None) => format!(">= {s}"),
            (None, Some(b)) => format!("< {b}"),
            (None, None) => String::new(),
        };
        if range.is_empty() {
            self.what.clone()
        } else {
            format!("{} (kube-proxy {range})", self.what)
        }
    }
}

fn declared(t: Tbl<'_>, chain: &str) -> bool {
    t.is_some_and(|(_, c)| c.contains_key(chain))
}

fn any_chain(t: Tbl<'_>, pred: impl Fn(&str) -> bool) -> bool {
    t.is_some_and(|(_, c)| c.keys().any(pred))
}

/// The rules of `chain`, in order.
fn rules_of<'x>(t: Tbl<'x>, chain: &str) -> impl Iterator<Item = &'x Rule> + 'x {
    t.and_then(|(_, c)| c.get(chain))
        .into_iter()
        .flatten()
        .copied()
}

fn jumps(t: Tbl<'_>, from: &str, to: &str) -> bool {
    rules_of(t, from).any(|r| r.target_name() == Some(to))
}

/// Whether `rule` matches an ipset of kube-proxy's IPVS mode.
fn ipvs_set_match(rule: &Rule) -> bool {
    rule.matches.iter().any(|m| {
        m.module == "set"
            && m.value("--match-set")
                .is_some_and(|s| ipvs::PROFILE.owns_ipset(s))
    })
}

/// The chains only IPVS mode creates, as `(table, chain)`.
fn ipvs_only_chains() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    ipvs::CHAINS
        .iter()
        .filter(|(t, c)| !super::super::PROFILE.owns_chain(t, c))
}

/// The proxy mode of `rs`, with the clue it rests on.
fn mode(nat: Tbl<'_>, filter: Tbl<'_>) -> (RulesMode, Option<String>) {
    // What nat KUBE-SERVICES dispatches to is what runs.
    let dispatch = rules_of(nat, "KUBE-SERVICES").any(|r| {
        r.target_name()
            .is_some_and(|c| is_service_chain(c) || is_old_service_chain(c))
    });
    if dispatch {
        return (
            RulesMode::Iptables,
            Some("nat KUBE-SERVICES jumps to per-Service chains".into()),
        );
    }
    let table = |name: &str| if name == "nat" { nat } else { filter };
    let ipvs_chains: Vec<&str> = ipvs_only_chains()
        .filter(|(t, c)| declared(table(t), c))
        .map(|(_, c)| *c)
        .collect();
    let ipvs_sets = [nat, filter]
        .into_iter()
        .flatten()
        .any(|(t, _)| t.rules.iter().any(ipvs_set_match));
    if !ipvs_chains.is_empty() {
        return (
            RulesMode::Ipvs,
            Some(format!(
                "IPVS-mode chains: {}",
                dedup(&ipvs_chains).join(", ")
            )),
        );
    }
    if ipvs_sets {
        return (
            RulesMode::Ipvs,
            Some("rules matching IPVS mode's ipsets".into()),
        );
    }
    if any_chain(nat, |c| is_service_chain(c) || is_old_service_chain(c))
        || declared(nat, "KUBE-NODEPORTS")
        || declared(filter, "KUBE-EXTERNAL-SERVICES")
    {
        return (
            RulesMode::Iptables,
            Some(
                "iptables-mode chains (per-Service chains, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES)"
                    .into(),
            ),
        );
    }
    // kube-proxy's own fixed chains, not those kubelet creates as well.
    let shared_with_kubelet = ["KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
    let kube_proxy_chain = [("nat", nat), ("filter", filter)].iter().any(|(name, t)| {
        any_chain(*t, |c| {
            !shared_with_kubelet.contains(&c) && crate::mode::chain_owner(name, c).is_kube_proxy()
        })
    });
    if kube_proxy_chain {
        return (
            RulesMode::Unknown,
            Some("kube-proxy's shared chains, none of one mode".into()),
        );
    }
    (RulesMode::None, None)
}

fn dedup<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in v {
        if !out.contains(s) {
            out.push(s);
        }
    }
    out
}

/// The clues to the kube-proxy version of `mode`'s rules.
fn clues(mode: RulesMode, nat: Tbl<'_>, filter: Tbl<'_>) -> Vec<Clue> {
    let mut out = Vec::new();
    let canary = declared(nat, "KUBE-PROXY-CANARY") || declared(filter, "KUBE-PROXY-CANARY");
    if mode == RulesMode::Iptables {
        if declared(filter, "KUBE-PROXY-FIREWALL") {
            out.push(Clue::since("KUBE-PROXY-FIREWALL chain", Version::v1(25)));
        }
        if any_chain(nat, |c| {
            c.starts_with("KUBE-SVL-") || c.starts_with("KUBE-EXT-")
        }) {
            out.push(Clue::since("KUBE-SVL/KUBE-EXT chains", Version::v1(24)));
        }
        if declared(filter, "KUBE-NODEPORTS") {
            out.push(Clue::since(
                "filter KUBE-NODEPORTS chain (health check node ports)",
                Version::v1(21),
            ));
        }
        if jumps(filter, "FORWARD", "KUBE-EXTERNAL-SERVICES") {
            out.push(Clue::since(
                "filter FORWARD jumps to KUBE-EXTERNAL-SERVICES",
                Version::v1(20),
            ));
        }
        if canary {
            out.push(Clue::since("KUBE-PROXY-CANARY chain", Version::v1(17)));
        }
        if jumps(filter, "INPUT", "KUBE-SERVICES") {
            // 1.15 to 1.19; later versions leave the jump in place.
            out.push(Clue::since(
                "filter INPUT jumps to KUBE-SERVICES",
                Version::v1(15),
            ));
        } else if jumps(filter, "FORWARD", "KUBE-SERVICES") {
            out.push(Clue::since(
                "filter FORWARD jumps to KUBE-SERVICES",
                Version::v1(15),
            ));
        }
        if any_chain(nat, is_old_service_chain) {
            out.push(Clue::before("KUBE-XLB chains", Version::v1(24)));
        }
        let old_masquerade = rules_of(nat, "KUBE-SERVICES").any(|r| {
            r.target_name() == Some("KUBE-MARK-MASQ")
                && r.comment().is_some_and(|c| c.ends_with(" cluster IP"))
        });
        if old_masquerade {
            out.push(Clue::before(
                "masquerade rules in nat KUBE-SERVICES",
                Version::v1(21),
            ));
        }
        // Unnamed ports were `ns/name:` (hashes and comments) before 1.19.
        let colon = [nat, filter].into_iter().flatten().any(|(t, _)| {
            t.rules.iter().any(|r| {
                r.comment()
                    .and_then(|c| c.split(' ').next())
                    .is_some_and(|w| w.contains('/') && w.ends_with(':'))
            })
        });
        if colon {
            out.push(Clue::before(
                "unnamed ports commented `ns/name:`",
                Version::v1(19),
            ));
        }
        // Absent from a save of the live tables (built-in chains
        // declared) that holds kube-proxy's chains: kube-proxy older than
        // the canary.
        let live = nat.is_some_and(|(_, c)| c.is_declared("PREROUTING"));
        if live && !canary {
            out.push(Clue {
                what: "no KUBE-PROXY-CANARY chain".into(),
                since: None,
                before: Some(Version::v1(17)),
                absence: true,
            });
        }
    }
    if matches!(mode, RulesMode::Iptables | RulesMode::Ipvs) {
        // Before the unmark fix, KUBE-POSTROUTING masqueraded by a mark
        // match alone; since, marked packets RETURN-or-unmark first.
        let postrouting: Vec<&Rule> = rules_of(nat, "KUBE-POSTROUTING").collect();
        let masquerade_by_mark = postrouting.iter().any(|r| {
            r.target_name() == Some("MASQUERADE")
                && r.find_match("mark")
                    .is_some_and(|m| m.options.iter().any(|o| o.name == "--mark" && !o.negated))
                && r.comment() == Some("kubernetes service traffic requiring SNAT")
        });
        let unmark = postrouting
            .iter()
            .any(|r| r.target_name() == Some("RETURN") && r.find_match("mark").is_some());
        if masquerade_by_mark && !unmark {
            out.push(Clue::before(
                "KUBE-POSTROUTING masquerades by a mark match",
                Version::v1(19),
            ));
        }
    }
    out
}

/// The generation of `rs`'s kube-proxy rules.
pub(super) fn detect(indexed: &Indexed<'_>) -> Generation {
    let table = |name: &str| {
        indexed
            .tables
            .iter()
            .find(|(t, _)| t.name == name)
            .map(|(t, c)| (*t, c))
    };
    let nat = table("nat");
    let filter = table("filter");
    let (mode, why) = mode(nat, filter);
    let clues = clues(mode, nat, filter);
    let since = clues.iter().filter_map(|c| c.since).max();
    let newer = |b: Version| since.is_none_or(|s| b > s);
    let before = clues
        .iter()
        .filter_map(|c| c.before)
        .filter(|b| newer(*b))
        .min();
    let why_mode = why.clone();
    let mut evidence: Vec<String> = why.into_iter().collect();
    let mut leftovers = Vec::new();
    for c in &clues {
        match c.before {
            Some(b) if !newer(b) => {
                if !c.absence {
                    leftovers.push(c.text());
                }
            }
            _ => evidence.push(c.text()),
        }
    }
    // The clues that decide the range, for the summary.
    let deciding: Vec<&str> = clues
        .iter()
        .filter(|c| {
            (c.since.is_some() && c.since == since)
                || (c.before.is_some() && c.before == before && c.since.is_none())
        })
        .map(|c| c.what.as_str())
        .collect();
    let summary = summary(
        mode,
        why_mode.as_deref(),
        since,
        before,
        &deciding,
        &leftovers,
    );
    Generation {
        mode,
        since,
        before,
        evidence,
        leftovers,
        summary,
    }
}

fn summary(
    mode: RulesMode,
    why_mode: Option<&str>,
    since: Option<Version>,
    before: Option<Version>,
    deciding: &[&str],
    leftovers: &[String],
) -> String {
    let mode_text = match mode {
        RulesMode::None => return "no kube-proxy rules".into(),
        RulesMode::Iptables => "iptables mode",
        RulesMode::Ipvs => "IPVS mode",
        RulesMode::Unknown => "kube-proxy's shared chains only (mode unknown)",
        RulesMode::Nftables => "nftables mode",
    };
    let range = match (since, before) {
        (Some(s), Some(b)) => format!("kube-proxy >= {s}, < {b}"),
        (Some(s), None) => format!("kube-proxy >= {s}"),
        (None, Some(b)) => format!("kube-proxy < {b}"),
        (None, None) => String::new(),
    };
    let mut out = mode_text.to_string();
    if mode == RulesMode::Ipvs
        && let Some(why) = why_mode
    {
        out.push_str(&format!(" ({why})"));
    }
    if range.is_empty() {
        if mode == RulesMode::Iptables {
            out.push_str(
                ", kube-proxy version not shown by the rules (only jumps every version installs are expected)",
            );
        }
    } else {
        out.push_str(&format!(", {range} ({})", dedup(deciding).join("; ")));
    }
    if !leftovers.is_empty() {
        out.push_str(&format!("; leftovers: {}", leftovers.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Ruleset;

    fn gen_of(text: &str) -> Generation {
        detect(&Indexed::new(&Ruleset::parse(text).expect("parses")))
    }

    #[test]
    fn no_kube_proxy_rules() {
        let g = gen_of(
            "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\nCOMMIT\n",
        );
        assert_eq!(g.mode, RulesMode::None);
        assert_eq!(g.summary, "no kube-proxy rules");
    }

    #[test]
    fn newest_clue_wins_and_older_ones_are_leftovers() {
        let g = gen_of(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVL-AAAA - [0:0]\n:KUBE-XLB-AAAA - [0:0]\n\
             -A KUBE-SERVICES -d 10.0.0.1/32 -p tcp -m comment --comment \"a/b cluster IP\" -m tcp --dport 80 -j KUBE-SVL-AAAA\nCOMMIT\n",
        );
        assert_eq!(g.mode, RulesMode::Iptables);
        assert_eq!(g.since, Some(Version::v1(24)));
        assert_eq!(g.before, None);
        assert_eq!(g.leftovers, ["KUBE-XLB chains (kube-proxy < 1.24)"]);
        assert!(
            g.summary.starts_with(
                "iptables mode, kube-proxy >= 1.24 (KUBE-SVL/KUBE-EXT chains); leftovers"
            ),
            "{}",
            g.summary
        );
        // The missing canary is an absence: dropped, not a leftover.
        assert!(!g.evidence.iter().any(|e| e.contains("CANARY")), "{g:?}");
    }

    #[test]
    fn ipvs_mode_by_its_chains() {
        let g = gen_of("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODE-PORT - [0:0]\nCOMMIT\n");
        assert_eq!(g.mode, RulesMode::Ipvs);
        assert_eq!(g.summary, "IPVS mode (IPVS-mode chains: KUBE-NODE-PORT)");
        assert!(g.evidence[0].contains("KUBE-NODE-PORT"), "{g:?}");
    }
}

//! Walks a new connection through an nftables table (kube-proxy's `ip` /
//! `ip6 kube-proxy` in nftables mode) the way the kernel's hooks run its
//! base chains: by hook, then by priority (prerouting: `filter` −110 before
//! `nat` −100; output: −110, −100, then `filter` 0; input and forward
//! `filter` 0; postrouting `nat` 100). A packet from outside the node runs
//! prerouting, is routed (input when its destination — after DNAT — is a
//! node address, forward then postrouting otherwise); a packet from the
//! node runs output, postrouting, and input when it loops back.
//!
//! Each rule is parsed into a small expression form ([`NftRule`]) of the
//! shapes kube-proxy writes: address, protocol and port matches (single
//! values, CIDRs, anonymous sets, named sets), `fib daddr|saddr type local`,
//! `ct state`, `mark and M == V`, `iifname`/`oifname`, concatenated lookups
//! in verdict maps (`ip daddr . meta l4proto . th dport vmap @service-ips`),
//! `numgen random mod N vmap { … }` (N branches of probability 1/N), the
//! statements `mark set`, `dnat to`, `masquerade`, `update @set`, `counter`,
//! and the verdicts. The members of sets and maps come from the table; a
//! set the kernel fills itself (`flags dynamic`, kube-proxy's
//! `affinity-…` sets) is a condition, as `-m recent` is in iptables mode.
//! A rule the parser does not know becomes a condition (it matches, or
//! not) and an assumption, never a silent pass.
//!
//! Outcomes, conditions, probabilities, joined ways and paths are those of
//! [`super::trace`]; steps name the table (`ip kube-proxy`), the chain and
//! the rule's 1-based position.
//!
//! ```
//! use kpinspect_core::model::Protocol;
//! use kpinspect_core::nft::{Chain, Element, Fake, Family, Map, Rule, Table, Transaction};
//! use kpinspect_core::trace::{Action, Packet, TraceOptions, trace_nftables};
//!
//! let mut tx = Transaction::new(Family::Ip, "demo", true);
//! tx.add(Table::default());
//! tx.add(Chain::base("nat-prerouting", "nat", "prerouting", -100));
//! tx.add(Chain::regular("svc"));
//! tx.add(Chain::regular("ep1"));
//! tx.add(Chain::regular("ep2"));
//! tx.add(Map::new("service-ips", "ipv4_addr . inet_proto . inet_service", "verdict"));
//! tx.add(Rule::new("nat-prerouting", "ip daddr . meta l4proto . th dport vmap @service-ips"));
//! tx.add(Rule::new("svc", "numgen random mod 2 vmap { 0 : goto ep1 , 1 : goto ep2 }"));
//! tx.add(Rule::new("ep1", "meta l4proto tcp dnat to 10.180.0.1:80"));
//! tx.add(Rule::new("ep2", "meta l4proto tcp dnat to 10.180.0.2:80"));
//! tx.add(Element::map(
//!     "service-ips",
//!     vec!["172.30.0.41".into(), "tcp".into(), "80".into()],
//!     vec!["goto svc".into()],
//! ));
//! let mut table = Fake::new(Family::Ip, "demo", true);
//! table.apply(&tx).unwrap();
//! let packet = Packet::new("10.0.0.2".parse().unwrap(), "172.30.0.41".parse().unwrap(), 80, Protocol::Tcp);
//! let t = trace_nftables(&table, &packet, &TraceOptions::default());
//! let to: Vec<String> = t.outcomes.iter().map(|o| o.to.unwrap().to_string()).collect();
//! assert_eq!(to, ["10.180.0.1:80", "10.180.0.2:80"]);
//! assert!(t.outcomes.iter().all(|o| o.action == Action::Dnat && (o.probability - 0.5).abs() < 1e-9));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use super::facts::{Atom, Prop};
use super::{
    Action, Branch, Flow, Hook, Packet, Step, TestFn, Trace, TraceOptions, Walker, WayState,
    iface_query, join, known, parse_destination, prop_query,
};
use crate::model::Protocol;
use crate::net::IpFamily;
use crate::netfilter::addr_matches;
use crate::nft::{Fake, Family, quote};

/// What one part of a concatenated key (`ip daddr . meta l4proto . th
/// dport`) or a single match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// `ip daddr` / `ip6 daddr`: the current destination.
    Daddr,
    /// `ip saddr` / `ip6 saddr`: the source.
    Saddr,
    /// `meta l4proto`.
    L4proto,
    /// `th dport` (or `tcp|udp|sctp dport`): the current destination port.
    Dport,
    /// `th sport`: the source port.
    Sport,
}

/// What a match compares its selector with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One value: an address, a CIDR, a protocol, a port or a port range.
    One(String),
    /// An anonymous set `{ a , b }`: any of them.
    Anon(Vec<String>),
    /// A named set `@name`.
    Named(String),
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `reject` (a statement in nft; ends the packet like a verdict).
    Reject,
    /// `return`.
    Return,
    /// `continue`.
    Continue,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

/// A test of a rule (all must hold for its statements to run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `SELECTOR [!=] VALUE`; with a concatenated key, a lookup in a named
    /// set (`ip daddr . meta l4proto . th dport @set`).
    Compare {
        /// What is compared (several: a concatenation).
        key: Vec<Selector>,
        /// `!=`.
        negated: bool,
        /// With what.
        value: Value,
    },
    /// `fib daddr|saddr type [!=] local`.
    FibLocal {
        /// `daddr` (true) or `saddr`.
        daddr: bool,
        /// `!=`.
        negated: bool,
    },
    /// `ct state [!=] STATES` (comma-separated).
    CtState {
        /// `!=`.
        negated: bool,
        /// The states.
        states: Vec<String>,
    },
    /// `mark and MASK ==|!= VALUE` (or `mark [!=] VALUE`).
    Mark {
        /// The mask (all ones for a plain comparison).
        mask: u32,
        /// The value.
        value: u32,
        /// `!=`.
        negated: bool,
    },
    /// `iifname` (true) or `oifname` `[!=] NAME` (`NAME*`: a prefix).
    Iface {
        /// Input (`iifname`) or output interface.
        input: bool,
        /// `!=`.
        negated: bool,
        /// The name, in iptables' spelling (`veth+` for `veth*`).
        spec: String,
    },
    /// What the trace does not read: the whole rule's matches, a condition.
    Unknown(String),
}

/// A statement that does not end the rule's evaluation by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `mark set mark or|and|xor V` / `mark set V`: the new mark from the old.
    MarkSet {
        /// `or`, `and`, `xor` or `set`.
        op: String,
        /// The operand.
        value: u32,
    },
    /// `dnat [ip|ip6] to ADDR[:PORT]` (a terminal NAT verdict).
    Dnat(String),
    /// `masquerade [...]` (a terminal NAT verdict).
    Masquerade,
    /// `update @set { ... }`, `add @set { ... }`, `counter`: nothing the
    /// trace needs.
    Other(String),
}

/// How a rule ends once its matches held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// No verdict: the next rule.
    None,
    /// A verdict.
    Verdict(Verdict),
    /// `KEY vmap @map`: the verdict of the element for the packet's key;
    /// none when no element has it (the rule does not match).
    Vmap {
        /// The key.
        key: Vec<Selector>,
        /// The map: named, or anonymous `{ K : V , ... }`.
        map: VmapRef,
    },
    /// `numgen random mod N vmap { I : V , ... }`: each of 0..N with
    /// probability 1/N.
    Numgen {
        /// N.
        modulus: u32,
        /// The verdict of each index (indices without one do not match).
        entries: Vec<(u32, Verdict)>,
    },
}

/// A verdict map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmapRef {
    /// `@name`.
    Named(String),
    /// `{ key : verdict , ... }`, each key's parts.
    Anon(Vec<(Vec<String>, Verdict)>),
}

/// One rule in the trace's expression form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    /// Its tests, in order.
    pub matches: Vec<Match>,
    /// Its statements, in order.
    pub statements: Vec<Statement>,
    /// How it ends.
    pub end: End,
}

/// Why a rule's text is not one the trace understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read nft rule at {word:?}: {why}")]
pub struct NftRuleError {
    /// The word where reading stopped (empty at the end).
    pub word: String,
    /// What was expected.
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// The text inside `{ }`.
    Group(String),
}

fn tokens(text: &str) -> Result<Vec<Tok>, NftRuleError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let err = |w: &str, why| NftRuleError {
        word: w.to_string(),
        why,
    };
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '{' {
            chars.next();
            let mut inner = String::new();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '}' {
                    closed = true;
                    break;
                }
                inner.push(c);
            }
            if !closed {
                return Err(err("{", "an unclosed {"));
            }
            out.push(Tok::Group(inner.trim().to_string()));
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => s.push(c),
                }
            }
            if !closed {
                return Err(err("\"", "an unclosed string"));
            }
            out.push(Tok::Word(s));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '{' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(Tok::Word(w));
        }
    }
    Ok(out)
}

/// A verdict as a map value or rule end spells it.
pub fn parse_verdict(text: &str) -> Option<Verdict> {
    let words: Vec<&str> = text.split_whitespace().collect();
    Some(match words.as_slice() {
        ["accept"] => Verdict::Accept,
        ["drop"] => Verdict::Drop,
        ["reject", ..] => Verdict::Reject,
        ["return"] => Verdict::Return,
        ["continue"] => Verdict::Continue,
        ["jump", c] => Verdict::Jump(c.trim_matches('"').to_string()),
        ["goto", c] => Verdict::Goto(c.trim_matches('"').to_string()),
        _ => return None,
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses one rule's text (without its comment; a trailing `comment "…"`
/// is skipped) into the trace's expression form.
pub fn parse_nft_rule(text: &str) -> Result<NftRule, NftRuleError> {
    // nft lists `mark and M` as `meta mark & M` (`|` or, `^` xor).
    let mut toks: Vec<Tok> = Vec::new();
    for t in tokens(text)? {
        if let Tok::Word(w) = &t
            && w == "mark"
            && toks.last() == Some(&Tok::Word("meta".into()))
        {
            toks.pop();
        }
        toks.push(match t {
            Tok::Word(w) if w == "&" => Tok::Word("and".into()),
            Tok::Word(w) if w == "|" => Tok::Word("or".into()),
            Tok::Word(w) if w == "^" => Tok::Word("xor".into()),
            t => t,
        });
    }
    let mut rule = NftRule {
        matches: Vec::new(),
        statements: Vec::new(),
        end: End::None,
    };
    let mut i = 0;
    let word = |i: usize| -> Option<&str> {
        match toks.get(i) {
            Some(Tok::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    };
    let fail = |i: usize, why| NftRuleError {
        word: match toks.get(i) {
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Group(g)) => format!("{{ {g} }}"),
            None => String::new(),
        },
        why,
    };
    while i < toks.len() {
        if !matches!(rule.end, End::None) {
            // Only a comment may follow the verdict.
            if word(i) == Some("comment") && i + 2 == toks.len() {
                break;
            }
            return Err(fail(i, "nothing after the verdict"));
        }
        let Some(w) = word(i) else {
            return Err(fail(i, "a match or statement"));
        };
        // A selector: a key, possibly concatenated.
        if let Some((sel, n)) = selector(&toks, i) {
            // `tcp dport 80` also matches the protocol.
            if let Some(p @ ("tcp" | "udp" | "sctp")) = word(i)
                && word(i + 2) != Some(".")
                && word(i + 1) != Some(".")
            {
                rule.matches.push(Match::Compare {
                    key: vec![Selector::L4proto],
                    negated: false,
                    value: Value::One(p.to_string()),
                });
            }
            let mut key = vec![sel];
            i += n;
            while word(i) == Some(".") {
                let (sel, n) = selector(&toks, i + 1).ok_or_else(|| fail(i + 1, "a selector"))?;
                key.push(sel);
                i += 1 + n;
            }
            if word(i) == Some("vmap") {
                let map = match toks.get(i + 1) {
                    Some(Tok::Word(m)) if m.starts_with('@') => VmapRef::Named(m[1..].to_string()),
                    Some(Tok::Group(g)) => VmapRef::Anon(anon_vmap(g).ok_or_else(|| {
                        fail(i + 1, "an anonymous verdict map of `key : verdict`")
                    })?),
                    _ => return Err(fail(i + 1, "a map after vmap")),
                };
                rule.end = End::Vmap { key, map };
                i += 2;
                continue;
            }
            let negated = word(i) == Some("!=");
            if negated || word(i) == Some("==") {
                i += 1;
            }
            let value = match toks.get(i) {
                Some(Tok::Word(v)) if v.starts_with('@') => Value::Named(v[1..].to_string()),
                Some(Tok::Word(v)) => Value::One(v.clone()),
                Some(Tok::Group(g)) => Value::Anon(
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                None => return Err(fail(i, "a value")),
            };
            if key.len() > 1 && !matches!(value, Value::Named(_)) {
                return Err(fail(i, "a named set after a concatenation"));
            }
            rule.matches.push(Match::Compare {
                key,
                negated,
                value,
            });
            i += 1;
            continue;
        }
        match w {
            "ct" if word(i + 1) == Some("state") => {
                let negated = word(i + 2) == Some("!=");
                let at = i + 2 + usize::from(negated);
                let states = match toks.get(at) {
                    Some(Tok::Word(s)) => s.split(',').map(str::to_string).collect(),
                    Some(Tok::Group(g)) => g.split(',').map(|s| s.trim().to_string()).collect(),
                    None => return Err(fail(at, "a conntrack state")),
                };
                rule.matches.push(Match::CtState { negated, states });
                i = at + 1;
            }
            "fib" => {
                let daddr = match word(i + 1) {
                    Some("daddr") => true,
                    Some("saddr") => false,
                    _ => return Err(fail(i + 1, "daddr or saddr")),
                };
                if word(i + 2) != Some("type") {
                    return Err(fail(i + 2, "type"));
                }
                let negated = word(i + 3) == Some("!=");
                let at = i + 3 + usize::from(negated);
                if word(at) != Some("local") {
                    return Err(fail(at, "local (the only fib type the trace reads)"));
                }
                rule.matches.push(Match::FibLocal { daddr, negated });
                i = at + 1;
            }
            "mark" | "meta" if word(i + 1) == Some("set") || word(i + 2) == Some("set") => {
                // `mark set mark OP V`, `meta mark set ...`, `mark set V`.
                let at = if w == "meta" { i + 3 } else { i + 2 };
                let (op, v, n) = match (word(at), word(at + 1), word(at + 2)) {
                    (Some("mark"), Some(op @ ("or" | "and" | "xor")), Some(v)) => (op, v, 3),
                    (Some(v), _, _) => ("set", v, 1),
                    _ => return Err(fail(at, "a mark value")),
                };
                let value = parse_u32(v).ok_or_else(|| fail(at, "a number"))?;
                rule.statements.push(Statement::MarkSet {
                    op: op.to_string(),
                    value,
                });
                i = at + n;
            }
            "mark" | "meta" => {
                // `mark and M == V`, `mark [!=] V`, `meta mark ...`.
                let at = if w == "meta" {
                    if word(i + 1) != Some("mark") {
                        return Err(fail(i + 1, "mark or l4proto"));
                    }
                    i + 2
                } else {
                    i + 1
                };
                let (mask, at) = if word(at) == Some("and") {
                    let m = word(at + 1)
                        .and_then(parse_u32)
                        .ok_or_else(|| fail(at + 1, "a mask"))?;
                    (m, at + 2)
                } else {
                    (u32::MAX, at)
                };
                let negated = word(at) == Some("!=");
                let at = if negated || word(at) == Some("==") {
                    at + 1
                } else {
                    at
                };
                let value = word(at)
                    .and_then(parse_u32)
                    .ok_or_else(|| fail(at, "a mark value"))?;
                rule.matches.push(Match::Mark {
                    mask,
                    value,
                    negated,
                });
                i = at + 1;
            }
            "iifname" | "oifname" => {
                let negated = word(i + 1) == Some("!=");
                let at = i + 1 + usize::from(negated);
                let name = word(at).ok_or_else(|| fail(at, "an interface name"))?;
                let spec = match name.strip_suffix('*') {
                    Some(p) => format!("{p}+"),
                    None => name.to_string(),
                };
                rule.matches.push(Match::Iface {
                    input: w == "iifname",
                    negated,
                    spec,
                });
                i = at + 1;
            }
            "numgen" => {
                // numgen random mod N [offset 0] vmap { ... }
                if word(i + 1) != Some("random") || word(i + 2) != Some("mod") {
                    return Err(fail(i + 1, "random mod N"));
                }
                let modulus = word(i + 3)
                    .and_then(parse_u32)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| fail(i + 3, "a modulus"))?;
                if word(i + 4) != Some("vmap") {
                    return Err(fail(i + 4, "vmap"));
                }
                let Some(Tok::Group(g)) = toks.get(i + 5) else {
                    return Err(fail(i + 5, "an anonymous verdict map"));
                };
                let entries = anon_vmap(g)
                    .and_then(|es| {
                        es.into_iter()
                            .map(|(k, v)| Some((parse_u32(k.first()?)?, v)))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| fail(i + 5, "`N : verdict` entries"))?;
                rule.end = End::Numgen { modulus, entries };
                i += 6;
            }
            "dnat" => {
                let at = if matches!(word(i + 1), Some("ip" | "ip6")) {
                    i + 2
                } else {
                    i + 1
                };
                if word(at) != Some("to") {
                    return Err(fail(at, "to"));
                }
                let to = word(at + 1).ok_or_else(|| fail(at + 1, "an address"))?;
                rule.statements.push(Statement::Dnat(to.to_string()));
                i = at + 2;
                // Flags (`fully-random`, `persistent`) do not change the trace.
                while matches!(word(i), Some("fully-random" | "random" | "persistent")) {
                    i += 1;
                }
            }
            "masquerade" => {
                rule.statements.push(Statement::Masquerade);
                i += 1;
                while matches!(word(i), Some("fully-random" | "random" | "persistent")) {
                    i += 1;
                }
            }
            "update" | "add" if word(i + 1).is_some_and(|s| s.starts_with('@')) => {
                if !matches!(toks.get(i + 2), Some(Tok::Group(_))) {
                    return Err(fail(i + 2, "{ key }"));
                }
                rule.statements.push(Statement::Other(format!(
                    "{w} {}",
                    word(i + 1).unwrap_or("")
                )));
                i += 3;
            }
            "counter" => {
                i += 1;
                while matches!(word(i), Some("packets" | "bytes")) {
                    i += 2;
                }
                rule.statements.push(Statement::Other("counter".into()));
            }
            "comment" if i + 2 == toks.len() => break,
            "reject" => {
                // `reject [with ...]`: how does not matter here.
                rule.end = End::Verdict(Verdict::Reject);
                i += 1;
                if word(i) == Some("with") {
                    while i < toks.len() && word(i) != Some("comment") {
                        i += 1;
                    }
                }
            }
            "accept" | "drop" | "return" | "continue" => {
                rule.end = End::Verdict(parse_verdict(w).ok_or_else(|| fail(i, "a verdict"))?);
                i += 1;
            }
            "jump" | "goto" => {
                let c = word(i + 1).ok_or_else(|| fail(i + 1, "a chain"))?;
                rule.end = End::Verdict(if w == "jump" {
                    Verdict::Jump(c.to_string())
                } else {
                    Verdict::Goto(c.to_string())
                });
                i += 2;
            }
            _ => return Err(fail(i, "a match, statement or verdict the trace knows")),
        }
    }
    Ok(rule)
}

/// What the walk runs for a rule it cannot read: the rule matching or not
/// (a condition), then the verdict its text ends with, if any.
fn fallback(text: &str) -> NftRule {
    let text = match text.find(" comment \"") {
        Some(i) => &text[..i],
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let end = [2, 1]
        .into_iter()
        .filter(|k| words.len() >= *k)
        .find_map(|k| parse_verdict(&words[words.len() - k..].join(" ")))
        .map_or(End::None, End::Verdict);
    NftRule {
        matches: vec![Match::Unknown(text.to_string())],
        statements: Vec::new(),
        end,
    }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject => "reject".into(),
        Verdict::Return => "return".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

/// The selector starting at `toks[i]`, and how many words it took.
fn selector(toks: &[Tok], i: usize) -> Option<(Selector, usize)> {
    let w = |k: usize| match toks.get(i + k) {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    Some(match (w(0)?, w(1)) {
        ("ip" | "ip6", Some("daddr")) => (Selector::Daddr, 2),
        ("ip" | "ip6", Some("saddr")) => (Selector::Saddr, 2),
        ("meta", Some("l4proto")) => (Selector::L4proto, 2),
        ("th" | "tcp" | "udp" | "sctp", Some("dport")) => (Selector::Dport, 2),
        ("th" | "tcp" | "udp" | "sctp", Some("sport")) => (Selector::Sport, 2),
        _ => return None,
    })
}

/// `k1 . k2 : verdict , ...` (a comment per element is skipped).
fn anon_vmap(g: &str) -> Option<Vec<(Vec<String>, Verdict)>> {
    g.split(',')
        .map(|e| {
            let (k, v) = e.split_once(':')?;
            let key = k
                .split(" . ")
                .map(|p| p.split_whitespace().next().unwrap_or("").to_string())
                .collect();
            Some((key, parse_verdict(v.trim())?))
        })
        .collect()
}

fn protocol_name(p: Protocol) -> (&'static str, &'static str) {
    match p {
        Protocol::Tcp => ("tcp", "6"),
        Protocol::Udp => ("udp", "17"),
        Protocol::Sctp => ("sctp", "132"),
    }
}

/// Whether one value (address/CIDR, protocol, port or range) matches.
fn value_matches(sel: Selector, v: &str, src: IpAddr, b: &Branch, proto: Protocol) -> bool {
    match sel {
        Selector::Daddr => addr_matches(v, &b.dst) || range_has_addr(v, b.dst),
        Selector::Saddr => addr_matches(v, &src) || range_has_addr(v, src),
        Selector::L4proto => {
            let (name, num) = protocol_name(proto);
            v.eq_ignore_ascii_case(name) || v == num
        }
        Selector::Dport => port_in(v, b.dport),
        Selector::Sport => false,
    }
}

/// `a-b` address ranges (as intervals are sometimes listed).
fn range_has_addr(v: &str, ip: IpAddr) -> bool {
    let Some((lo, hi)) = v.split_once('-') else {
        return false;
    };
    match (lo.trim().parse::<IpAddr>(), hi.trim().parse::<IpAddr>()) {
        (Ok(lo), Ok(hi)) => lo <= ip && ip <= hi,
        _ => false,
    }
}

fn port_in(v: &str, port: u16) -> bool {
    match v.split_once('-') {
        Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&port),
            _ => false,
        },
        None => v.parse() == Ok(port),
    }
}

/// A set's or map's elements for lookups: keys of single values
/// (addresses, ports, protocol names) by their canonical spelling, the
/// others (CIDRs, ranges) to match one by one. Values: a map element's
/// value text, `None` for a set's.
struct ContainerIndex {
    exact: HashMap<Vec<String>, Option<String>>,
    other: Vec<(Vec<String>, Option<String>)>,
}

/// `part` spelled as a lookup key: an address or a port canonical, a name
/// lower-case; `None` for a CIDR or a range.
fn canonical_part(part: &str) -> Option<String> {
    if let Ok(ip) = part.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if let Ok(n) = part.parse::<u16>() {
        return Some(n.to_string());
    }
    part.chars()
        .all(|c| c.is_ascii_alphabetic())
        .then(|| part.to_ascii_lowercase())
}

impl ContainerIndex {
    fn new(elements: &[crate::nft::Element], map: bool) -> ContainerIndex {
        let mut exact = HashMap::new();
        let mut other = Vec::new();
        for e in elements {
            let value = map.then(|| e.value_text());
            match e
                .key
                .iter()
                .map(|p| canonical_part(p))
                .collect::<Option<Vec<_>>>()
            {
                Some(k) => {
                    exact.entry(k).or_insert(value);
                }
                None => other.push((e.key.clone(), value)),
            }
        }
        ContainerIndex { exact, other }
    }

    /// The element `key` finds for branch `b`: `Some(value)` when there is
    /// one.
    fn lookup(
        &self,
        key: &[Selector],
        src: IpAddr,
        b: &Branch,
        proto: Protocol,
    ) -> Option<&Option<String>> {
        let (name, number) = protocol_name(proto);
        if !key.contains(&Selector::Sport) {
            for p in [name, number] {
                let k: Vec<String> = key
                    .iter()
                    .map(|s| match s {
                        Selector::Daddr => b.dst.to_string(),
                        Selector::Saddr => src.to_string(),
                        Selector::L4proto => p.to_string(),
                        Selector::Dport | Selector::Sport => b.dport.to_string(),
                    })
                    .collect();
                if let Some(v) = self.exact.get(&k) {
                    return Some(v);
                }
            }
        }
        let hit = |k: &[String]| {
            k.len() == key.len()
                && key
                    .iter()
                    .zip(k)
                    .all(|(s, v)| value_matches(*s, v, src, b, proto))
        };
        let exact = key
            .contains(&Selector::Sport)
            .then(|| self.exact.iter().find(|(k, _)| hit(k)).map(|(_, v)| v))
            .flatten();
        exact.or_else(|| self.other.iter().find(|(k, _)| hit(k)).map(|(_, v)| v))
    }
}

/// One rule as the walk reads it: position, text, form, parse error.
type ViewRule = (usize, String, NftRule, Option<NftRuleError>);

/// The table as the walk reads it. Rules are parsed, and sets and maps
/// indexed, when the walk first needs them (a 10k-service table has some
/// 300k rules; a packet meets a few dozen).
struct View<'t> {
    table: &'t Fake,
    /// `ip kube-proxy`.
    name: String,
    /// Chains parsed so far: each rule's position, text for the path, the
    /// form the walk runs, and why the text did not parse (then that form
    /// is one [`Match::Unknown`] and the verdict the text ends with, if
    /// any).
    parsed: RefCell<HashMap<String, Rc<Vec<ViewRule>>>>,
    /// Base chains by hook, in priority order.
    hooks: HashMap<String, Vec<String>>,
    /// Sets and maps indexed so far.
    indexes: RefCell<HashMap<String, Rc<ContainerIndex>>>,
}

impl<'t> View<'t> {
    fn new(table: &'t Fake) -> View<'t> {
        let mut based: Vec<(String, i32, String)> = Vec::new();
        for name in table.chain_names() {
            if let Some(b) = table.chain(name).and_then(|c| c.base.as_ref()) {
                based.push((b.hook.clone(), b.priority, name.to_string()));
            }
        }
        // By priority; the kernel orders equal priorities by insertion,
        // which a table's state does not keep: by name then.
        based.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        let mut hooks: HashMap<String, Vec<String>> = HashMap::new();
        for (hook, _, name) in based {
            hooks.entry(hook).or_default().push(name);
        }
        View {
            table,
            name: format!("{} {}", table.family(), table.table_name()),
            parsed: RefCell::new(HashMap::new()),
            hooks,
            indexes: RefCell::new(HashMap::new()),
        }
    }

    fn has_chain(&self, name: &str) -> bool {
        self.table.rules(name).is_some()
    }

    /// Chain `name`'s rules, parsed; whether this is the first time.
    fn rules(&self, name: &str) -> (Rc<Vec<ViewRule>>, bool) {
        if let Some(r) = self.parsed.borrow().get(name) {
            return (Rc::clone(r), false);
        }
        let rules: Vec<ViewRule> = self
            .table
            .rules(name)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let mut text = r.rule.clone();
                if let Some(c) = &r.comment {
                    text.push_str(" comment ");
                    text.push_str(&quote(c));
                }
                match parse_nft_rule(&r.rule) {
                    Ok(rule) => (k + 1, text, rule, None),
                    Err(e) => (k + 1, text, fallback(&r.rule), Some(e)),
                }
            })
            .collect();
        let rules = Rc::new(rules);
        self.parsed
            .borrow_mut()
            .insert(name.to_string(), Rc::clone(&rules));
        (rules, true)
    }

    /// Set or map `name`'s elements, indexed; `None` when there is none.
    fn index(&self, name: &str) -> Option<Rc<ContainerIndex>> {
        if let Some(i) = self.indexes.borrow().get(name) {
            return Some(Rc::clone(i));
        }
        let elements = self.table.elements(name)?;
        let map = self.table.set(name).is_none();
        let i = Rc::new(ContainerIndex::new(elements, map));
        self.indexes
            .borrow_mut()
            .insert(name.to_string(), Rc::clone(&i));
        Some(i)
    }

    /// Set `name`'s members, unless the kernel fills it (`dynamic`, which
    /// `update @set` needs, or `timeout`: members that expire) or it does
    /// not exist.
    fn static_set(&self, name: &str) -> Option<Rc<ContainerIndex>> {
        let set = self.table.set(name)?;
        if set.flags.iter().any(|f| f == "dynamic" || f == "timeout") {
            return None;
        }
        self.index(name)
    }
}

/// Traces `packet` through the nftables `table` (e.g. kube-proxy's `ip
/// kube-proxy`, compiled or read from a node). See the module
/// documentation; [`TraceOptions::local_ips`], `in_interface`, `mark` and
/// `source` apply, `mode`, `ipsets` and `virtual_servers` do not.
pub fn trace_nftables(table: &Fake, packet: &Packet, opts: &TraceOptions) -> Trace {
    let family = IpFamily::of(&packet.dst);
    let source = opts.source.as_deref().unwrap_or("the rules");
    let mut notes = Vec::new();
    let view = View::new(table);
    let table_family = match table.family() {
        Family::Ip => Some(IpFamily::V4),
        Family::Ip6 => Some(IpFamily::V6),
        Family::Inet => None,
    };
    let empty = Fake::new(table.family(), table.table_name(), true);
    let empty_view = View::new(&empty);
    let view = match table_family {
        Some(f) if f != family => {
            notes.push(format!(
                "no kube-proxy rules for {} in {source}: table {} holds {} rules, which an {} packet never meets",
                family.as_k8s_str(),
                view.name,
                f.as_k8s_str(),
                family.as_k8s_str()
            ));
            View {
                name: view.name,
                ..empty_view
            }
        }
        _ => {
            if view.hooks.is_empty() {
                notes.push(format!(
                    "no kube-proxy rules for {} in {source}: table {} has no base chain",
                    family.as_k8s_str(),
                    view.name
                ));
            }
            view
        }
    };
    let mut w = Walker {
        tables: HashMap::new(),
        packet,
        opts,
        assumptions: Vec::new(),
        in_dev: None,
        routed: false,
        splits: 0,
        affinity: false,
        sets: HashMap::new(),
        ipvs_notes: Vec::new(),
    };
    let start = Branch {
        dst: packet.dst,
        dport: packet.dport,
        mark: opts.mark,
        dnat: None,
        masquerade: false,
        ipvs: None,
        probability: 1.0,
        ways: vec![WayState {
            facts: Default::default(),
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
    let mut ended: Vec<(Branch, Action, bool)> = Vec::new();
    let first = match hook {
        Hook::Prerouting => "prerouting",
        Hook::Output => "output",
    };
    let mut routed: [Vec<Branch>; 2] = Default::default();
    for (b, v) in w.nft_hook(&view, first, vec![start], hook) {
        match v {
            Some(v) => ended.push((b, v, false)),
            None => {
                let local = w.is_local(&b.dst);
                routed[usize::from(local)].push(b);
            }
        }
    }
    for (local, mut live) in routed.into_iter().enumerate() {
        let local = local == 1;
        let stages: &[&str] = match (hook, local) {
            (Hook::Prerouting, true) => &["input"],
            (Hook::Prerouting, false) => &["forward", "postrouting"],
            (Hook::Output, true) => &["postrouting", "input"],
            (Hook::Output, false) => &["postrouting"],
        };
        for stage in stages {
            if live.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (b, v) in w.nft_hook(&view, stage, live, hook) {
                match v {
                    Some(v) => ended.push((b, v, local)),
                    None => next.push(b),
                }
            }
            live = next;
        }
        ended.extend(live.into_iter().map(|b| (b, Action::Accept, local)));
    }
    let mut groups: Vec<((Action, bool), Vec<Branch>)> = Vec::new();
    for (b, action, local) in ended {
        match groups.iter_mut().find(|(k, _)| *k == (action, local)) {
            Some((_, bs)) => bs.push(b),
            None => groups.push(((action, local), vec![b])),
        }
    }
    let mut done: Vec<(Vec<u32>, super::Outcome)> = Vec::new();
    for ((action, local), bs) in groups {
        for b in join(bs) {
            w.affinity |= b.ways.iter().any(|way| way.facts.has_quiet(|_| true));
            done.push((b.order.clone(), b.finish(action, local)));
        }
    }
    done.sort_by(|a, b| a.0.cmp(&b.0));
    let mut assumptions = w.assumptions;
    if w.affinity {
        assumptions.push(
            "the client has no session-affinity history (its address is in no `affinity-…` set) \
             unless an outcome's conditions say so"
                .into(),
        );
    }
    Trace {
        hook,
        outcomes: done.into_iter().map(|(_, o)| o).collect(),
        assumptions,
        notes,
    }
}

impl Walker<'_> {
    /// Runs the base chains of `hook_name` in priority order: `None` means
    /// the packet goes on.
    fn nft_hook(
        &mut self,
        view: &View<'_>,
        hook_name: &str,
        bs: Vec<Branch>,
        hook: Hook,
    ) -> Vec<(Branch, Option<Action>)> {
        (self.in_dev, self.routed) = match (hook, hook_name) {
            (Hook::Prerouting, "postrouting") => (Some(String::new()), true),
            (Hook::Prerouting, _) => (self.opts.in_interface.clone(), hook_name == "forward"),
            (Hook::Output, "input") => (Some("lo".into()), false),
            (Hook::Output, _) => (Some(String::new()), true),
        };
        let chains = view.hooks.get(hook_name).cloned().unwrap_or_default();
        let mut live = bs;
        let mut out = Vec::new();
        for chain in chains {
            if live.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (b, flow) in self.nft_chain(view, &chain, live, 0) {
                match flow {
                    // Kube-proxy's base chains have policy accept.
                    Flow::Accept | Flow::Continue => next.push(b),
                    Flow::Drop => out.push((b, Some(Action::Drop))),
                    Flow::Reject => out.push((b, Some(Action::Reject))),
                }
            }
            live = next;
        }
        out.extend(live.into_iter().map(|b| (b, None)));
        out
    }

    /// Runs `chain` for the branches entering it, rule by rule (see
    /// [`Walker::chain`]).
    fn nft_chain(
        &mut self,
        view: &View<'_>,
        chain: &str,
        entering: Vec<Branch>,
        depth: usize,
    ) -> Vec<(Branch, Flow)> {
        let (rules, first) = view.rules(chain);
        if first {
            for (n, text, rule, error) in rules.iter() {
                let Some(e) = error else { continue };
                let does = match &rule.end {
                    End::Verdict(v) => {
                        format!("then to end with its verdict ({})", verdict_text(v))
                    }
                    _ => "and to do nothing else".to_string(),
                };
                self.assume(format!(
                    "{} {chain} rule {n} (`{text}`) is not a rule the trace reads ({e}): \
                     it is taken to match or not as the outcomes' conditions say, {does}",
                    view.name
                ));
            }
        }
        let mut done: Vec<(Branch, Flow)> = Vec::new();
        let mut at: Vec<Vec<Branch>> = vec![Vec::new(); rules.len() + 1];
        at[0] = entering;
        for (i, (n, text, rule, _)) in rules.iter().enumerate() {
            let here = join(std::mem::take(&mut at[i]));
            if here.is_empty() {
                continue;
            }
            let step = Step {
                table: view.name.clone(),
                chain: chain.to_string(),
                rule: Some(*n),
                text: text.clone(),
            };
            let tests = self.nft_tests(view, rule);
            // Branches that go to a chain: (verdict, branch).
            let mut jumping: Vec<(Verdict, Branch)> = Vec::new();
            for b in here {
                for (b, matched) in self.matches(&tests, b) {
                    if !matched {
                        at[i + 1].push(b);
                        continue;
                    }
                    for (mut b, verdict) in self.nft_end(view, rule, b) {
                        let Some(verdict) = verdict else {
                            // A vmap without the key: the rule does not match.
                            at[i + 1].push(b);
                            continue;
                        };
                        b.push_step(step.clone());
                        let mut terminal = None;
                        for s in &rule.statements {
                            match s {
                                Statement::MarkSet { op, value } => {
                                    b.mark = match op.as_str() {
                                        "or" => b.mark | value,
                                        "and" => b.mark & value,
                                        "xor" => b.mark ^ value,
                                        _ => *value,
                                    };
                                }
                                Statement::Dnat(to) => {
                                    match parse_destination(to, b.dport) {
                                        Some(to) => {
                                            b.dst = to.ip();
                                            b.dport = to.port();
                                            b.dnat = Some(to);
                                        }
                                        None => self.assume(format!(
                                            "dnat without a single destination in {} {chain} rule {n}: destination left unchanged",
                                            view.name
                                        )),
                                    }
                                    terminal = Some(Flow::Accept);
                                }
                                Statement::Masquerade => {
                                    b.masquerade = true;
                                    terminal = Some(Flow::Accept);
                                }
                                Statement::Other(_) => {}
                            }
                            if terminal.is_some() {
                                break;
                            }
                        }
                        if let Some(f) = terminal {
                            done.push((b, f));
                            continue;
                        }
                        match verdict {
                            Verdict::Continue => at[i + 1].push(b),
                            Verdict::Accept => done.push((b, Flow::Accept)),
                            Verdict::Drop => done.push((b, Flow::Drop)),
                            Verdict::Reject => done.push((b, Flow::Reject)),
                            Verdict::Return => done.push((b, Flow::Continue)),
                            Verdict::Jump(c) | Verdict::Goto(c) if !view.has_chain(&c) => {
                                self.assume(format!(
                                    "{} {chain} rule {n} goes to chain {c}, which does not exist: ignored",
                                    view.name
                                ));
                                at[i + 1].push(b);
                            }
                            v => jumping.push((v, b)),
                        }
                    }
                }
            }
            // One walk per target chain, all its branches at once.
            while let Some((v, _)) = jumping.first() {
                let v = v.clone();
                let (these, rest): (Vec<_>, Vec<_>) =
                    jumping.into_iter().partition(|(x, _)| *x == v);
                jumping = rest;
                let bs: Vec<Branch> = these.into_iter().map(|(_, b)| b).collect();
                let (sub, goto) = match &v {
                    Verdict::Jump(c) => (c.as_str(), false),
                    Verdict::Goto(c) => (c.as_str(), true),
                    _ => continue,
                };
                if depth > 64 {
                    self.assume(format!(
                        "jumps nested deeper than 64 at {} {sub}: not followed",
                        view.name
                    ));
                    at[i + 1].extend(bs);
                    continue;
                }
                for (b, flow) in self.nft_chain(view, sub, bs, depth + 1) {
                    match flow {
                        Flow::Continue if goto => done.push((b, Flow::Continue)),
                        Flow::Continue => at[i + 1].push(b),
                        f => done.push((b, f)),
                    }
                }
            }
        }
        let last = std::mem::take(&mut at[rules.len()]);
        done.extend(last.into_iter().map(|b| (b, Flow::Continue)));
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

    /// The verdict a matched rule ends with for `b`: one for a verdict or
    /// a lookup (`None` when the map has no element for the key), one
    /// branch per index for `numgen`.
    fn nft_end(
        &mut self,
        view: &View<'_>,
        rule: &NftRule,
        b: Branch,
    ) -> Vec<(Branch, Option<Verdict>)> {
        match &rule.end {
            End::None => vec![(b, Some(Verdict::Continue))],
            End::Verdict(v) => vec![(b, Some(v.clone()))],
            End::Vmap { key, map } => {
                let src = self.packet.src;
                let proto = self.packet.protocol;
                let hit = |k: &[String]| {
                    k.len() == key.len()
                        && key
                            .iter()
                            .zip(k)
                            .all(|(s, v)| value_matches(*s, v, src, &b, proto))
                };
                let v = match map {
                    VmapRef::Anon(es) => es.iter().find(|(k, _)| hit(k)).map(|(_, v)| v.clone()),
                    VmapRef::Named(name) => match view.index(name) {
                        Some(index) => index
                            .lookup(key, src, &b, proto)
                            .and_then(|v| parse_verdict(v.as_deref().unwrap_or(""))),
                        None => {
                            self.assume(format!(
                                "{} has no map {name}: lookups in it find nothing",
                                view.name
                            ));
                            None
                        }
                    },
                };
                vec![(b, v)]
            }
            End::Numgen { modulus, entries } => {
                let n = *modulus;
                let mut out = Vec::new();
                let mut missing = 0;
                for k in 0..n {
                    match entries.iter().find(|(i, _)| *i == k) {
                        Some((_, v)) => {
                            let mut x = b.clone();
                            x.scale(1.0 / f64::from(n));
                            out.push((x, Some(v.clone())));
                        }
                        None => missing += 1,
                    }
                }
                if missing > 0 {
                    let mut x = b.clone();
                    x.scale(f64::from(missing) / f64::from(n));
                    out.push((x, None));
                }
                if out.len() > 1 {
                    self.splits += out.len() - 1;
                    for (k, (x, _)) in out.iter_mut().enumerate() {
                        x.order.push(k as u32);
                    }
                }
                out
            }
        }
    }

    /// The rule's matches as tests, in order.
    fn nft_tests(&mut self, view: &View<'_>, rule: &NftRule) -> Vec<TestFn> {
        let src = self.packet.src;
        let proto = self.packet.protocol;
        let mut tests: Vec<TestFn> = Vec::new();
        for m in &rule.matches {
            let t: TestFn = match m.clone() {
                Match::Compare {
                    key,
                    negated,
                    value,
                } => match value {
                    Value::One(v) if key.len() == 1 => {
                        let s = key[0];
                        if s == Selector::Sport {
                            let prop = Prop {
                                yes: format!("the source port is {v}"),
                                no: format!("the source port is not {v}"),
                                quiet_no: false,
                            };
                            let sport = self.packet.sport;
                            Box::new(move |_, _| match sport {
                                Some(p) => known(negated, port_in(&v, p)),
                                None => prop_query(&prop, negated),
                            })
                        } else {
                            Box::new(move |_, b| {
                                known(negated, value_matches(s, &v, src, b, proto))
                            })
                        }
                    }
                    Value::Anon(vs) if key.len() == 1 => {
                        let s = key[0];
                        Box::new(move |_, b| {
                            known(
                                negated,
                                vs.iter().any(|v| value_matches(s, v, src, b, proto)),
                            )
                        })
                    }
                    Value::Named(name) => match view.static_set(&name) {
                        Some(members) => Box::new(move |_, b| {
                            known(negated, members.lookup(&key, src, b, proto).is_some())
                        }),
                        None => {
                            let dynamic = view.table.set(&name).is_some();
                            if !dynamic {
                                self.assume(format!(
                                    "{} has no set {name}: its lookups are conditions",
                                    view.name
                                ));
                            }
                            let what = key
                                .iter()
                                .map(|s| match s {
                                    Selector::Saddr => format!("the source {src}"),
                                    Selector::Daddr => "the destination".to_string(),
                                    Selector::L4proto => "the protocol".to_string(),
                                    Selector::Dport => "the destination port".to_string(),
                                    Selector::Sport => "the source port".to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(" . ");
                            let prop = if dynamic && key == [Selector::Saddr] {
                                // kube-proxy's affinity sets: filled by
                                // `update @set { ip saddr }` on the way to
                                // an endpoint.
                                Prop {
                                    yes: format!(
                                        "set {name} holds {what} (session affinity: the client was sent there recently)"
                                    ),
                                    no: format!("set {name} does not hold {what}"),
                                    quiet_no: true,
                                }
                            } else {
                                Prop {
                                    yes: format!("set {name} holds {what}"),
                                    no: format!("set {name} does not hold {what}"),
                                    quiet_no: false,
                                }
                            };
                            Box::new(move |_, _| prop_query(&prop, negated))
                        }
                    },
                    _ => {
                        let prop = Prop::matches("a concatenation compared with one value");
                        Box::new(move |_, _| prop_query(&prop, negated))
                    }
                },
                Match::Unknown(text) => {
                    let prop = Prop::matches(&text);
                    Box::new(move |_, _| prop_query(&prop, false))
                }
                Match::FibLocal { daddr, negated } => Box::new(move |w, b| {
                    let ip = if daddr { b.dst } else { src };
                    known(negated, w.is_local(&ip))
                }),
                Match::CtState { negated, states } => Box::new(move |_, _| {
                    // The first packet of a new connection.
                    known(negated, states.iter().any(|s| s == "new"))
                }),
                Match::Mark {
                    mask,
                    value,
                    negated,
                } => Box::new(move |_, b| known(negated, b.mark & mask == value)),
                Match::Iface {
                    input: true,
                    negated,
                    spec,
                } => Box::new(move |w, _| match &w.in_dev {
                    Some(dev) => known(negated, super::facts::iface_matches(&spec, dev)),
                    None => iface_query(Atom::In, &spec, negated),
                }),
                Match::Iface {
                    input: false,
                    negated,
                    spec,
                } => Box::new(move |w, b| {
                    if !w.routed {
                        known(negated, super::facts::iface_matches(&spec, ""))
                    } else if w.is_local(&b.dst) {
                        known(negated, super::facts::iface_matches(&spec, "lo"))
                    } else {
                        iface_query(Atom::Out(b.dst), &spec, negated)
                    }
                }),
            };
            tests.push(t);
        }
        tests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{Chain, Element, Map, Rule, Set, Table, Transaction};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kube_proxy_rule_shapes_parse() {
        let shapes = [
            "ct state new jump firewall-check",
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            "ip6 daddr != ::1 meta l4proto . th dport vmap @no-endpoint-nodeports",
            "mark and 0x4000 == 0 return",
            "mark set mark xor 0x4000",
            "mark set mark or 0x00004000",
            "masquerade fully-random",
            "ip daddr @cluster-ips reject",
            "ip daddr { 172.30.0.0/16,172.50.0.0/16 } drop",
            "ip saddr != { 192.168.0.0/24 , 203.0.113.0/25 , 1.2.3.4 } drop",
            "ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            "ip daddr 172.30.0.50 iifname != veth* jump mark-for-masquerade",
            "iifname cbr0 goto service-X",
            "fib saddr type local jump mark-for-masquerade",
            "ip saddr @affinity-X goto endpoint-X",
            "update @affinity-X { ip saddr }",
            "meta l4proto tcp dnat to 10.180.0.1:80",
            "meta l4proto tcp dnat to [fd00::1]:80",
            "numgen random mod 2 vmap { 0 : goto endpoint-A , 1 : goto endpoint-B }",
            "reject",
            "jump services",
        ];
        for s in shapes {
            assert!(parse_nft_rule(s).is_ok(), "{s}: {:?}", parse_nft_rule(s));
        }
        let r = parse_nft_rule("ip saddr != { 192.168.0.0/24 , 1.2.3.4 } drop").unwrap();
        assert_eq!(
            r.matches,
            [Match::Compare {
                key: vec![Selector::Saddr],
                negated: true,
                value: Value::Anon(vec!["192.168.0.0/24".into(), "1.2.3.4".into()]),
            }]
        );
        assert_eq!(r.end, End::Verdict(Verdict::Drop));
        // nft lists interface names quoted.
        let r = parse_nft_rule("iifname != \"veth*\" jump mark-for-masquerade").unwrap();
        assert_eq!(
            r.matches,
            [Match::Iface {
                input: true,
                negated: true,
                spec: "veth+".into()
            }]
        );
        // As nft lists them.
        for (listed, written) in [
            (
                "meta mark & 0x00004000 == 0x00000000 return",
                "mark and 0x4000 == 0 return",
            ),
            (
                "meta mark set meta mark ^ 0x00004000",
                "mark set mark xor 0x4000",
            ),
            (
                "meta mark set meta mark | 0x4000",
                "mark set mark or 0x4000",
            ),
            ("reject with icmpx type admin-prohibited", "reject"),
        ] {
            assert_eq!(parse_nft_rule(listed), parse_nft_rule(written), "{listed}");
        }
        let r = parse_nft_rule("udp dport 53 accept").unwrap();
        assert_eq!(
            r.matches,
            [
                Match::Compare {
                    key: vec![Selector::L4proto],
                    negated: false,
                    value: Value::One("udp".into())
                },
                Match::Compare {
                    key: vec![Selector::Dport],
                    negated: false,
                    value: Value::One("53".into())
                }
            ]
        );
        for bad in [
            "log prefix \"x\" accept",
            "ip daddr",
            "drop accept",
            "numgen inc mod 2 vmap { 0 : drop }",
        ] {
            assert!(parse_nft_rule(bad).is_err(), "{bad}");
        }
    }

    /// A small table of kube-proxy's shape: a ClusterIP with two endpoints,
    /// a NodePort, a service without endpoints, masquerading.
    fn table() -> Fake {
        let mut tx = Transaction::new(Family::Ip, "kube-proxy", true);
        tx.add(Table::default());
        for (name, ty, hook, prio) in [
            ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
            ("nat-prerouting", "nat", "prerouting", -100),
            ("filter-input", "filter", "input", 0),
            ("filter-forward", "filter", "forward", 0),
            ("nat-output", "nat", "output", -100),
            ("filter-output", "filter", "output", 0),
            ("nat-postrouting", "nat", "postrouting", 100),
        ] {
            tx.add(Chain::base(name, ty, hook, prio));
        }
        for c in [
            "services",
            "masquerading",
            "mark-for-masquerade",
            "service-endpoints-check",
            "reject-chain",
            "svc",
            "ext",
            "ep1",
            "ep2",
        ] {
            tx.add(Chain::regular(c));
        }
        let mut nodeport = Set::new("nodeport-ips", "ipv4_addr");
        nodeport.comment = None;
        tx.add(nodeport);
        tx.add(Map::new(
            "service-ips",
            "ipv4_addr . inet_proto . inet_service",
            "verdict",
        ));
        tx.add(Map::new(
            "service-nodeports",
            "inet_proto . inet_service",
            "verdict",
        ));
        tx.add(Map::new(
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service",
            "verdict",
        ));
        let mut aff = Set::new("affinity-1", "ipv4_addr");
        aff.flags = vec!["dynamic".into(), "timeout".into()];
        aff.timeout = Some(10800);
        tx.add(aff);
        for (c, r) in [
            ("nat-prerouting", "jump services"),
            ("nat-output", "jump services"),
            ("nat-postrouting", "jump masquerading"),
            (
                "filter-forward",
                "ct state new jump service-endpoints-check",
            ),
            ("filter-output", "ct state new jump service-endpoints-check"),
            ("filter-input", "ct state new jump service-endpoints-check"),
            (
                "service-endpoints-check",
                "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
            ),
            ("reject-chain", "reject"),
            ("mark-for-masquerade", "mark set mark or 0x4000"),
            ("masquerading", "mark and 0x4000 == 0 return"),
            ("masquerading", "mark set mark xor 0x4000"),
            ("masquerading", "masquerade fully-random"),
            (
                "services",
                "ip daddr . meta l4proto . th dport vmap @service-ips",
            ),
            (
                "services",
                "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
            ),
            (
                "svc",
                "ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            ),
            ("svc", "ip saddr @affinity-1 goto ep1"),
            (
                "svc",
                "numgen random mod 2 vmap { 0 : goto ep1 , 1 : goto ep2 }",
            ),
            ("ext", "jump mark-for-masquerade"),
            ("ext", "goto svc"),
            ("ep1", "ip saddr 10.180.0.1 jump mark-for-masquerade"),
            ("ep1", "update @affinity-1 { ip saddr }"),
            ("ep1", "meta l4proto tcp dnat to 10.180.0.1:80"),
            ("ep2", "meta l4proto tcp dnat to 10.180.0.2:8080"),
        ] {
            tx.add(Rule::new(c, r));
        }
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        tx.add(Element::set("nodeport-ips", v(&["192.168.0.2"])));
        tx.add(Element::map(
            "service-ips",
            v(&["172.30.0.41", "tcp", "80"]),
            v(&["goto svc"]),
        ));
        tx.add(Element::map(
            "service-nodeports",
            v(&["tcp", "30080"]),
            v(&["goto ext"]),
        ));
        tx.add(Element::map(
            "no-endpoint-services",
            v(&["172.30.0.99", "tcp", "80"]),
            v(&["goto reject-chain"]),
        ));
        let mut f = Fake::new(Family::Ip, "kube-proxy", true);
        f.apply(&tx).unwrap();
        f
    }

    fn run(src: &str, dst: &str, port: u16) -> Trace {
        let opts = TraceOptions {
            local_ips: vec![ip("192.168.0.2")],
            ..Default::default()
        };
        trace_nftables(
            &table(),
            &Packet::new(ip(src), ip(dst), port, Protocol::Tcp),
            &opts,
        )
    }

    fn plain(t: &Trace) -> Vec<(Action, Option<String>, bool)> {
        t.outcomes
            .iter()
            .filter(|o| o.conditions.is_empty())
            .map(|o| (o.action, o.to.map(|a| a.to_string()), o.masquerade))
            .collect()
    }

    #[test]
    fn cluster_ip_from_a_pod_splits_by_numgen() {
        let t = run("10.0.0.5", "172.30.0.41", 80);
        assert_eq!(t.hook, Hook::Prerouting);
        assert_eq!(
            plain(&t),
            [
                (Action::Dnat, Some("10.180.0.1:80".into()), false),
                (Action::Dnat, Some("10.180.0.2:8080".into()), false),
            ]
        );
        for o in t.outcomes.iter().filter(|o| o.conditions.is_empty()) {
            assert!((o.probability - 0.5).abs() < 1e-9, "{o:?}");
        }
        // The affinity set is a condition, certain when it holds.
        let sticky: Vec<_> = t
            .outcomes
            .iter()
            .filter(|o| !o.conditions.is_empty())
            .collect();
        assert_eq!(sticky.len(), 1, "{t:#?}");
        assert_eq!(sticky[0].to.unwrap().to_string(), "10.180.0.1:80");
        assert_eq!(sticky[0].probability, 1.0);
        assert!(sticky[0].conditions[0].contains("set affinity-1 holds the source 10.0.0.5"));
        assert!(
            t.assumptions
                .iter()
                .any(|a| a.contains("no session-affinity history"))
        );
        // The path: table, chain, rule number, text.
        let first = &t.outcomes[0].path;
        assert_eq!(first[0].table, "ip kube-proxy");
        assert_eq!(
            (first[0].chain.as_str(), first[0].rule),
            ("nat-prerouting", Some(1))
        );
        let chains: Vec<&str> = first.iter().map(|s| s.chain.as_str()).collect();
        assert_eq!(
            chains,
            [
                "nat-prerouting",
                "services",
                "svc",
                "ep1",
                "ep1",
                "filter-forward",
                "nat-postrouting",
                "masquerading"
            ]
        );
    }

    #[test]
    fn masquerade_follows_the_mark() {
        // From outside the pod network: marked in svc, masqueraded in
        // postrouting, the bit cleared on the way.
        let t = run("203.0.113.9", "172.30.0.41", 80);
        let p = plain(&t);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|(a, _, m)| *a == Action::Dnat && *m), "{p:?}");
        let last = t.outcomes[0].path.last().unwrap();
        assert_eq!(
            (last.chain.as_str(), last.text.as_str()),
            ("masquerading", "masquerade fully-random")
        );
        // Hairpin: the endpoint reaching itself.
        let t = run("10.180.0.1", "172.30.0.41", 80);
        let p = plain(&t);
        assert_eq!(
            p,
            [
                (Action::Dnat, Some("10.180.0.1:80".into()), true),
                (Action::Dnat, Some("10.180.0.2:8080".into()), false),
            ]
        );
    }

    #[test]
    fn node_ports_no_endpoints_and_local_traffic() {
        // A NodePort on the node's address, from outside: through ext.
        let t = run("203.0.113.9", "192.168.0.2", 30080);
        let p = plain(&t);
        assert_eq!(p.len(), 2, "{t:#?}");
        assert!(p.iter().all(|(_, _, m)| *m));
        assert!(t.outcomes.iter().all(|o| !o.local));
        // Not a NodePort: delivered to the node unchanged.
        let t = run("203.0.113.9", "192.168.0.2", 22);
        assert_eq!(p_actions(&t), [(Action::Accept, true)]);
        // A service without endpoints: rejected in the filter hooks.
        let t = run("10.0.0.5", "172.30.0.99", 80);
        assert_eq!(p_actions(&t), [(Action::Reject, false)]);
        let last = t.outcomes[0].path.last().unwrap();
        assert_eq!(
            (last.chain.as_str(), last.text.as_str()),
            ("reject-chain", "reject")
        );
        // From the node itself: output hooks, masqueraded.
        let t = run("192.168.0.2", "172.30.0.41", 80);
        assert_eq!(t.hook, Hook::Output);
        assert!(plain(&t).iter().all(|(a, _, m)| *a == Action::Dnat && *m));
        let t = run("192.168.0.2", "172.30.0.99", 80);
        assert_eq!(p_actions(&t), [(Action::Reject, false)]);
    }

    fn p_actions(t: &Trace) -> Vec<(Action, bool)> {
        t.outcomes.iter().map(|o| (o.action, o.local)).collect()
    }

    #[test]
    fn unknown_rules_and_interfaces_are_conditions() {
        let mut tx = Transaction::new(Family::Ip, "t", true);
        tx.add(Table::default());
        tx.add(Chain::base("f", "filter", "forward", 0));
        tx.add(Rule::new("f", "log prefix \"x\" drop"));
        tx.add(Rule::new("f", "iifname != \"veth*\" reject"));
        let mut f = Fake::new(Family::Ip, "t", true);
        f.apply(&tx).unwrap();
        let t = trace_nftables(
            &f,
            &Packet::new(ip("10.0.0.1"), ip("10.0.0.2"), 80, Protocol::Tcp),
            &TraceOptions::default(),
        );
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
                    vec!["`log prefix \"x\" drop` matches".to_string()]
                ),
                (
                    Action::Reject,
                    vec![
                        "`log prefix \"x\" drop` does not match".to_string(),
                        "the packet does not arrive on veth+".to_string()
                    ]
                ),
                (
                    Action::Accept,
                    vec![
                        "`log prefix \"x\" drop` does not match".to_string(),
                        "the packet arrives on an interface matching veth+".to_string()
                    ]
                ),
            ],
            "{t:#?}"
        );
        assert!(
            t.assumptions[0].contains(
                "(`log prefix \"x\" drop`) is not a rule the trace reads (cannot read nft rule at \"log\""
            ) && t.assumptions[0].ends_with("then to end with its verdict (drop)"),
            "{:?}",
            t.assumptions
        );
        // The other family: said, nothing walked.
        let t = trace_nftables(
            &table(),
            &Packet::new(ip("fd00::1"), ip("fd00::2"), 80, Protocol::Tcp),
            &TraceOptions::default(),
        );
        assert!(
            t.notes[0].starts_with("no kube-proxy rules for IPv6"),
            "{:?}",
            t.notes
        );
        assert_eq!(p_actions(&t), [(Action::Accept, false)]);
        assert!(t.outcomes[0].path.is_empty());
    }
}

//! What one branch of a trace has assumed about state the trace cannot
//! know: the interfaces the packet arrives and leaves on, ipset membership,
//! session-affinity history, physdev and other matches of unknown state.
//!
//! Every assumption is an [`Atom`] with the [`Value`] the branch took for
//! it. A later rule asking about the same atom is decided by that value
//! ([`Query::decide`]) instead of splitting the branch again, so a branch
//! never holds two contradicting assumptions. Whether two branches' sets of
//! assumptions are the same or share no world decides whether they can be
//! joined ([`same_alternatives`], [`disjoint_alternatives`]); a joined
//! outcome's disjunction is simplified for its conditions ([`conditions`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

/// One unknown the trace can branch on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Atom {
    /// The interface the packet arrived on (one for the whole walk).
    In,
    /// The interface the route to this address leaves on (routing is a
    /// function of the destination: the same for every rule until a DNAT
    /// changes the destination).
    Out(IpAddr),
    /// A yes/no fact.
    Prop(Prop),
}

/// A yes/no fact, keyed by what it says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Prop {
    /// What holds when it is true.
    pub yes: String,
    /// What holds when it is false.
    pub no: String,
    /// Whether "false" is the trace's default (a brand-new client without
    /// session-affinity history), not listed among an outcome's conditions.
    pub quiet_no: bool,
}

impl Prop {
    /// A fact about a match whose state the trace does not know, e.g.
    /// `` `-m physdev --physdev-is-in` matches ``.
    pub fn matches(text: &str) -> Prop {
        Prop {
            yes: format!("`{text}` matches"),
            no: format!("`{text}` does not match"),
            quiet_no: false,
        }
    }
}

/// What a branch took an atom to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// For [`Atom::Prop`].
    Bool(bool),
    /// For [`Atom::In`] and [`Atom::Out`]: the names the interface may have.
    Ifaces(Ifaces),
}

impl Value {
    /// The value that holds exactly when `self` or `other` holds: `Some(None)`
    /// when that is no constraint at all, `None` when a single value cannot
    /// say it.
    pub fn union(&self, other: &Value) -> Option<Option<Value>> {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) if a == b => Some(Some(self.clone())),
            (Value::Bool(_), Value::Bool(_)) => Some(None),
            (Value::Ifaces(a), Value::Ifaces(b)) => {
                let u = a.union(b)?;
                Some((!u.is_any()).then_some(Value::Ifaces(u)))
            }
            _ => None,
        }
    }
}

/// A set of interface names, as `-i`/`-o` patterns can narrow it down:
/// exact names (`eth0`) and prefixes (`veth+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ifaces {
    /// One of these names.
    OneOf(BTreeSet<String>),
    /// Any name starting with `prefix` that matches none of the patterns
    /// in `not`.
    Matching {
        prefix: String,
        not: BTreeSet<String>,
    },
}

/// Whether interface `name` matches the iptables pattern `spec` (`eth0`,
/// `veth+`; `+` alone matches every name).
pub(super) fn iface_matches(spec: &str, name: &str) -> bool {
    match spec.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => spec == name,
    }
}

impl Ifaces {
    /// Every name.
    pub fn any() -> Ifaces {
        Ifaces::Matching {
            prefix: String::new(),
            not: BTreeSet::new(),
        }
    }

    fn is_any(&self) -> bool {
        matches!(self, Ifaces::Matching { prefix, not } if prefix.is_empty() && not.is_empty())
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Ifaces::OneOf(names) => names.contains(name),
            Ifaces::Matching { prefix, not } => {
                name.starts_with(prefix.as_str()) && !not.iter().any(|p| iface_matches(p, name))
            }
        }
    }

    /// `Some(true)` when every name of the set matches `spec`,
    /// `Some(false)` when none does, `None` when that is not known.
    pub fn decide(&self, spec: &str) -> Option<bool> {
        match self {
            Ifaces::OneOf(names) => {
                let hits = names.iter().filter(|n| iface_matches(spec, n)).count();
                match hits {
                    0 => Some(false),
                    h if h == names.len() => Some(true),
                    _ => None,
                }
            }
            Ifaces::Matching { prefix, not } => match spec.strip_suffix('+') {
                // An infinite set never lies within one name.
                None => (!self.contains(spec)).then_some(false),
                Some(q) if prefix.starts_with(q) => Some(true),
                Some(q) if !q.starts_with(prefix.as_str()) => Some(false),
                Some(q) => not
                    .iter()
                    .any(|n| n.strip_suffix('+').is_some_and(|r| q.starts_with(r)))
                    .then_some(false),
            },
        }
    }

    /// The names left when the interface is known to match `spec` (or not).
    pub fn restrict(&self, spec: &str, matched: bool) -> Ifaces {
        match self {
            Ifaces::OneOf(names) => Ifaces::OneOf(
                names
                    .iter()
                    .filter(|n| iface_matches(spec, n) == matched)
                    .cloned()
                    .collect(),
            ),
            Ifaces::Matching { prefix, not } => {
                if matched {
                    match spec.strip_suffix('+') {
                        None => Ifaces::OneOf([spec.to_string()].into()),
                        Some(q) if q.len() > prefix.len() => Ifaces::Matching {
                            prefix: q.to_string(),
                            not: not.clone(),
                        }
                        .normalized(),
                        Some(_) => self.clone(),
                    }
                } else {
                    let mut not = not.clone();
                    not.insert(spec.to_string());
                    Ifaces::Matching {
                        prefix: prefix.clone(),
                        not,
                    }
                    .normalized()
                }
            }
        }
    }

    /// Drops exclusions that exclude nothing more: outside the prefix, or
    /// within a wider excluded prefix.
    fn normalized(self) -> Ifaces {
        match self {
            Ifaces::Matching { prefix, not } => {
                let keep = not
                    .iter()
                    .filter(|n| match n.strip_suffix('+') {
                        None => n.starts_with(prefix.as_str()),
                        Some(r) => r.starts_with(prefix.as_str()) || prefix.starts_with(r),
                    })
                    .filter(|n| {
                        let core = n.strip_suffix('+').unwrap_or(n);
                        !not.iter().any(|m| {
                            m != *n && m.strip_suffix('+').is_some_and(|mp| core.starts_with(mp))
                        })
                    })
                    .cloned()
                    .collect();
                Ifaces::Matching { prefix, not: keep }
            }
            one => one,
        }
    }

    /// The set of names in `self` or `other`, when one set can say it.
    pub fn union(&self, other: &Ifaces) -> Option<Ifaces> {
        if self == other {
            return Some(self.clone());
        }
        match (self, other) {
            (Ifaces::OneOf(a), Ifaces::OneOf(b)) => Some(Ifaces::OneOf(a | b)),
            (Ifaces::OneOf(names), Ifaces::Matching { prefix, not })
            | (Ifaces::Matching { prefix, not }, Ifaces::OneOf(names)) => {
                let mut not = not.clone();
                for n in names {
                    if !n.starts_with(prefix.as_str()) {
                        return None;
                    }
                    not.remove(n);
                    if not.iter().any(|p| iface_matches(p, n)) {
                        return None;
                    }
                }
                Some(
                    Ifaces::Matching {
                        prefix: prefix.clone(),
                        not,
                    }
                    .normalized(),
                )
            }
            (
                Ifaces::Matching {
                    prefix: p1,
                    not: n1,
                },
                Ifaces::Matching {
                    prefix: p2,
                    not: n2,
                },
            ) => {
                if p1 == p2 {
                    // (P∖A) ∪ (P∖B) = P∖(A∩B)
                    let not = n1
                        .iter()
                        .flat_map(|a| n2.iter().filter_map(move |b| pattern_intersection(a, b)))
                        .collect();
                    return Some(
                        Ifaces::Matching {
                            prefix: p1.clone(),
                            not,
                        }
                        .normalized(),
                    );
                }
                // One prefix within the other: the wider set must exclude
                // exactly the narrower prefix.
                let (wide, wide_not, narrow, narrow_not) = if p2.starts_with(p1.as_str()) {
                    (p1, n1, p2, n2)
                } else if p1.starts_with(p2.as_str()) {
                    (p2, n2, p1, n1)
                } else {
                    return None;
                };
                let hole = format!("{narrow}+");
                if !wide_not.contains(&hole) {
                    return None;
                }
                let mut not: BTreeSet<String> =
                    wide_not.iter().filter(|n| **n != hole).cloned().collect();
                not.extend(narrow_not.iter().cloned());
                Some(
                    Ifaces::Matching {
                        prefix: wide.clone(),
                        not,
                    }
                    .normalized(),
                )
            }
        }
    }

    /// `the packet arrives on interface weave`, `the packet does not leave
    /// on docker0 or weave`, ...
    fn describe(&self, subject: &str, verb: &str) -> String {
        match self {
            Ifaces::OneOf(names) => {
                format!("{subject} {verb}s on interface {}", or_list(names))
            }
            Ifaces::Matching { prefix, not } if prefix.is_empty() => {
                format!("{subject} does not {verb} on {}", or_list(not))
            }
            Ifaces::Matching { prefix, not } if not.is_empty() => {
                format!("{subject} {verb}s on an interface matching {prefix}+")
            }
            Ifaces::Matching { prefix, not } => format!(
                "{subject} {verb}s on an interface matching {prefix}+ but not {}",
                or_list(not)
            ),
        }
    }
}

/// The names matching both patterns, as one pattern.
fn pattern_intersection(a: &str, b: &str) -> Option<String> {
    match (a.strip_suffix('+'), b.strip_suffix('+')) {
        (None, None) => (a == b).then(|| a.to_string()),
        (None, Some(q)) => a.starts_with(q).then(|| a.to_string()),
        (Some(p), None) => b.starts_with(p).then(|| b.to_string()),
        (Some(p), Some(q)) if p.starts_with(q) => Some(a.to_string()),
        (Some(p), Some(q)) if q.starts_with(p) => Some(b.to_string()),
        _ => None,
    }
}

fn or_list(items: &BTreeSet<String>) -> String {
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// One set of assumptions, in the order they were made: a conjunction.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts(Vec<(Atom, Value)>);

impl Facts {
    fn get(&self, atom: &Atom) -> Option<&Value> {
        self.0.iter().find(|(a, _)| a == atom).map(|(_, v)| v)
    }

    fn set(&mut self, atom: Atom, value: Value) {
        match self.0.iter_mut().find(|(a, _)| *a == atom) {
            Some(slot) => slot.1 = value,
            None => self.0.push((atom, value)),
        }
    }

    /// The same assumptions, in any order.
    pub fn same(&self, other: &Facts) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|(a, v)| other.get(a) == Some(v))
    }

    /// Whether every world of `self` is one of `other` (`other`'s
    /// assumptions all follow from `self`'s).
    fn implies(&self, other: &Facts) -> bool {
        other
            .0
            .iter()
            .all(|(a, v)| self.get(a).is_some_and(|mine| mine.within(v)))
    }

    /// Whether no world is in both (some atom with disjoint values).
    fn disjoint(&self, other: &Facts) -> bool {
        self.0
            .iter()
            .any(|(a, v)| other.get(a).is_some_and(|theirs| v.disjoint(theirs)))
    }

    /// `self` without `atom`.
    fn without(&self, atom: &Atom) -> Facts {
        Facts(self.0.iter().filter(|(a, _)| a != atom).cloned().collect())
    }
}

impl Value {
    /// Whether every world of `self` is one of `other`.
    fn within(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Ifaces(a), Value::Ifaces(b)) => a.within(b),
            _ => false,
        }
    }

    /// Whether no world is in both (`false` when that is not certain).
    fn disjoint(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a != b,
            (Value::Ifaces(a), Value::Ifaces(b)) => a.disjoint(b),
            _ => false,
        }
    }
}

impl Ifaces {
    /// Whether every name of `self` is in `other` (`false` when that is
    /// not certain).
    fn within(&self, other: &Ifaces) -> bool {
        match (self, other) {
            (Ifaces::OneOf(names), _) => names.iter().all(|n| other.contains(n)),
            (Ifaces::Matching { .. }, Ifaces::OneOf(_)) => false,
            (
                Ifaces::Matching {
                    prefix: p1,
                    not: n1,
                },
                Ifaces::Matching {
                    prefix: p2,
                    not: n2,
                },
            ) => {
                p1.starts_with(p2.as_str())
                    && n2.iter().all(|x| {
                        // What `other` excludes within `self`'s prefix, `self` excludes too.
                        match pattern_intersection(x, &format!("{p1}+")) {
                            None => true,
                            Some(m) => n1.iter().any(|y| pattern_within(&m, y)),
                        }
                    })
            }
        }
    }

    /// Whether no name is in both (`false` when that is not certain).
    fn disjoint(&self, other: &Ifaces) -> bool {
        match (self, other) {
            (Ifaces::OneOf(names), x) | (x, Ifaces::OneOf(names)) => {
                names.iter().all(|n| !x.contains(n))
            }
            (
                Ifaces::Matching {
                    prefix: p1,
                    not: n1,
                },
                Ifaces::Matching {
                    prefix: p2,
                    not: n2,
                },
            ) => {
                let (narrow, wide_not) = if p1.starts_with(p2.as_str()) {
                    (p1, n2)
                } else if p2.starts_with(p1.as_str()) {
                    (p2, n1)
                } else {
                    return true;
                };
                let narrow = format!("{narrow}+");
                wide_not.iter().any(|x| pattern_within(&narrow, x))
            }
        }
    }
}

/// Whether every name matching pattern `a` matches pattern `b`.
fn pattern_within(a: &str, b: &str) -> bool {
    match (a.strip_suffix('+'), b.strip_suffix('+')) {
        (_, Some(q)) => a.strip_suffix('+').unwrap_or(a).starts_with(q),
        (None, None) => a == b,
        (Some(_), None) => false,
    }
}

impl Facts {
    /// `self` once the match is known to match (or not); `None` when
    /// `self` decides it the other way.
    pub fn restrict(&self, q: &Query, matched: bool) -> Option<Facts> {
        match q.decide(self) {
            Some(d) => (d == matched).then(|| self.clone()),
            None => {
                let mut f = self.clone();
                q.assume(&mut f, matched);
                Some(f)
            }
        }
    }

    /// The conditions to list, once each, in the order assumed; a quiet
    /// default (no session-affinity history) only with `all`.
    pub fn conditions(&self, dst: IpAddr, all: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (a, v) in &self.0 {
            if let Some(text) = describe(a, v, dst, all)
                && !out.contains(&text)
            {
                out.push(text);
            }
        }
        out
    }

    /// Whether a quiet default (no session-affinity history) was assumed.
    pub fn has_quiet(&self, which: impl Fn(&Prop) -> bool) -> bool {
        self.0.iter().any(|(a, v)| {
            matches!((a, v), (Atom::Prop(p), Value::Bool(false)) if p.quiet_no && which(p))
        })
    }
}

/// The match's result when every alternative decides it the same way.
pub(super) fn decide(alts: &[&Facts], q: &Query) -> Option<bool> {
    let mut result = None;
    for f in alts {
        let d = q.decide(f)?;
        if result.is_some_and(|r| r != d) {
            return None;
        }
        result = Some(d);
    }
    result
}

/// The same alternatives, in any order (duplicates aside).
pub(super) fn same_alternatives(a: &[&Facts], b: &[&Facts]) -> bool {
    a.iter().all(|f| b.iter().any(|g| f.same(g))) && b.iter().all(|g| a.iter().any(|f| f.same(g)))
}

/// Whether no world is in both.
pub(super) fn disjoint_alternatives(a: &[&Facts], b: &[&Facts]) -> bool {
    a.iter().all(|f| b.iter().all(|g| f.disjoint(g)))
}

/// The conditions of a disjunction of alternatives, simplified: what every
/// alternative assumes alike, once each, then "either A, or (B and C)"
/// for the rest.
pub(super) fn conditions(alts: &[&Facts], dst: IpAddr) -> Vec<String> {
    let mut alts: Vec<Facts> = alts.iter().map(|f| (*f).clone()).collect();
    simplify(&mut alts);
    let Some((first, rest)) = alts.split_first() else {
        return Vec::new();
    };
    let common = Facts(
        first
            .0
            .iter()
            .filter(|(a, v)| rest.iter().all(|f| f.get(a) == Some(v)))
            .cloned()
            .collect(),
    );
    let mut out = common.conditions(dst, false);
    if rest.is_empty() {
        return out;
    }
    let parts: Vec<String> = alts
        .iter()
        .map(|f| {
            let own: Vec<String> =
                f.0.iter()
                    .filter(|(a, v)| common.get(a) != Some(v))
                    .filter_map(|(a, v)| describe(a, v, dst, true))
                    .collect();
            match own.as_slice() {
                [one] => one.clone(),
                many => format!("({})", many.join(" and ")),
            }
        })
        .collect();
    out.push(format!("either {}", parts.join(", or ")));
    out
}

/// Rewrites alternatives into fewer, equivalent ones: drops one that
/// implies another (absorption), and widens an atom of `F` where another
/// alternative `E` differs from it in that atom only by what `F` implies:
/// (a∈V ∧ C) ∨ (a∈W ∧ R) with R ⇒ C is (a∈V ∧ C) ∨ (a∈V∪W ∧ R).
fn simplify(alts: &mut Vec<Facts>) {
    for _ in 0..256 {
        let mut changed = false;
        'absorb: for j in 0..alts.len() {
            for i in 0..alts.len() {
                if i != j && alts[j].implies(&alts[i]) && (!alts[i].implies(&alts[j]) || i < j) {
                    alts.remove(j);
                    changed = true;
                    break 'absorb;
                }
            }
        }
        if changed {
            continue;
        }
        'widen: for j in 0..alts.len() {
            for i in 0..alts.len() {
                if i == j {
                    continue;
                }
                for (atom, vj) in alts[j].0.clone() {
                    let Some(vi) = alts[i].get(&atom) else {
                        continue;
                    };
                    if vi.within(&vj) {
                        continue;
                    }
                    let Some(joined) = vi.union(&vj) else {
                        continue;
                    };
                    if !alts[j].without(&atom).implies(&alts[i].without(&atom)) {
                        continue;
                    }
                    match joined {
                        Some(v) => alts[j].set(atom, v),
                        None => alts[j] = alts[j].without(&atom),
                    }
                    changed = true;
                    break 'widen;
                }
            }
        }
        if !changed {
            return;
        }
    }
}

/// What an atom's value says, for a branch whose destination is now `dst`;
/// `None` for a quiet default unless `all`.
fn describe(atom: &Atom, value: &Value, dst: IpAddr, all: bool) -> Option<String> {
    match (atom, value) {
        (Atom::Prop(p), Value::Bool(true)) => Some(p.yes.clone()),
        (Atom::Prop(p), Value::Bool(false)) => (all || !p.quiet_no).then(|| p.no.clone()),
        (Atom::In, Value::Ifaces(s)) => Some(s.describe("the packet", "arrive")),
        (Atom::Out(ip), Value::Ifaces(s)) if *ip == dst => Some(s.describe("the packet", "leave")),
        (Atom::Out(ip), Value::Ifaces(s)) => {
            Some(s.describe(&format!("a packet to {ip}"), "leave"))
        }
        _ => None,
    }
}

/// A match's question about an atom.
#[derive(Debug, Clone)]
pub(super) struct Query {
    pub atom: Atom,
    pub pred: Pred,
}

/// When a [`Query`] matches.
#[derive(Debug, Clone)]
pub(super) enum Pred {
    /// When the [`Atom::Prop`] is this.
    Is(bool),
    /// When the interface matches `spec` (does not, if `negated`).
    Iface { spec: String, negated: bool },
}

impl Query {
    /// The match's result if `facts` decide it.
    pub fn decide(&self, facts: &Facts) -> Option<bool> {
        match (&self.pred, facts.get(&self.atom)) {
            (Pred::Is(want), Some(Value::Bool(v))) => Some(want == v),
            (Pred::Is(_), _) => None,
            (Pred::Iface { spec, negated }, v) => {
                let any = Ifaces::any();
                let set = match v {
                    Some(Value::Ifaces(s)) => s,
                    _ => &any,
                };
                set.decide(spec).map(|m| m != *negated)
            }
        }
    }

    /// Records in `facts` that the match did (or did not) match.
    pub fn assume(&self, facts: &mut Facts, matched: bool) {
        let value = match &self.pred {
            Pred::Is(want) => Value::Bool(*want == matched),
            Pred::Iface { spec, negated } => {
                let set = match facts.get(&self.atom) {
                    Some(Value::Ifaces(s)) => s.clone(),
                    _ => Ifaces::any(),
                };
                Value::Ifaces(set.restrict(spec, matched != *negated))
            }
        };
        facts.set(self.atom.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(atom: Atom, spec: &str, negated: bool) -> Query {
        Query {
            atom,
            pred: Pred::Iface {
                spec: spec.into(),
                negated,
            },
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn interface_assumptions_decide_later_matches() {
        let mut f = Facts::default();
        let o = |spec, neg| q(Atom::Out("10.0.0.1".parse().unwrap()), spec, neg);
        assert_eq!(o("weave", false).decide(&f), None);
        assert_eq!(o("+", false).decide(&f), Some(true));
        o("weave", false).assume(&mut f, false);
        assert_eq!(o("weave", false).decide(&f), Some(false));
        assert_eq!(o("weave", true).decide(&f), Some(true));
        assert_eq!(o("docker0", false).decide(&f), None);
        o("docker0", false).assume(&mut f, true);
        assert_eq!(o("docker0", true).decide(&f), Some(false));
        assert_eq!(o("br-1", false).decide(&f), Some(false));
        assert_eq!(o("dock+", false).decide(&f), Some(true));
        // Prefixes: veth+ but not veth1.
        let mut f = Facts::default();
        let i = |spec, neg| q(Atom::In, spec, neg);
        i("veth+", false).assume(&mut f, true);
        assert_eq!(i("eth0", false).decide(&f), Some(false));
        assert_eq!(i("ve+", false).decide(&f), Some(true));
        assert_eq!(i("veth1", false).decide(&f), None);
        i("veth1", false).assume(&mut f, false);
        assert_eq!(i("veth1", true).decide(&f), Some(true));
        assert_eq!(
            f.conditions("10.0.0.1".parse().unwrap(), false),
            ["the packet arrives on an interface matching veth+ but not veth1"]
        );
        let mut f = Facts::default();
        i("cali+", true).assume(&mut f, true);
        assert_eq!(i("cali12", false).decide(&f), Some(false));
        assert_eq!(i("calico+", false).decide(&f), Some(false));
    }

    #[test]
    fn unions_are_exact_or_refused() {
        let any = Ifaces::any();
        let not_weave = any.restrict("weave", false);
        let docker = not_weave.restrict("docker0", true);
        let neither = not_weave.restrict("docker0", false);
        assert_eq!(docker, Ifaces::OneOf(set(&["docker0"])));
        assert_eq!(docker.union(&neither), Some(not_weave.clone()));
        assert_eq!(neither.union(&docker), Some(not_weave.clone()));
        assert_eq!(
            not_weave.union(&any.restrict("weave", true)),
            Some(any.clone())
        );
        assert_eq!(
            docker.union(&Ifaces::OneOf(set(&["weave"]))),
            Some(Ifaces::OneOf(set(&["docker0", "weave"])))
        );
        // veth+ and everything but veth+: every name.
        let veth = any.restrict("veth+", true);
        let not_veth = any.restrict("veth+", false);
        assert_eq!(veth.union(&not_veth), Some(any.clone()));
        // Not weave ∪ not docker0: every name.
        let not_docker = any.restrict("docker0", false);
        assert_eq!(not_weave.union(&not_docker), Some(any.clone()));
        // Not veth+ ∪ not veth1 = not veth1.
        assert_eq!(
            not_veth.union(&any.restrict("veth1", false)),
            Some(any.restrict("veth1", false))
        );
        // A name excluded by a prefix cannot be added back by one value.
        assert_eq!(not_veth.union(&Ifaces::OneOf(set(&["veth1"]))), None);
        assert_eq!(
            Value::Bool(true).union(&Value::Bool(false)),
            Some(None::<Value>)
        );
    }
}

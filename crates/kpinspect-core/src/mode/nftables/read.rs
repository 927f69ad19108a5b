//! A node's nftables listing read back into what kube-proxy wrote: the
//! `ip`/`ip6 kube-proxy` tables with every rule turned from nft's listing
//! syntax into knftables' form by a recogniser per rule shape kube-proxy
//! emits, so a live table compares with a compiled one after kube-proxy's
//! normaliser. Other tables are named, never interpreted.

use std::net::IpAddr;

use crate::nft::{
    Element, Family, ListedRule, ListingError, ListingFormat, Rule, Ruleset, TableContent,
    Transaction,
};

use super::compile::{REJECT_CHAIN, REJECT_CHAIN_COMMENT, TABLE, TABLE_COMMENT};
use super::normalize::sort_nftables_transaction;

/// What a listing holds, seen as kube-proxy's nftables mode sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NftNode {
    /// The form it was read from.
    pub format: ListingFormat,
    /// The nft version, when the listing says (JSON).
    pub nft_version: Option<String>,
    /// The `ip` then `ip6` `kube-proxy` tables that were listed.
    pub tables: Vec<KubeProxyTable>,
    /// Every other table, as `family name` (never interpreted).
    pub foreign: Vec<String>,
}

impl NftNode {
    /// The kube-proxy table of `family`, if listed.
    pub fn table(&self, family: Family) -> Option<&KubeProxyTable> {
        self.tables.iter().find(|t| t.family == family)
    }

    /// Adds what `other` (another listing of the same node, e.g. the other
    /// family's table) holds that this one lacks.
    pub fn merge(&mut self, other: NftNode) {
        for t in other.tables {
            if self.table(t.family).is_none() {
                self.tables.push(t);
            }
        }
        for f in other.foreign {
            if !self.foreign.contains(&f) {
                self.foreign.push(f);
            }
        }
        self.tables.sort_by_key(|t| t.family != Family::Ip);
    }
}

/// A rule no recogniser knows: kept verbatim, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unrecognised {
    /// Its chain.
    pub chain: String,
    /// The rule as nft listed it.
    pub rule: String,
}

/// One `kube-proxy` table in knftables' form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KubeProxyTable {
    /// `ip` or `ip6`.
    pub family: Family,
    /// The objects; rules in knftables' form (unrecognised ones as listed),
    /// base-chain priorities as numbers, timeouts in seconds, elements of
    /// kernel-filled (dynamic) sets left out.
    pub content: TableContent,
    /// Rules no shape of kube-proxy's matches.
    pub unrecognised: Vec<Unrecognised>,
    /// Entries of the dynamic affinity sets (client IPs the kernel
    /// remembered; not part of what kube-proxy writes).
    pub affinity_entries: usize,
    /// What was inferred or could not be read exactly.
    pub notes: Vec<String>,
}

impl KubeProxyTable {
    /// The table as `add` lines in the order of knftables' fake's dump
    /// (table, chains, sets, maps, rules, set elements, map elements).
    pub fn transaction(&self) -> Transaction {
        let c = &self.content;
        let mut tx = Transaction::new(self.family, TABLE, true);
        tx.add(c.table.clone());
        let mut chains: Vec<_> = c.chains.iter().collect();
        chains.sort_by(|a, b| a.chain.name.cmp(&b.chain.name));
        for ch in &chains {
            tx.add(ch.chain.clone());
        }
        let mut sets = c.sets.clone();
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        let mut maps = c.maps.clone();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        for s in &sets {
            tx.add(s.clone());
        }
        for m in &maps {
            tx.add(m.clone());
        }
        for ch in &chains {
            for r in &ch.rules {
                let mut rule = Rule::new(&ch.chain.name, &r.text);
                rule.comment = r.comment.clone();
                tx.add(rule);
            }
        }
        let names = sets
            .iter()
            .map(|s| &s.name)
            .chain(maps.iter().map(|m| &m.name));
        for name in names {
            for e in c.elements_of(name) {
                tx.add(e.clone());
            }
        }
        tx
    }

    /// What kube-proxy's golden tests compare (`Compiled::sorted` of the
    /// compiled side): the dump after kube-proxy's normaliser, with a final
    /// newline.
    pub fn sorted(&self) -> String {
        let mut out = sort_nftables_transaction(&self.transaction().render());
        out.push('\n');
        out
    }
}

/// Reads `nft list ruleset|table` text or `nft -j list ruleset|table`
/// JSON (detected).
///
/// ```
/// use kpinspect_core::mode::nftables::read_listing;
/// let text = "table ip kube-proxy {\n\tchain masquerading {\n\
///             \t\tmeta mark & 0x00004000 == 0x00000000 return\n\
///             \t\tmeta mark set meta mark ^ 0x00004000\n\t\tmasquerade fully-random\n\t}\n}\n\
///             table inet filter {\n}\n";
/// let node = read_listing(text).unwrap();
/// assert_eq!(node.foreign, ["inet filter"]);
/// let rules: Vec<&str> = node.tables[0].content.chains[0].rules.iter().map(|r| r.text.as_str()).collect();
/// assert_eq!(rules, ["mark and 0x00004000 == 0 return", "mark set mark xor 0x00004000", "masquerade fully-random"]);
/// ```
pub fn read_listing(text: &str) -> Result<NftNode, ListingError> {
    let rs = Ruleset::parse(text, is_kube_proxy_table)?;
    Ok(from_ruleset(rs))
}

/// Whether `family name` is one of kube-proxy's nftables tables.
pub fn is_kube_proxy_table(family: &str, name: &str) -> bool {
    name == TABLE && matches!(family, "ip" | "ip6")
}

/// The kube-proxy view of a parsed listing (tables other than `ip`/`ip6
/// kube-proxy` are only named, even when `rs` interpreted them).
pub fn from_ruleset(rs: Ruleset) -> NftNode {
    let mut node = NftNode {
        format: rs.format,
        nft_version: rs.nft_version.clone(),
        tables: Vec::new(),
        foreign: Vec::new(),
    };
    for t in rs.tables {
        let family = Family::parse(&t.family).filter(|_| is_kube_proxy_table(&t.family, &t.name));
        match (family, t.content) {
            (Some(family), Some(content)) => node
                .tables
                .push(kube_proxy_table(family, rs.format, content)),
            _ => node.foreign.push(format!("{} {}", t.family, t.name)),
        }
    }
    node.tables.sort_by_key(|t| t.family != Family::Ip);
    node
}

fn kube_proxy_table(family: Family, format: ListingFormat, mut c: TableContent) -> KubeProxyTable {
    let mut notes = Vec::new();
    let mut unrecognised = Vec::new();
    for ch in &mut c.chains {
        for r in &mut ch.rules {
            match canonical_rule(family, &r.text).filter(|_| r.complete) {
                Some(text) => r.text = text,
                None => unrecognised.push(Unrecognised {
                    chain: ch.chain.name.clone(),
                    rule: r.text.clone(),
                }),
            }
        }
    }
    // nft lists the affinity sets' flags as `dynamic,timeout` (its JSON as
    // `timeout`); kube-proxy writes `dynamic,timeout`.
    let dynamic: Vec<String> = c
        .sets
        .iter_mut()
        .filter(|s| s.name.starts_with("affinity-"))
        .map(|s| {
            if s.flags.iter().any(|f| f == "timeout") && !s.flags.iter().any(|f| f == "dynamic") {
                s.flags.insert(0, "dynamic".into());
            }
            s.name.clone()
        })
        .collect();
    let before = c.elements.len();
    c.elements.retain(|e| !dynamic.contains(&e.container));
    let affinity_entries = before - c.elements.len();
    for e in &mut c.elements {
        canonical_element(e);
    }
    if format == ListingFormat::Json {
        // nft's JSON (1.0.6) lists no table or chain comments; when it lists
        // set comments, the host supports object comments, so kube-proxy
        // wrote its fixed ones.
        let comments = c.sets.iter().any(|s| s.comment.is_some())
            || c.maps.iter().any(|m| m.comment.is_some());
        if comments && c.table.comment.is_none() {
            c.table.comment = Some(TABLE_COMMENT.into());
            if let Some(ch) = c.chains.iter_mut().find(|ch| ch.chain.name == REJECT_CHAIN)
                && ch.chain.comment.is_none()
            {
                ch.chain.comment = Some(REJECT_CHAIN_COMMENT.into());
            }
            notes.push(
                "nft's JSON lists no table or chain comments: kube-proxy's fixed ones assumed \
                 (its set comments are listed)"
                    .into(),
            );
        }
    }
    KubeProxyTable {
        family,
        content: c,
        unrecognised,
        affinity_entries,
        notes,
    }
}

/// Element keys and values as kube-proxy writes them (IPv6 addresses in
/// their canonical form).
fn canonical_element(e: &mut Element) {
    for part in e.key.iter_mut().chain(e.value.iter_mut()) {
        *part = canonical_address(part);
    }
}

/// `s` with an IPv6 address (or prefix) in RFC 5952 form; anything else
/// unchanged.
fn canonical_address(s: &str) -> String {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    match addr.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(_)) => match len {
            Some(l) => format!("{ip}/{l}"),
            None => ip.to_string(),
        },
        _ => s.to_string(),
    }
}

/// A listed rule's tokens: words, quoted strings, and `{ ... }` groups as
/// one token each.
fn rule_tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut depth = 0;
    let mut quoted = false;
    let mut cur = String::new();
    for c in text.chars() {
        if quoted {
            cur.push(c);
            if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The parts of a `{ a, b }` group (or of a single token).
fn group_parts(tok: &str) -> Vec<String> {
    match tok.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        None => vec![tok.to_string()],
    }
}

fn is_addr(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((a, l)) => is_addr(a) && l.parse::<u8>().is_ok(),
        None => is_addr(s),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(['@', '{', '"']) && !s.contains(',')
}

/// A mark constant (`0x00004000`, `16384`) as nft lists it.
fn mark(s: &str) -> Option<String> {
    let n = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    Some(format!("0x{n:08x}"))
}

/// The rule `listed` (nft's listing syntax, as [`crate::nft::Ruleset`]
/// gives it) in knftables' form, if it has one of the shapes kube-proxy's
/// nftables mode writes in a `family` table (§3.2, §6.3–§6.8 of the
/// spec); `None` otherwise. Undone: `meta mark` spelled `mark ... or|xor|and`
/// (constants as nft prints them, `0x%08x`), one-element anonymous sets
/// unwrapped by nft, `, ` separators, quoted interface names.
///
/// ```
/// use kpinspect_core::mode::nftables::canonical_rule;
/// use kpinspect_core::nft::Family;
/// assert_eq!(
///     canonical_rule(Family::Ip, "ip daddr 172.30.0.0/16 drop").as_deref(),
///     Some("ip daddr { 172.30.0.0/16 } drop")
/// );
/// assert_eq!(
///     canonical_rule(Family::Ip, "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }").as_deref(),
///     Some("numgen random mod 2 vmap { 0 : goto a , 1 : goto b }")
/// );
/// assert_eq!(
///     canonical_rule(Family::Ip, "ip daddr 10.1.0.1 iifname != \"veth*\" jump mark-for-masquerade").as_deref(),
///     Some("ip daddr 10.1.0.1 iifname != veth* jump mark-for-masquerade")
/// );
/// assert_eq!(canonical_rule(Family::Ip, "tcp dport 22 accept"), None);
/// assert_eq!(canonical_rule(Family::Ip6, "ip daddr @cluster-ips reject"), None);
/// ```
pub fn canonical_rule(family: Family, listed: &str) -> Option<String> {
    let ipx = family.as_str();
    let toks = rule_tokens(listed);
    let t: Vec<&str> = toks.iter().map(String::as_str).collect();
    let lo = if family == Family::Ip6 {
        "::1"
    } else {
        "127.0.0.0/8"
    };
    let same = || Some(t.join(" "));
    let l4 = ["meta", "l4proto", ".", "th", "dport", "vmap"];
    match t.as_slice() {
        ["ct", "state", "new", "jump", c] if is_name(c) => same(),
        ["jump" | "goto", c] if is_name(c) => same(),
        ["reject"] | ["masquerade", "fully-random"] => same(),
        // nodeport-endpoints-check, services
        [ip, "daddr", set, rest @ .., m]
            if *ip == ipx && set.starts_with('@') && rest == l4 && m.starts_with('@') =>
        {
            same()
        }
        [ip, "daddr", ".", rest @ .., m] if *ip == ipx && rest == l4 && m.starts_with('@') => {
            same()
        }
        [ip, "daddr", "!=", l, rest @ .., m]
            if *ip == ipx && *l == lo && rest == l4 && m.starts_with('@') =>
        {
            same()
        }
        [
            "fib",
            "daddr",
            "type",
            "local",
            ip,
            "daddr",
            "!=",
            l,
            rest @ ..,
            m,
        ] if *ip == ipx && *l == lo && rest == l4 && m.starts_with('@') => same(),
        // masquerading, mark-for-masquerade
        ["meta", "mark", "&", x, "==", z, "return"] if mark(z).as_deref() == Some("0x00000000") => {
            Some(format!("mark and {} == 0 return", mark(x)?))
        }
        ["meta", "mark", "set", "meta", "mark", op @ ("^" | "|"), x] => {
            let word = if *op == "^" { "xor" } else { "or" };
            Some(format!("mark set mark {word} {}", mark(x)?))
        }
        // The same in knftables' form (a listing of an in-memory table).
        ["mark", "and", x, "==", z, "return"] if mark(z).as_deref() == Some("0x00000000") => {
            Some(format!("mark and {} == 0 return", mark(x)?))
        }
        ["mark", "set", "mark", op @ ("or" | "xor"), x] => {
            Some(format!("mark set mark {op} {}", mark(x)?))
        }
        // cluster-ips-check
        [ip, "daddr", set, "reject"] if *ip == ipx && set.starts_with('@') => same(),
        [ip, "daddr", cidrs, "drop"] if *ip == ipx => {
            let parts = group_parts(cidrs);
            parts
                .iter()
                .all(|p| is_cidr(p))
                .then(|| format!("{ip} daddr {{ {} }} drop", parts.join(",")))
        }
        // firewall chains
        [ip, "saddr", "!=", srcs, "drop"] if *ip == ipx => {
            let parts = group_parts(srcs);
            parts
                .iter()
                .all(|p| is_cidr(p))
                .then(|| format!("{ip} saddr != {{ {} }} drop", parts.join(" , ")))
        }
        // service chains' masquerade rule (§6.3)
        [ip, "daddr", a, "jump", c] if *ip == ipx && is_addr(a) && is_name(c) => same(),
        [ip, "daddr", a, ip2, "saddr", "!=", cidr, "jump", c]
            if *ip == ipx && ip2 == ip && is_addr(a) && is_cidr(cidr) && is_name(c) =>
        {
            same()
        }
        [ip, "daddr", a, "iifname", "!=", iface, "jump", c]
            if *ip == ipx && is_addr(a) && is_name(c) =>
        {
            Some(format!(
                "{ip} daddr {a} iifname != {} jump {c}",
                iface.trim_matches('"')
            ))
        }
        // external chains (§6.4)
        [ip, "saddr", cidr, "goto", c] if *ip == ipx && is_cidr(cidr) && is_name(c) => same(),
        ["iifname", iface, "goto", c] if is_name(c) => {
            Some(format!("iifname {} goto {c}", iface.trim_matches('"')))
        }
        ["fib", "saddr", "type", "local", "jump" | "goto", c] if is_name(c) => same(),
        // policy chains (§6.6)
        [ip, "saddr", set, "goto", c] if *ip == ipx && set.starts_with('@') && is_name(c) => same(),
        ["numgen", "random", "mod", n, "vmap", arms] if n.parse::<u32>().is_ok() => {
            let parts = group_parts(arms);
            let ok = parts.iter().all(|p| {
                let w: Vec<&str> = p.split_whitespace().collect();
                matches!(w.as_slice(), [i, ":", "goto", c] if i.parse::<u32>().is_ok() && is_name(c))
            });
            ok.then(|| format!("numgen random mod {n} vmap {{ {} }}", parts.join(" , ")))
        }
        // endpoint chains (§6.8)
        [ip, "saddr", a, "jump", c] if *ip == ipx && is_addr(a) && is_name(c) => same(),
        ["update", set, key] if set.starts_with('@') && *key == format!("{{ {ipx} saddr }}") => {
            same()
        }
        [
            "meta",
            "l4proto",
            "tcp" | "udp" | "sctp",
            "dnat",
            "to",
            dest,
        ] => {
            let ok = match family {
                Family::Ip6 => dest
                    .strip_prefix('[')
                    .and_then(|d| d.split_once("]:"))
                    .is_some_and(|(a, p)| is_addr(a) && p.parse::<u16>().is_ok()),
                _ => dest
                    .rsplit_once(':')
                    .is_some_and(|(a, p)| is_addr(a) && p.parse::<u16>().is_ok()),
            };
            ok.then(|| t.join(" "))
        }
        _ => None,
    }
}

/// `text` (a normalised state, live or compiled) with every anonymous set
/// of a rule in address order and IPv6 addresses in their canonical form:
/// nft lists anonymous sets sorted, kube-proxy writes them in its input's
/// order, so the two compare only after this.
///
/// ```
/// use kpinspect_core::mode::nftables::canonical_state;
/// assert_eq!(
///     canonical_state("add rule ip kube-proxy fw ip saddr != { 203.0.113.0/25 , 1.2.3.4 } drop\n"),
///     "add rule ip kube-proxy fw ip saddr != { 1.2.3.4 , 203.0.113.0/25 } drop\n"
/// );
/// ```
pub fn canonical_state(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if !body.starts_with("add rule ") {
            out.push_str(body);
            out.push_str(nl);
            continue;
        }
        let toks = rule_tokens(body);
        let mapped: Vec<String> = toks
            .iter()
            .map(|tok| {
                if tok.starts_with('{') && !tok.contains(" : ") && !tok.contains(" saddr") {
                    sort_group(tok)
                } else if tok.starts_with('"') {
                    tok.clone()
                } else {
                    canonical_address(tok)
                }
            })
            .collect();
        out.push_str(&mapped.join(" "));
        out.push_str(nl);
    }
    out
}

fn sort_group(tok: &str) -> String {
    let inner = tok.trim_start_matches('{').trim_end_matches('}');
    let sep = if inner.contains(" , ") { " , " } else { "," };
    let mut parts: Vec<String> = inner
        .split(',')
        .map(|p| canonical_address(p.trim()))
        .filter(|p| !p.is_empty())
        .collect();
    let key = |p: &String| -> (Option<IpAddr>, u8, String) {
        let (a, l) = p.split_once('/').unwrap_or((p, ""));
        (a.parse().ok(), l.parse().unwrap_or(255), p.clone())
    };
    parts.sort_by_key(key);
    format!("{{ {} }}", parts.join(sep))
}

/// Whether `r` (a listed rule of a kube-proxy table) was recognised.
pub fn is_recognised(family: Family, r: &ListedRule) -> bool {
    r.complete && canonical_rule(family, &r.text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<String> {
        canonical_rule(Family::Ip, s)
    }

    #[test]
    fn every_skeleton_shape_is_recognised() {
        for (listed, want) in [
            (
                "ct state new jump firewall-check",
                "ct state new jump firewall-check",
            ),
            (
                "meta mark set meta mark | 0x00004000",
                "mark set mark or 0x00004000",
            ),
            (
                "meta mark set meta mark ^ 0x00000100",
                "mark set mark xor 0x00000100",
            ),
            (
                "meta mark & 0x00004000 == 0x00000000 return",
                "mark and 0x00004000 == 0 return",
            ),
            (
                "ip daddr { 172.30.0.0/16, 172.50.0.0/16 } drop",
                "ip daddr { 172.30.0.0/16,172.50.0.0/16 } drop",
            ),
            (
                "ip saddr != { 1.2.3.4, 192.168.0.0/24 } drop",
                "ip saddr != { 1.2.3.4 , 192.168.0.0/24 } drop",
            ),
            (
                "ip saddr != 203.0.113.0/25 drop",
                "ip saddr != { 203.0.113.0/25 } drop",
            ),
            (
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            ),
            (
                "iifname \"cbr0\" goto service-X-a/b/tcp/p",
                "iifname cbr0 goto service-X-a/b/tcp/p",
            ),
            (
                "update @affinity-A-ns/s/tcp/p__10.0.0.1/80 { ip saddr }",
                "update @affinity-A-ns/s/tcp/p__10.0.0.1/80 { ip saddr }",
            ),
        ] {
            assert_eq!(ip(listed).as_deref(), Some(want), "{listed}");
        }
        assert_eq!(
            canonical_rule(Family::Ip6, "meta l4proto tcp dnat to [fd00::1]:80").as_deref(),
            Some("meta l4proto tcp dnat to [fd00::1]:80")
        );
        assert_eq!(
            canonical_rule(
                Family::Ip6,
                "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @m"
            )
            .as_deref(),
            Some("fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @m")
        );
    }

    #[test]
    fn foreign_shapes_are_not() {
        for listed in [
            "tcp dport 22 accept",
            "ip daddr 10.0.0.1 counter packets 1 bytes 60 jump x",
            "meta mark & 0x00004000 == 0x00000001 return",
            "numgen random mod 2 vmap { 0 : jump a, 1 : goto b }",
            "ip6 daddr 10.0.0.1 jump x",
            "meta l4proto tcp dnat to 10.0.0.1",
            "ip daddr { 1.2.3.4 : drop } drop",
        ] {
            assert_eq!(ip(listed), None, "{listed}");
        }
    }

    #[test]
    fn canonical_state_sorts_anonymous_sets_only() {
        let text = "add rule ip kube-proxy c ip daddr { 172.50.0.0/16,172.30.0.0/16 } drop\n\
                    add rule ip kube-proxy c numgen random mod 2 vmap { 0 : goto b , 1 : goto a }\n\
                    add rule ip6 kube-proxy c ip6 daddr FD00::0001 jump x\n\
                    add element ip kube-proxy s { 2 }";
        assert_eq!(
            canonical_state(text),
            "add rule ip kube-proxy c ip daddr { 172.30.0.0/16,172.50.0.0/16 } drop\n\
             add rule ip kube-proxy c numgen random mod 2 vmap { 0 : goto b , 1 : goto a }\n\
             add rule ip6 kube-proxy c ip6 daddr fd00::1 jump x\n\
             add element ip kube-proxy s { 2 }"
        );
    }

    #[test]
    fn json_comments_are_inferred_only_with_object_comments() {
        let json = r#"{"nftables": [
          {"table": {"family": "ip", "name": "kube-proxy", "handle": 1}},
          {"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "type": "ipv4_addr", "handle": 2, "comment": "Active ClusterIPs"}},
          {"chain": {"family": "ip", "table": "kube-proxy", "name": "reject-chain", "handle": 3}},
          {"rule": {"family": "ip", "table": "kube-proxy", "chain": "reject-chain", "handle": 4, "expr": [{"reject": {"type": "icmp", "expr": "port-unreachable"}}]}},
          {"rule": {"family": "ip", "table": "kube-proxy", "chain": "reject-chain", "handle": 5, "expr": [{"counter": {"packets": 0, "bytes": 0}}]}},
          {"table": {"family": "ip6", "name": "filter", "handle": 6}}
        ]}"#;
        let node = read_listing(json).expect("reads");
        assert_eq!(node.foreign, ["ip6 filter"]);
        let t = node.table(Family::Ip).expect("ip table");
        assert_eq!(t.content.table.comment.as_deref(), Some(TABLE_COMMENT));
        assert_eq!(t.notes.len(), 1);
        assert_eq!(
            t.unrecognised,
            [Unrecognised {
                chain: "reject-chain".into(),
                rule: "counter packets 0 bytes 0".into()
            }]
        );
        assert!(t.sorted().contains(
            "add chain ip kube-proxy reject-chain { comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }\n"
        ));
        assert!(
            t.sorted()
                .contains("add rule ip kube-proxy reject-chain counter packets 0 bytes 0\n")
        );
        let bare = json.replace(r#", "comment": "Active ClusterIPs""#, "");
        let t = read_listing(&bare).expect("reads").tables.remove(0);
        assert_eq!(t.content.table.comment, None);
        assert!(t.notes.is_empty());
    }
}

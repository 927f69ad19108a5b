//! The nftables text format as `nft -f` reads it, for any program's table:
//! objects ([`Table`], [`Chain`], [`Set`], [`Map`], [`Element`], [`Rule`]),
//! a [`Transaction`] of operations on them rendered exactly as
//! sigs.k8s.io/knftables renders one, and [`Fake`], knftables' in-memory
//! table (apply a transaction, [`Fake::dump`] the resulting state). It
//! names no kube-proxy object (a unit test holds it to that).
//!
//! ```
//! use kpinspect_core::nft::{Chain, Family, Rule, Transaction};
//! let mut tx = Transaction::new(Family::Ip, "demo", true);
//! tx.add(Chain::base("nat-output", "nat", "output", -100));
//! tx.flush(Chain::regular("nat-output"));
//! tx.add(Rule::new("nat-output", "jump services").with_comment("to \"services\""));
//! assert_eq!(
//!     tx.render(),
//!     "add chain ip demo nat-output { type nat hook output priority -100 ; }\n\
//!      flush chain ip demo nat-output\n\
//!      add rule ip demo nat-output jump services comment \"to \\\"services\\\"\"\n"
//! );
//! ```

mod fake;
mod listing;
mod script;

pub use fake::{Fake, FakeError};
pub use listing::{
    ListedChain, ListedRule, ListedTable, ListingError, ListingFormat, Ruleset, TableContent,
    duration_seconds, priority_value,
};
pub use script::{ScriptError, parse_script};

use std::fmt::Write as _;

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `ip` (IPv4).
    Ip,
    /// `ip6` (IPv6).
    Ip6,
    /// `inet` (both).
    Inet,
}

impl Family {
    /// The family as `nft` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table itself (its family and name are the transaction's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    /// Its comment (written only where the host supports object comments).
    pub comment: Option<String>,
}

/// What makes a chain a base chain: its type, hook and numeric priority.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub chain_type: String,
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`, ...
    pub hook: String,
    /// The priority as a number (knftables converts named priorities).
    pub priority: i32,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// Type, hook and priority, for a base chain.
    pub base: Option<BaseChain>,
    /// Its comment (written only where the host supports object comments).
    pub comment: Option<String>,
}

impl Chain {
    /// A regular chain without a comment.
    pub fn regular(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            comment: None,
        }
    }

    /// A base chain.
    pub fn base(name: impl Into<String>, chain_type: &str, hook: &str, priority: i32) -> Chain {
        Chain {
            name: name.into(),
            base: Some(BaseChain {
                chain_type: chain_type.into(),
                hook: hook.into(),
                priority,
            }),
            comment: None,
        }
    }

    /// The same chain with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Chain {
        self.comment = Some(comment.into());
        self
    }
}

/// How a set's or map's key is declared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum KeyType {
    /// `type ipv4_addr . inet_proto . inet_service`.
    Type(String),
    /// `typeof ip daddr . tcp dport`.
    Typeof(String),
}

impl KeyType {
    fn keyword(&self) -> (&'static str, &str) {
        match self {
            KeyType::Type(t) => ("type", t),
            KeyType::Typeof(t) => ("typeof", t),
        }
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Set {
    /// Its name.
    pub name: String,
    /// Its key type.
    pub key: KeyType,
    /// Flags (`dynamic`, `timeout`, `interval`, ...), in order.
    pub flags: Vec<String>,
    /// Default element timeout, in seconds.
    pub timeout: Option<u64>,
    /// Its comment (written only where the host supports object comments).
    pub comment: Option<String>,
}

impl Set {
    /// A set of `type`.
    pub fn new(name: impl Into<String>, key_type: impl Into<String>) -> Set {
        Set {
            name: name.into(),
            key: KeyType::Type(key_type.into()),
            flags: Vec::new(),
            timeout: None,
            comment: None,
        }
    }

    /// The same set with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Set {
        self.comment = Some(comment.into());
        self
    }
}

/// A named map (a verdict map when its value type is `verdict`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Map {
    /// Its name.
    pub name: String,
    /// Its key type.
    pub key: KeyType,
    /// Its value type (`verdict`, `ipv4_addr`, ...).
    pub value: String,
    /// Flags, in order.
    pub flags: Vec<String>,
    /// Default element timeout, in seconds.
    pub timeout: Option<u64>,
    /// Its comment (written only where the host supports object comments).
    pub comment: Option<String>,
}

impl Map {
    /// A map of `type key : value`.
    pub fn new(
        name: impl Into<String>,
        key_type: impl Into<String>,
        value: impl Into<String>,
    ) -> Map {
        Map {
            name: name.into(),
            key: KeyType::Type(key_type.into()),
            value: value.into(),
            flags: Vec::new(),
            timeout: None,
            comment: None,
        }
    }

    /// The same map with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Map {
        self.comment = Some(comment.into());
        self
    }
}

/// An element of a set (no value) or map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Element {
    /// The set or map it belongs to.
    pub container: String,
    /// The key's parts (joined with ` . `).
    pub key: Vec<String>,
    /// The value's parts, for a map element.
    pub value: Vec<String>,
    /// Its comment (always written).
    pub comment: Option<String>,
}

impl Element {
    /// A set element.
    pub fn set(container: impl Into<String>, key: Vec<String>) -> Element {
        Element {
            container: container.into(),
            key,
            value: Vec::new(),
            comment: None,
        }
    }

    /// A map element.
    pub fn map(container: impl Into<String>, key: Vec<String>, value: Vec<String>) -> Element {
        Element {
            container: container.into(),
            key,
            value,
            comment: None,
        }
    }

    /// The same element with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Element {
        self.comment = Some(comment.into());
        self
    }

    /// The key as written (`a . b . c`).
    pub fn key_text(&self) -> String {
        self.key.join(" . ")
    }

    /// The value as written (empty for a set element).
    pub fn value_text(&self) -> String {
        self.value.join(" . ")
    }
}

/// A rule of a chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// The chain.
    pub chain: String,
    /// The rule's text (statements and expressions).
    pub rule: String,
    /// Its comment (always written).
    pub comment: Option<String>,
    /// Its handle, to delete it.
    pub handle: Option<u64>,
}

impl Rule {
    /// A rule without a comment.
    pub fn new(chain: impl Into<String>, rule: impl Into<String>) -> Rule {
        Rule {
            chain: chain.into(),
            rule: rule.into(),
            comment: None,
            handle: None,
        }
    }

    /// The same rule with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Rule {
        self.comment = Some(comment.into());
        self
    }
}

/// Any object of a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Object {
    /// The table.
    Table(Table),
    /// A chain.
    Chain(Chain),
    /// A set.
    Set(Set),
    /// A map.
    Map(Map),
    /// A set or map element.
    Element(Element),
    /// A rule.
    Rule(Rule),
}

impl Object {
    /// `table`, `chain`, `set`, `map`, `element` or `rule`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Table(_) => "table",
            Object::Chain(_) => "chain",
            Object::Set(_) => "set",
            Object::Map(_) => "map",
            Object::Element(_) => "element",
            Object::Rule(_) => "rule",
        }
    }
}

macro_rules! into_object {
    ($($t:ident),*) => {$(
        impl From<$t> for Object {
            fn from(o: $t) -> Object {
                Object::$t(o)
            }
        }
    )*};
}
into_object!(Table, Chain, Set, Map, Element, Rule);

/// What an operation does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Create unless it exists (properties of an existing object are kept);
    /// a rule is appended; an element replaces one with the same key.
    Add,
    /// Remove a chain's rules, or a set's or map's elements.
    Flush,
    /// Remove the object.
    Delete,
}

impl Verb {
    /// The verb as `nft` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Flush => "flush",
            Verb::Delete => "delete",
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Op {
    /// What it does.
    pub verb: Verb,
    /// To what.
    pub object: Object,
}

/// An ordered list of operations on one table, applied atomically by one
/// `nft -f`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transaction {
    /// The table's family.
    pub family: Family,
    /// The table's name.
    pub table: String,
    /// Whether table, chain, set and map comments are written (knftables
    /// drops them where `nft --check` refuses an object comment: kernels
    /// before 5.10, nft before 0.9.7). Rule and element comments are always
    /// written.
    pub object_comments: bool,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction on table `family table`.
    pub fn new(family: Family, table: impl Into<String>, object_comments: bool) -> Transaction {
        Transaction {
            family,
            table: table.into(),
            object_comments,
            ops: Vec::new(),
        }
    }

    /// Appends an operation.
    pub fn push(&mut self, verb: Verb, object: impl Into<Object>) {
        self.ops.push(Op {
            verb,
            object: object.into(),
        });
    }

    /// Appends `add`.
    pub fn add(&mut self, object: impl Into<Object>) {
        self.push(Verb::Add, object);
    }

    /// Appends `flush`.
    pub fn flush(&mut self, object: impl Into<Object>) {
        self.push(Verb::Flush, object);
    }

    /// Appends `delete`.
    pub fn delete(&mut self, object: impl Into<Object>) {
        self.push(Verb::Delete, object);
    }

    /// The number of operations (knftables' `NumOperations`).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `nft -f` input: one line per operation.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            self.render_op(&mut out, op);
            out.push('\n');
        }
        out
    }

    /// One operation's line, without its newline.
    pub fn render_op(&self, out: &mut String, op: &Op) {
        let (fam, table, verb) = (self.family, &self.table, op.verb);
        let v = verb.as_str();
        let with_comments = self.object_comments;
        fn comment_if(c: &Option<String>, on: bool) -> Option<&String> {
            c.as_ref().filter(|_| on)
        }
        let comment = |c| comment_if(c, with_comments);
        match &op.object {
            Object::Table(t) => {
                let _ = write!(out, "{v} table {fam} {table}");
                if verb == Verb::Add
                    && let Some(c) = comment(&t.comment)
                {
                    let _ = write!(out, " {{ comment {} ; }}", quote(c));
                }
            }
            Object::Chain(c) => {
                let _ = write!(out, "{v} chain {fam} {table} {}", c.name);
                let cc = comment(&c.comment);
                if verb == Verb::Add && (c.base.is_some() || cc.is_some()) {
                    out.push_str(" {");
                    if let Some(b) = &c.base {
                        let _ = write!(
                            out,
                            " type {} hook {} priority {} ;",
                            b.chain_type, b.hook, b.priority
                        );
                    }
                    if let Some(cc) = cc {
                        let _ = write!(out, " comment {} ;", quote(cc));
                    }
                    out.push_str(" }");
                }
            }
            Object::Set(s) => {
                let _ = write!(out, "{v} set {fam} {table} {}", s.name);
                if verb == Verb::Add {
                    let (kw, key) = s.key.keyword();
                    let _ = write!(out, " {{ {kw} {key} ;");
                    props(out, &s.flags, s.timeout, comment(&s.comment));
                }
            }
            Object::Map(m) => {
                let _ = write!(out, "{v} map {fam} {table} {}", m.name);
                if verb == Verb::Add {
                    let (kw, key) = m.key.keyword();
                    let _ = write!(out, " {{ {kw} {key} : {} ;", m.value);
                    props(out, &m.flags, m.timeout, comment(&m.comment));
                }
            }
            Object::Element(e) => {
                let _ = write!(
                    out,
                    "{v} element {fam} {table} {} {{ {}",
                    e.container,
                    e.key_text()
                );
                if verb != Verb::Delete {
                    if let Some(c) = &e.comment {
                        let _ = write!(out, " comment {}", quote(c));
                    }
                    if !e.value.is_empty() {
                        let _ = write!(out, " : {}", e.value_text());
                    }
                }
                out.push_str(" }");
            }
            Object::Rule(r) => {
                let _ = write!(out, "{v} rule {fam} {table} {}", r.chain);
                match verb {
                    Verb::Add => {
                        let _ = write!(out, " {}", r.rule);
                        if let Some(c) = &r.comment {
                            let _ = write!(out, " comment {}", quote(c));
                        }
                    }
                    _ => {
                        if let Some(h) = r.handle {
                            let _ = write!(out, " handle {h}");
                        }
                    }
                }
            }
        }
    }
}

/// The flags, timeout and comment of a set or map, and the closing brace.
fn props(out: &mut String, flags: &[String], timeout: Option<u64>, comment: Option<&String>) {
    if !flags.is_empty() {
        let _ = write!(out, " flags {} ;", flags.join(","));
    }
    if let Some(t) = timeout {
        let _ = write!(out, " timeout {t}s ;");
    }
    if let Some(c) = comment {
        let _ = write!(out, " comment {} ;", quote(c));
    }
    out.push_str(" }");
}

/// `s` quoted as Go's `%q` (knftables' quoting of comments): in double
/// quotes, `"` and `\` escaped, control characters as C escapes or `\xNN`.
///
/// ```
/// assert_eq!(kpinspect_core::nft::quote("a \"b\"\n"), r#""a \"b\"\n""#);
/// ```
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tx: &Transaction) -> String {
        tx.render().trim_end().to_string()
    }

    fn one(object_comments: bool, verb: Verb, object: impl Into<Object>) -> String {
        let mut tx = Transaction::new(Family::Ip, "kp", object_comments);
        tx.push(verb, object);
        line(&tx)
    }

    #[test]
    fn tables_and_chains_render_like_knftables() {
        let t = Table {
            comment: Some("rules".into()),
        };
        assert_eq!(
            one(true, Verb::Add, t.clone()),
            r#"add table ip kp { comment "rules" ; }"#
        );
        assert_eq!(one(false, Verb::Add, t.clone()), "add table ip kp");
        assert_eq!(one(true, Verb::Delete, t), "delete table ip kp");
        let base = Chain::base("in", "filter", "input", 0);
        assert_eq!(
            one(true, Verb::Add, base.clone()),
            "add chain ip kp in { type filter hook input priority 0 ; }"
        );
        assert_eq!(
            one(true, Verb::Add, base.clone().with_comment("c")),
            r#"add chain ip kp in { type filter hook input priority 0 ; comment "c" ; }"#
        );
        assert_eq!(one(true, Verb::Flush, base), "flush chain ip kp in");
        let helper = Chain::regular("helper").with_comment("for @x / @y");
        assert_eq!(
            one(true, Verb::Add, helper.clone()),
            r#"add chain ip kp helper { comment "for @x / @y" ; }"#
        );
        assert_eq!(one(false, Verb::Add, helper), "add chain ip kp helper");
        assert_eq!(
            one(true, Verb::Delete, Chain::regular("x")),
            "delete chain ip kp x"
        );
    }

    #[test]
    fn sets_maps_and_elements_render_like_knftables() {
        let mut s = Set::new("aff", "ipv4_addr");
        s.flags = vec!["dynamic".into(), "timeout".into()];
        s.timeout = Some(10800);
        assert_eq!(
            one(true, Verb::Add, s.clone()),
            "add set ip kp aff { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }"
        );
        assert_eq!(one(true, Verb::Flush, s), "flush set ip kp aff");
        let m =
            Map::new("m", "ipv4_addr . inet_proto . inet_service", "verdict").with_comment("vm");
        assert_eq!(
            one(true, Verb::Add, m.clone()),
            r#"add map ip kp m { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vm" ; }"#
        );
        assert_eq!(
            one(false, Verb::Add, m.clone()),
            "add map ip kp m { type ipv4_addr . inet_proto . inet_service : verdict ; }"
        );
        assert_eq!(one(true, Verb::Delete, m), "delete map ip kp m");
        let typeof_set = Set {
            key: KeyType::Typeof("ip daddr".into()),
            ..Set::new("t", "")
        };
        assert_eq!(
            one(true, Verb::Add, typeof_set),
            "add set ip kp t { typeof ip daddr ; }"
        );
        let e = Element::map(
            "m",
            vec!["1.2.3.4".into(), "tcp".into(), "80".into()],
            vec!["drop".into()],
        )
        .with_comment("ns/svc:p");
        assert_eq!(
            one(false, Verb::Add, e.clone()),
            r#"add element ip kp m { 1.2.3.4 . tcp . 80 comment "ns/svc:p" : drop }"#
        );
        assert_eq!(
            one(false, Verb::Delete, e),
            "delete element ip kp m { 1.2.3.4 . tcp . 80 }"
        );
        assert_eq!(
            one(false, Verb::Add, Element::set("s", vec!["10.0.0.1".into()])),
            "add element ip kp s { 10.0.0.1 }"
        );
    }

    #[test]
    fn rules_always_carry_their_comment() {
        let r = Rule::new("c", "ip daddr @s reject").with_comment("why");
        assert_eq!(
            one(false, Verb::Add, r),
            r#"add rule ip kp c ip daddr @s reject comment "why""#
        );
        let mut d = Rule::new("c", "");
        d.handle = Some(7);
        assert_eq!(one(false, Verb::Delete, d), "delete rule ip kp c handle 7");
    }

    #[test]
    fn quoting_is_gos() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\\b"), r#""a\\b""#);
        assert_eq!(quote("\u{1}\u{7f}\t"), r#""\x01\x7f\t""#);
        assert_eq!(quote("héllo"), "\"héllo\"");
        assert_eq!(quote("\u{85}"), r#""\u0085""#);
    }

    #[test]
    fn one_line_per_operation_and_ip6() {
        let mut tx = Transaction::new(Family::Ip6, "t", true);
        assert!(tx.is_empty());
        tx.add(Table::default());
        tx.add(Chain::regular("a"));
        tx.flush(Chain::regular("a"));
        assert_eq!(tx.len(), 3);
        assert_eq!(
            tx.render(),
            "add table ip6 t\nadd chain ip6 t a\nflush chain ip6 t a\n"
        );
    }

    #[test]
    fn names_no_kube_proxy_object() {
        for src in [
            include_str!("mod.rs"),
            include_str!("fake.rs"),
            include_str!("listing.rs"),
            include_str!("script.rs"),
        ] {
            let code: String = src
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
            for word in [
                "\"kube-proxy\"",
                "service-ips",
                "mark-for-masquerade",
                "KUBE-",
            ] {
                assert!(!code.contains(word), "nft names {word}");
            }
        }
    }
}

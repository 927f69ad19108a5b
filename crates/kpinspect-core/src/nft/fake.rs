//! knftables' in-memory table (`knftables.Fake`): what a table holds after
//! transactions, and its `Dump()` of that state as `add` lines.

use std::collections::{BTreeMap, HashMap};

use super::{Chain, Element, Family, Map, Object, Op, Rule, Set, Table, Transaction, Verb};

/// Why a transaction does not apply to a [`Fake`] (nothing of it is
/// applied then, as with `nft -f`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// The transaction is for another table.
    #[error("transaction is for table {family} {table}, not this one")]
    OtherTable {
        /// Its family.
        family: Family,
        /// Its table.
        table: String,
    },
    /// An operation needs an object that does not exist.
    #[error("operation {index} ({line}): no such {kind} {name:?}")]
    NotFound {
        /// The operation's index in the transaction.
        index: usize,
        /// The operation's line.
        line: String,
        /// `table`, `chain`, `set`, `map` or `element`.
        kind: &'static str,
        /// The missing object's name (an element's key).
        name: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FakeChain {
    chain: Option<Chain>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Container {
    Set(Set),
    Map(Map),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeContainer {
    container: Container,
    /// In insertion order.
    elements: Vec<Element>,
    /// Key → position in `elements`.
    index: HashMap<Vec<String>, usize>,
}

impl FakeContainer {
    fn new(container: Container) -> FakeContainer {
        FakeContainer {
            container,
            elements: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn clear(&mut self) {
        self.elements.clear();
        self.index.clear();
    }

    /// Adds `e`, replacing an element with its key in place.
    fn add(&mut self, e: &Element) {
        match self.index.get(&e.key) {
            Some(&i) => self.elements[i] = e.clone(),
            None => {
                self.index.insert(e.key.clone(), self.elements.len());
                self.elements.push(e.clone());
            }
        }
    }

    /// Removes the element with `key`; false when there is none.
    fn remove(&mut self, key: &[String]) -> bool {
        let Some(i) = self.index.remove(key) else {
            return false;
        };
        self.elements.remove(i);
        for e in &self.elements[i..] {
            if let Some(pos) = self.index.get_mut(&e.key) {
                *pos -= 1;
            }
        }
        true
    }
}

/// One table in memory, as knftables' fake holds it: `add` of an existing
/// table, chain, set or map keeps it unchanged, an element with an existing
/// key replaces it in place, rules are appended; rules and elements may only
/// name (`jump`/`goto NAME`, `@NAME`) objects that exist.
///
/// ```
/// use kpinspect_core::nft::{Chain, Fake, Family, Rule, Transaction};
/// let mut tx = Transaction::new(Family::Ip, "t", true);
/// tx.add(kpinspect_core::nft::Table::default());
/// tx.add(Chain::regular("b"));
/// tx.add(Chain::regular("a"));
/// tx.add(Rule::new("a", "jump b"));
/// tx.flush(Chain::regular("a"));
/// let mut fake = Fake::new(Family::Ip, "t", true);
/// fake.apply(&tx).unwrap();
/// assert_eq!(fake.dump(), "add table ip t\nadd chain ip t a\nadd chain ip t b\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fake {
    family: Family,
    table_name: String,
    object_comments: bool,
    table: Option<Table>,
    chains: BTreeMap<String, FakeChain>,
    containers: BTreeMap<String, FakeContainer>,
}

impl Fake {
    /// An empty node: no table.
    pub fn new(family: Family, table: impl Into<String>, object_comments: bool) -> Fake {
        Fake {
            family,
            table_name: table.into(),
            object_comments,
            table: None,
            chains: BTreeMap::new(),
            containers: BTreeMap::new(),
        }
    }

    /// Applies `tx` atomically: on an error nothing changes.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), FakeError> {
        if tx.family != self.family || tx.table != self.table_name {
            return Err(FakeError::OtherTable {
                family: tx.family,
                table: tx.table.clone(),
            });
        }
        let mut next = self.clone();
        for (index, op) in tx.ops.iter().enumerate() {
            next.apply_op(op).map_err(|(kind, name)| {
                let mut line = String::new();
                tx.render_op(&mut line, op);
                FakeError::NotFound {
                    index,
                    line,
                    kind,
                    name,
                }
            })?;
        }
        *self = next;
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), (&'static str, String)> {
        if !matches!(op.object, Object::Table(_)) && self.table.is_none() {
            return Err(("table", self.table_name.clone()));
        }
        match (&op.object, op.verb) {
            (Object::Table(t), Verb::Add) => {
                self.table.get_or_insert_with(|| t.clone());
            }
            (Object::Table(_), Verb::Flush) => {
                self.need_table()?;
                self.chains.values_mut().for_each(|c| c.rules.clear());
                self.containers.values_mut().for_each(FakeContainer::clear);
            }
            (Object::Table(_), Verb::Delete) => {
                self.need_table()?;
                self.table = None;
                self.chains.clear();
                self.containers.clear();
            }
            (Object::Chain(c), Verb::Add) => {
                let entry = self.chains.entry(c.name.clone()).or_default();
                entry.chain.get_or_insert_with(|| c.clone());
            }
            (Object::Chain(c), Verb::Flush) => self.chain_mut(&c.name)?.rules.clear(),
            (Object::Chain(c), Verb::Delete) => {
                self.chain_mut(&c.name)?;
                self.chains.remove(&c.name);
            }
            (Object::Set(s), Verb::Add) => {
                self.containers
                    .entry(s.name.clone())
                    .or_insert_with(|| FakeContainer::new(Container::Set(s.clone())));
            }
            (Object::Map(m), Verb::Add) => {
                self.containers
                    .entry(m.name.clone())
                    .or_insert_with(|| FakeContainer::new(Container::Map(m.clone())));
            }
            (Object::Set(Set { name, .. }) | Object::Map(Map { name, .. }), Verb::Flush) => {
                self.container_mut(name, op.object.kind())?.clear();
            }
            (Object::Set(Set { name, .. }) | Object::Map(Map { name, .. }), Verb::Delete) => {
                self.container_mut(name, op.object.kind())?;
                self.containers.remove(name);
            }
            (Object::Element(e), Verb::Add) => {
                for target in references(&e.value_text()) {
                    self.check_reference(&target)?;
                }
                self.container_mut(&e.container, "set")?.add(e);
            }
            (Object::Element(e), Verb::Delete) => {
                if !self.container_mut(&e.container, "set")?.remove(&e.key) {
                    return Err(("element", e.key_text()));
                }
            }
            (Object::Element(e), Verb::Flush) => {
                return Err(("element", e.key_text()));
            }
            (Object::Rule(r), Verb::Add) => {
                for target in references(&r.rule) {
                    self.check_reference(&target)?;
                }
                self.chain_mut(&r.chain)?.rules.push(r.clone());
            }
            (Object::Rule(r), _) => {
                let handle = r.handle.map(|h| h.to_string()).unwrap_or_default();
                return Err(("rule", handle));
            }
        }
        Ok(())
    }

    fn need_table(&self) -> Result<(), (&'static str, String)> {
        match self.table {
            Some(_) => Ok(()),
            None => Err(("table", self.table_name.clone())),
        }
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut FakeChain, (&'static str, String)> {
        self.chains
            .get_mut(name)
            .ok_or_else(|| ("chain", name.to_string()))
    }

    fn container_mut(
        &mut self,
        name: &str,
        kind: &'static str,
    ) -> Result<&mut FakeContainer, (&'static str, String)> {
        self.containers
            .get_mut(name)
            .ok_or_else(|| (kind, name.to_string()))
    }

    fn check_reference(&self, target: &Reference) -> Result<(), (&'static str, String)> {
        match *target {
            Reference::Chain(c) if !self.chains.contains_key(c) => Err(("chain", c.to_string())),
            Reference::Container(c) if !self.containers.contains_key(c) => {
                Err(("set", c.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// The table's family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Whether table, chain, set and map comments are kept.
    pub fn object_comments(&self) -> bool {
        self.object_comments
    }

    /// The table, if it exists.
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    /// Chain `name` as declared, if it exists.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name).and_then(|c| c.chain.as_ref())
    }

    /// Set `name` as declared, if it exists (and is a set).
    pub fn set(&self, name: &str) -> Option<&Set> {
        match self.containers.get(name).map(|c| &c.container) {
            Some(Container::Set(s)) => Some(s),
            _ => None,
        }
    }

    /// Map `name` as declared, if it exists (and is a map).
    pub fn map(&self, name: &str) -> Option<&Map> {
        match self.containers.get(name).map(|c| &c.container) {
            Some(Container::Map(m)) => Some(m),
            _ => None,
        }
    }

    /// The names of the chains, sorted.
    pub fn chain_names(&self) -> Vec<&str> {
        self.chains.keys().map(String::as_str).collect()
    }

    /// The names of the sets and maps, sorted.
    pub fn container_names(&self) -> Vec<&str> {
        self.containers.keys().map(String::as_str).collect()
    }

    /// The rules of `chain`, if it exists.
    pub fn rules(&self, chain: &str) -> Option<&[Rule]> {
        self.chains.get(chain).map(|c| c.rules.as_slice())
    }

    /// The elements of set or map `name`, if it exists.
    pub fn elements(&self, name: &str) -> Option<&[Element]> {
        self.containers.get(name).map(|c| c.elements.as_slice())
    }

    /// Whether the table exists.
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The state in `nft list table` layout (`None` without a table): the
    /// table's comment, sets, maps (each with its elements), then chains
    /// (base chains with `policy accept`), rules and elements written as
    /// they were added — nft itself would print rules in its own syntax,
    /// which [`super::Ruleset`] readers accept too.
    ///
    /// ```
    /// use kpinspect_core::nft::{Chain, Fake, Family, Rule, Table, Transaction};
    /// let mut tx = Transaction::new(Family::Ip, "t", true);
    /// tx.add(Table::default());
    /// tx.add(Chain::base("in", "filter", "input", 0));
    /// tx.add(Rule::new("in", "accept").with_comment("all"));
    /// let mut fake = Fake::new(Family::Ip, "t", true);
    /// fake.apply(&tx).unwrap();
    /// assert_eq!(
    ///     fake.listing().unwrap(),
    ///     "table ip t {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\taccept comment \"all\"\n\t}\n}\n"
    /// );
    /// ```
    pub fn listing(&self) -> Option<String> {
        use std::fmt::Write as _;
        let table = self.table.as_ref()?;
        let mut out = format!("table {} {} {{\n", self.family, self.table_name);
        let on = self.object_comments;
        fn comment(c: &Option<String>, on: bool) -> Option<&String> {
            c.as_ref().filter(|_| on)
        }
        if let Some(c) = comment(&table.comment, on) {
            let _ = writeln!(out, "\tcomment {}", super::quote(c));
        }
        for fc in self.containers.values() {
            let (kind, name, key, value, flags, timeout, c) = match &fc.container {
                Container::Set(s) => (
                    "set", &s.name, &s.key, None, &s.flags, s.timeout, &s.comment,
                ),
                Container::Map(m) => (
                    "map",
                    &m.name,
                    &m.key,
                    Some(&m.value),
                    &m.flags,
                    m.timeout,
                    &m.comment,
                ),
            };
            let _ = writeln!(out, "\t{kind} {name} {{");
            let (kw, k) = key.keyword();
            match value {
                Some(v) => {
                    let _ = writeln!(out, "\t\t{kw} {k} : {v}");
                }
                None => {
                    let _ = writeln!(out, "\t\t{kw} {k}");
                }
            }
            if !flags.is_empty() {
                let _ = writeln!(out, "\t\tflags {}", flags.join(","));
            }
            if let Some(t) = timeout {
                let _ = writeln!(out, "\t\ttimeout {t}s");
            }
            if let Some(c) = comment(c, on) {
                let _ = writeln!(out, "\t\tcomment {}", super::quote(c));
            }
            if !fc.elements.is_empty() {
                let elems: Vec<String> = fc
                    .elements
                    .iter()
                    .map(|e| {
                        let mut t = e.key_text();
                        if let Some(c) = &e.comment {
                            let _ = write!(t, " comment {}", super::quote(c));
                        }
                        if !e.value.is_empty() {
                            let _ = write!(t, " : {}", e.value_text());
                        }
                        t
                    })
                    .collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(",\n\t\t\t     "));
            }
            out.push_str("\t}\n");
        }
        for fc in self.chains.values() {
            let Some(chain) = &fc.chain else { continue };
            let _ = writeln!(out, "\tchain {} {{", chain.name);
            if let Some(b) = &chain.base {
                let _ = writeln!(
                    out,
                    "\t\ttype {} hook {} priority {}; policy accept;",
                    b.chain_type, b.hook, b.priority
                );
            }
            if let Some(c) = comment(&chain.comment, on) {
                let _ = writeln!(out, "\t\tcomment {}", super::quote(c));
            }
            for r in &fc.rules {
                let _ = write!(out, "\t\t{}", r.rule);
                if let Some(c) = &r.comment {
                    let _ = write!(out, " comment {}", super::quote(c));
                }
                out.push('\n');
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        Some(out)
    }

    /// The state as `add` lines (knftables' `Fake.Dump`): the table, the
    /// chains, sets and maps each sorted by name, every chain's rules (in
    /// chain order), then the sets' and the maps' elements (in insertion
    /// order). Empty without a table.
    pub fn dump(&self) -> String {
        let Some(table) = &self.table else {
            return String::new();
        };
        let mut tx = Transaction::new(self.family, &self.table_name, self.object_comments);
        tx.add(table.clone());
        for c in self.chains.values().filter_map(|c| c.chain.clone()) {
            tx.add(c);
        }
        let sets = || {
            self.containers
                .values()
                .filter(|c| matches!(c.container, Container::Set(_)))
        };
        let maps = || {
            self.containers
                .values()
                .filter(|c| matches!(c.container, Container::Map(_)))
        };
        for c in sets().chain(maps()) {
            match &c.container {
                Container::Set(s) => tx.add(s.clone()),
                Container::Map(m) => tx.add(m.clone()),
            }
        }
        for c in self.chains.values() {
            for r in &c.rules {
                tx.add(r.clone());
            }
        }
        for c in sets().chain(maps()) {
            for e in &c.elements {
                tx.add(e.clone());
            }
        }
        tx.render()
    }
}

/// What a rule or element value names.
#[derive(Debug, PartialEq, Eq)]
enum Reference<'a> {
    Chain(&'a str),
    Container(&'a str),
}

/// The chains (`jump X`, `goto X`) and sets or maps (`@X`) `text` names.
fn references(text: &str) -> impl Iterator<Item = Reference<'_>> {
    let mut words = text.split_whitespace().peekable();
    std::iter::from_fn(move || {
        while let Some(w) = words.next() {
            if w == "jump" || w == "goto" {
                if let Some(target) = words.peek() {
                    return Some(Reference::Chain(target.trim_end_matches(',')));
                }
            } else if let Some(name) = w.strip_prefix('@') {
                return Some(Reference::Container(name));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Transaction {
        let mut tx = Transaction::new(Family::Ip, "t", true);
        tx.add(Table {
            comment: Some("c".into()),
        });
        tx
    }

    #[test]
    fn add_keeps_existing_objects_and_elements_replace_in_place() {
        let mut t = tx();
        t.add(Chain::regular("z"));
        t.add(Chain::base("z", "nat", "output", 0));
        t.add(Map::new("m", "inet_service", "verdict"));
        t.add(Set::new("s", "ipv4_addr").with_comment("addrs"));
        t.add(Element::map("m", vec!["80".into()], vec!["goto z".into()]));
        t.add(Element::map("m", vec!["81".into()], vec!["drop".into()]));
        t.add(Element::map("m", vec!["80".into()], vec!["accept".into()]));
        t.add(Element::set("s", vec!["10.0.0.1".into()]));
        t.add(Rule::new("z", "ip daddr @s accept"));
        let mut fake = Fake::new(Family::Ip, "t", true);
        fake.apply(&t).expect("applies");
        assert_eq!(
            fake.dump(),
            "add table ip t { comment \"c\" ; }\n\
             add chain ip t z\n\
             add set ip t s { type ipv4_addr ; comment \"addrs\" ; }\n\
             add map ip t m { type inet_service : verdict ; }\n\
             add rule ip t z ip daddr @s accept\n\
             add element ip t s { 10.0.0.1 }\n\
             add element ip t m { 80 : accept }\n\
             add element ip t m { 81 : drop }\n"
        );
        assert_eq!(fake.chain_names(), ["z"]);
        assert_eq!(fake.container_names(), ["m", "s"]);
        assert_eq!(fake.elements("m").map(<[_]>::len), Some(2));
    }

    #[test]
    fn missing_references_refuse_the_whole_transaction() {
        let mut fake = Fake::new(Family::Ip, "t", true);
        let mut t = tx();
        t.add(Chain::regular("a"));
        t.add(Rule::new("a", "numgen random mod 1 vmap { 0 : goto b }"));
        let err = fake.apply(&t).expect_err("b is missing");
        assert!(
            matches!(&err, FakeError::NotFound { index: 2, kind: "chain", name, .. } if name == "b"),
            "{err}"
        );
        assert_eq!(fake.dump(), "", "nothing applied");
        let mut t = tx();
        t.add(Chain::regular("a"));
        t.add(Rule::new("a", "update @aff { ip saddr }"));
        assert!(fake.apply(&t).is_err());
        let mut t = tx();
        t.flush(Chain::regular("nope"));
        assert!(fake.apply(&t).is_err());
        let t = Transaction::new(Family::Ip6, "t", true);
        assert!(matches!(fake.apply(&t), Err(FakeError::OtherTable { .. })));
    }

    #[test]
    fn flush_and_delete() {
        let mut fake = Fake::new(Family::Ip, "t", false);
        let mut t = tx();
        t.add(Chain::regular("a"));
        t.add(Rule::new("a", "accept"));
        t.flush(Chain::regular("a"));
        t.add(Chain::regular("b"));
        t.delete(Chain::regular("b"));
        t.add(Set::new("s", "ipv4_addr"));
        t.add(Element::set("s", vec!["1.1.1.1".into()]));
        t.add(Element::set("s", vec!["2.2.2.2".into()]));
        t.add(Element::set("s", vec!["3.3.3.3".into()]));
        t.delete(Element::set("s", vec!["1.1.1.1".into()]));
        t.add(Element::set("s", vec!["2.2.2.2".into()]).with_comment("again"));
        fake.apply(&t).expect("applies");
        assert_eq!(fake.rules("a").map(<[_]>::len), Some(0));
        assert_eq!(fake.rules("b"), None);
        assert_eq!(
            fake.dump(),
            "add table ip t\nadd chain ip t a\nadd set ip t s { type ipv4_addr ; }\n\
             add element ip t s { 2.2.2.2 comment \"again\" }\nadd element ip t s { 3.3.3.3 }\n"
        );
        let mut t = tx();
        t.delete(Element::set("s", vec!["1.1.1.1".into()]));
        assert!(fake.apply(&t).is_err(), "deleting a missing element fails");
        let mut t = tx();
        t.delete(Table::default());
        fake.apply(&t).expect("applies");
        assert_eq!(fake.dump(), "");
    }
}

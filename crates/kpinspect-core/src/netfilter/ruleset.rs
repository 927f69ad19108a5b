//! `iptables-save` / `ip6tables-save` text (and restore input) as a typed
//! [`Ruleset`]: tables, chains with policy and counters, rules parsed into
//! [`Rule`]s in order. Parsing keeps every line, so rendering gives back the
//! exact text (comments, spacing quirks and all).

use thiserror::Error;

use super::rule::{Opt, Rule, parse_counters};
use crate::excerpt::excerpt;
use crate::fasthash::FastSet;

/// Malformed save text, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct SaveParseError {
    /// Line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A chain declaration (`:NAME POLICY [packets:bytes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// `ACCEPT`/`DROP` for built-in chains, `None` (`-`) for user chains.
    pub policy: Option<String>,
    /// Counters, if printed.
    pub counters: Option<(u64, u64)>,
}

/// One table of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `filter`, `nat`, `mangle`, `raw`, `security`.
    pub name: String,
    /// Declared chains, in order.
    pub chains: Vec<Chain>,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Chains deleted with `-X` (restore input only).
    pub deleted: Vec<String>,
}

impl Table {
    /// The declared chain `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The rules of `chain`, in order (for many chains, index them once:
    /// [`chain_index`](Self::chain_index)).
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }

    /// Every chain's rules, indexed once.
    pub fn chain_index(&self) -> super::ChainIndex<'_> {
        super::ChainIndex::new(self)
    }
}

/// One line of the text, its bytes in [`Ruleset`]'s `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A line kept verbatim (comments, blank lines, `*table`, `COMMIT`,
    /// declarations, `-X`).
    Verbatim,
    /// Rule `index` of table `table`, with the range of its original text.
    Rule {
        table: usize,
        index: usize,
        text: std::ops::Range<usize>,
    },
}

/// A parsed save. The default value is an empty ruleset (a fresh network
/// namespace), which [`Ruleset::restore`] can fill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Tables, in the order they appear. Changed only by
    /// [`Ruleset::restore`], which renders `lines` anew, so the two never
    /// disagree.
    pub(super) tables: Vec<Table>,
    /// The text, kept whole (one copy, not one per line).
    source: String,
    lines: Vec<Line>,
}

impl Ruleset {
    /// Parses save or restore text.
    ///
    /// ```
    /// let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n\
    ///             -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n";
    /// let rs = kpinspect_core::netfilter::Ruleset::parse(text).unwrap();
    /// let nat = rs.table("nat").unwrap();
    /// assert_eq!(nat.rules[0].target_name(), Some("KUBE-SERVICES"));
    /// assert_eq!(rs.render(), text);
    /// ```
    pub fn parse(text: &str) -> Result<Ruleset, SaveParseError> {
        let mut tables: Vec<Table> = Vec::new();
        // Lines are rarely shorter than 40 bytes: growing this vector (and
        // each table's rules, below) by doubling copied it over and over.
        let mut lines = Vec::with_capacity(text.len() / 40 + 8);
        let mut open: Option<usize> = None;
        // Declared chain names per table, to refuse a second declaration.
        let mut declared: Vec<FastSet<&str>> = Vec::new();
        let mut offset = 0;
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let n = i + 1;
            let start = offset;
            offset += raw.len();
            let err = |message: String| SaveParseError { line: n, message };
            let line = raw.trim_end_matches(['\n', '\r']);
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Verbatim);
                continue;
            }
            if let Some(name) = t.strip_prefix('*') {
                if open.is_some() {
                    return Err(err("a table starts before the previous one's COMMIT".into()));
                }
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(err(format!("bad table name {}", excerpt(name))));
                }
                tables.push(Table {
                    name: name.into(),
                    chains: Vec::new(),
                    rules: Vec::with_capacity(rules_ahead(&text[offset..])),
                    deleted: Vec::new(),
                });
                open = Some(tables.len() - 1);
                declared.push(Default::default());
                lines.push(Line::Verbatim);
                continue;
            }
            let ti = open.ok_or_else(|| {
                err(format!(
                    "{} outside of a table (no *table header before it)",
                    excerpt(t)
                ))
            })?;
            let table = &mut tables[ti];
            if t == "COMMIT" {
                open = None;
                lines.push(Line::Verbatim);
            } else if let Some(decl) = t.strip_prefix(':') {
                let parts: Vec<&str> = decl.split_whitespace().collect();
                let (name, policy, counters) = match parts.as_slice() {
                    [name] => (*name, None, None),
                    [name, policy] => (*name, Some(*policy), None),
                    [name, policy, counters] => {
                        let c = parse_counters(counters)
                            .ok_or_else(|| err(format!("bad counters {}", excerpt(counters))))?;
                        (*name, Some(*policy), Some(c))
                    }
                    _ => return Err(err(format!("bad chain declaration {}", excerpt(t)))),
                };
                if !declared[ti].insert(name) {
                    return Err(err(format!("chain {name} declared twice")));
                }
                table.chains.push(Chain {
                    name: name.into(),
                    policy: policy.filter(|p| *p != "-").map(String::from),
                    counters,
                });
                lines.push(Line::Verbatim);
            } else if let Some(chain) = t.strip_prefix("-X ") {
                table.deleted.push(chain.trim().to_string());
                lines.push(Line::Verbatim);
            } else if t.starts_with("-A ") || t.starts_with('[') {
                let rule = Rule::parse(t).map_err(|e| err(e.0))?;
                table.rules.push(rule);
                lines.push(Line::Rule {
                    table: ti,
                    index: table.rules.len() - 1,
                    text: start..offset,
                });
            } else {
                return Err(err(format!("unexpected line {}", excerpt(t))));
            }
        }
        if open.is_some() {
            return Err(SaveParseError {
                line: text.lines().count(),
                message: "missing COMMIT".into(),
            });
        }
        Ok(Ruleset {
            tables,
            source: text.to_string(),
            lines,
        })
    }

    /// Checks what `iptables-restore` (without `--noflush`) checks beyond
    /// the syntax: every rule appends to a chain its table declares, or to
    /// one of the table's built-in chains. Save text from any tool passes;
    /// hand-edited text whose rules append to an undeclared chain is
    /// refused, naming the line, as `iptables-restore` refuses it.
    ///
    /// ```
    /// use kpinspect_core::netfilter::Ruleset;
    /// let ok = Ruleset::parse("*nat\n:FOO - [0:0]\n-A FOO -j ACCEPT\n-A OUTPUT -j FOO\nCOMMIT\n").unwrap();
    /// assert!(ok.check_chains_declared().is_ok());
    /// let bad = Ruleset::parse("*nat\n-A FOO -j ACCEPT\nCOMMIT\n").unwrap();
    /// assert_eq!(
    ///     bad.check_chains_declared().unwrap_err().to_string(),
    ///     "line 2: chain FOO is not declared in table nat (no \":FOO\" line before COMMIT)"
    /// );
    /// ```
    pub fn check_chains_declared(&self) -> Result<(), SaveParseError> {
        // Each table's declared names, looked up once per rule.
        let declared: Vec<FastSet<&str>> = self
            .tables
            .iter()
            .map(|t| t.chains.iter().map(|c| c.name.as_str()).collect())
            .collect();
        for (i, l) in self.lines.iter().enumerate() {
            let Line::Rule { table, index, .. } = l else {
                continue;
            };
            let Some(t) = self.tables.get(*table) else {
                continue;
            };
            let Some(rule) = t.rules.get(*index) else {
                continue;
            };
            if !declared[*table].contains(rule.chain.as_str())
                && !builtin_chain(&t.name, &rule.chain)
            {
                return Err(SaveParseError {
                    line: i + 1,
                    message: format!(
                        "chain {} is not declared in table {} (no \":{}\" line before COMMIT)",
                        excerpt_bare(&rule.chain),
                        excerpt_bare(&t.name),
                        excerpt_bare(&rule.chain)
                    ),
                });
            }
        }
        Ok(())
    }

    /// The tables, in the order they appear.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The text this was parsed from; after a [`restore`](Ruleset::restore),
    /// the tables in `iptables-save`'s layout.
    pub fn render(&self) -> String {
        self.source.clone()
    }

    /// Replaces the kept text with `iptables-save`'s layout of
    /// [`tables`](Ruleset::tables): `*table`, declarations with counters
    /// (`[0:0]` when unknown), rules via [`render_rule`] (plus
    /// iptables-save's double space after `--nfacct-name`), `COMMIT`.
    pub(super) fn rerender(&mut self) {
        let mut lines = Vec::new();
        let mut source = String::new();
        for (ti, t) in self.tables.iter().enumerate() {
            source.push_str(&format!("*{}\n", t.name));
            lines.push(Line::Verbatim);
            for c in &t.chains {
                let (packets, bytes) = c.counters.unwrap_or((0, 0));
                let policy = c.policy.as_deref().unwrap_or("-");
                source.push_str(&format!(":{} {policy} [{packets}:{bytes}]\n", c.name));
                lines.push(Line::Verbatim);
            }
            for (index, r) in t.rules.iter().enumerate() {
                let start = source.len();
                source.push_str(&render(r, true));
                source.push('\n');
                lines.push(Line::Rule {
                    table: ti,
                    index,
                    text: start..source.len(),
                });
            }
            source.push_str("COMMIT\n");
            lines.push(Line::Verbatim);
        }
        self.source = source;
        self.lines = lines;
    }

    /// The family the rules are for, judged by the first address a rule
    /// matches on (`None` when no rule names an address).
    ///
    /// ```
    /// use kpinspect_core::{net::IpFamily, netfilter::Ruleset};
    /// let rs = Ruleset::parse("*filter\n:X - [0:0]\n-A X -d fd00::1/128 -j DROP\nCOMMIT\n").unwrap();
    /// assert_eq!(rs.family(), Some(IpFamily::V6));
    /// ```
    pub fn family(&self) -> Option<crate::net::IpFamily> {
        self.rules().find_map(|(_, r)| {
            let addr = r
                .base
                .iter()
                .filter(|o| o.name == "-s" || o.name == "-d")
                .flat_map(|o| o.values.first())
                .next()?;
            Some(if addr.contains(':') {
                crate::net::IpFamily::V6
            } else {
                crate::net::IpFamily::V4
            })
        })
    }

    /// Every rule with its table, in order.
    pub fn rules(&self) -> impl Iterator<Item = (&Table, &Rule)> {
        self.rules_with_text().map(|(t, r, _)| (t, r))
    }

    /// Every rule with its table and its text as read (trimmed; after a
    /// [`restore`](Ruleset::restore), as `iptables-save` prints it), in order.
    pub fn rules_with_text(&self) -> impl Iterator<Item = (&Table, &Rule, &str)> {
        self.lines.iter().filter_map(move |l| match l {
            Line::Rule { table, index, text } => {
                let t = &self.tables[*table];
                Some((t, &t.rules[*index], self.source[text.clone()].trim()))
            }
            Line::Verbatim => None,
        })
    }
}

impl Ruleset {
    /// The text of each rule of table `index` as read (trimmed, without
    /// its `[packets:bytes]`), by rule index; `None` for a rule without
    /// text.
    pub(crate) fn rule_texts(&self, index: usize) -> Vec<Option<&str>> {
        let mut out = vec![None; self.tables.get(index).map_or(0, |t| t.rules.len())];
        for l in &self.lines {
            if let Line::Rule {
                table,
                index: i,
                text,
            } = l
                && *table == index
                && let Some(slot) = out.get_mut(*i)
            {
                let t = self.source[text.clone()].trim();
                let t = match t.strip_prefix('[') {
                    Some(rest) => rest.split_once(']').map_or(t, |(_, r)| r.trim_start()),
                    None => t,
                };
                *slot = Some(t);
            }
        }
        out
    }

    /// The index of the table called `name`.
    pub(crate) fn table_index(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }
}

/// How many rules the table that starts `text` (after its `*name` line)
/// has, counted from its `-A` lines up to its `COMMIT` (an estimate for
/// reserving room: a line it miscounts only costs a regrowth).
fn rules_ahead(text: &str) -> usize {
    let end = text.find("\nCOMMIT").unwrap_or(text.len());
    let table = &text[..end];
    table.matches("\n-A ").count() + usize::from(table.starts_with("-A "))
}

/// `rule` as `iptables-save` prints it (its kernel form, in iptables-save's
/// order, quoting and spacing), written into `out`, which is cleared first:
/// a caller comparing many rules reuses one buffer.
pub(crate) fn save_text_into(rule: &Rule, out: &mut String) {
    out.clear();
    super::ext::render_kernel_into(rule, true, out);
}

/// Renders a rule in iptables-save's argument order and quoting, for rules
/// that were not read from text.
pub fn render_rule(rule: &Rule) -> String {
    render(rule, false)
}

/// [`render_rule`], with iptables-save's spacing quirks when `quirks` is set
/// (`--nfacct-name` is followed by two spaces).
fn render(rule: &Rule, quirks: bool) -> String {
    // Room for most rules: growing a string by doubling copied each rule
    // three or four times.
    let mut out = String::with_capacity(192);
    render_into(rule, quirks, &mut out);
    out
}

/// [`render`], appended to `out`.
pub(super) fn render_into(rule: &Rule, quirks: bool, out: &mut String) {
    out.push_str("-A ");
    out.push_str(&rule.chain);
    for name in ["-s", "-d", "-i", "-o", "-p", "-f"] {
        push_opts(out, rule.base.iter().filter(|o| o.name == name), quirks);
    }
    for m in &rule.matches {
        out.push_str(" -m ");
        out.push_str(&m.module);
        push_opts(out, &m.options, quirks);
    }
    if let Some(t) = &rule.target {
        out.push_str(if t.goto { " -g " } else { " -j " });
        out.push_str(&t.name);
        push_opts(out, &t.options, quirks);
    }
}

/// Appends ` [!] --name value...`; comments are always quoted, as
/// iptables-save does.
pub(super) fn push_opts<'a>(
    out: &mut String,
    opts: impl IntoIterator<Item = &'a Opt>,
    quirks: bool,
) {
    for o in opts {
        if o.negated {
            out.push_str(" !");
        }
        out.push(' ');
        out.push_str(&o.name);
        if quirks && o.name == "--nfacct-name" {
            out.push(' ');
        }
        for v in &o.values {
            out.push(' ');
            push_quoted(out, v, o.name == "--comment");
        }
    }
}

/// Appends `v`, in double quotes (with `\` and `"` escaped) when `always`
/// or when it is empty or holds whitespace or a quote.
pub(super) fn push_quoted(out: &mut String, v: &str, always: bool) {
    if always || v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        out.push('"');
        for c in v.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// Whether `chain` is one of the kernel's built-in chains of `table`.
fn builtin_chain(table: &str, chain: &str) -> bool {
    super::builtin_chains(table).is_some_and(|b| b.contains(&chain))
}

/// An [`excerpt`] without its quotes, for names inside a message.
fn excerpt_bare(s: &str) -> String {
    let e = excerpt(s);
    let e = e.strip_prefix('"').unwrap_or(&e);
    match e.strip_suffix("\"…") {
        Some(cut) => format!("{cut}…"),
        None => e.strip_suffix('"').unwrap_or(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::split_args;

    fn renders_back(rule: &Rule) -> bool {
        let text = render_rule(rule);
        split_args(&text).is_ok() && Rule::parse(&text).is_ok_and(|r| r == *rule)
    }

    #[test]
    fn malformed_text_names_the_line() {
        let cases = [
            ("*nat\n-A X -j\nCOMMIT\n", 2),
            ("-A X -j ACCEPT\n", 1),
            ("*nat\n:X - [a:b]\nCOMMIT\n", 2),
            ("*nat\n:X - [0:0]\n", 2),
            ("*nat\n*filter\n", 2),
            ("*nat\nbogus\nCOMMIT\n", 2),
        ];
        for (text, line) in cases {
            let err = Ruleset::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn rendering_parsed_rules_round_trips() {
        let text = "*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n-A KUBE-SVC-X -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-X\nCOMMIT\n";
        let rs = Ruleset::parse(text).expect("parse");
        for (_, r) in rs.rules() {
            let line = render_rule(r);
            assert!(text.contains(&line), "{line}");
            assert!(renders_back(r));
        }
    }
}

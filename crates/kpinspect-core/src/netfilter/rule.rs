//! One iptables rule, parsed into its parts: the base matches (`-s`, `-d`,
//! `-p`, `-i`, `-o`), the match modules (`-m NAME --opt value ...`) and the
//! target (`-j NAME --opt value ...`), plus a canonical form in which a rule
//! as kube-proxy writes it and the same rule as `iptables-save` prints it
//! compare equal.

use std::net::IpAddr;

use thiserror::Error;

use crate::net::{IpNet, parse_cidr_sloppy, parse_ip_sloppy};

/// A rule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// One `--option value...` of a match or target, or a base match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Opt {
    /// Whether a `!` preceded it.
    pub negated: bool,
    /// The option, e.g. `--dport` or `-s`.
    pub name: String,
    /// Its values (none for flags like `--rcheck`).
    pub values: Vec<String>,
}

/// A match module (`-m NAME`), or the implicit protocol match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// Module name (`comment`, `tcp`, `statistic`, ...).
    pub module: String,
    /// Its options in the order written.
    pub options: Vec<Opt>,
}

impl Match {
    /// The first value of option `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        first_value(&self.options, name)
    }

    /// Whether flag or option `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.options.iter().any(|o| o.name == name)
    }
}

/// The first value of option `name` among `options`.
fn first_value<'a>(options: &'a [Opt], name: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.values.first())
        .map(String::as_str)
}

/// The target (`-j NAME` or `-g NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Target or chain name.
    pub name: String,
    /// `-g` (goto) rather than `-j`.
    pub goto: bool,
    /// Target options.
    pub options: Vec<Opt>,
}

impl Target {
    /// The first value of option `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        first_value(&self.options, name)
    }
}

/// A parsed rule of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain it is appended to.
    pub chain: String,
    /// `[packets:bytes]` when saved with counters.
    pub counters: Option<(u64, u64)>,
    /// `-s`, `-d`, `-p`, `-i`, `-o`, `-f` in the order written.
    pub base: Vec<Opt>,
    /// Match modules in order.
    pub matches: Vec<Match>,
    /// The target, if any (kube-proxy's KUBE-FW chains end in a rule without one).
    pub target: Option<Target>,
}

const BASE_OPTS: [(&str, &str); 10] = [
    ("-s", "-s"),
    ("--source", "-s"),
    ("-d", "-d"),
    ("--destination", "-d"),
    ("-p", "-p"),
    ("--protocol", "-p"),
    ("-i", "-i"),
    ("--in-interface", "-i"),
    ("-o", "-o"),
    ("--out-interface", "-o"),
];

/// A chain, match module or target name is one word, as the kernel and
/// iptables-save know it (a quoted string with spaces is not one).
fn name_word(what: &str, name: &str) -> Result<(), RuleError> {
    // Names are printable ASCII but for the odd one: those are checked
    // byte by byte, the rest char by char.
    let plain = |b: &u8| b.is_ascii_graphic() && *b != b'"';
    if name.is_empty()
        || !name.bytes().all(|b| plain(&b))
            && name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(RuleError(format!(
            "bad {what} name {}",
            crate::excerpt::excerpt(name)
        )));
    }
    Ok(())
}

impl Rule {
    /// Parses the arguments of a rule (`-A CHAIN ...` without the `-A`):
    /// `args[0]` is the chain.
    pub fn from_args(args: &[String], counters: Option<(u64, u64)>) -> Result<Rule, RuleError> {
        Rule::from_owned_args(args.to_vec(), counters)
    }

    /// [`Rule::from_args`] on arguments it may keep: each becomes part of
    /// the rule without a copy.
    fn from_owned_args(args: Vec<String>, counters: Option<(u64, u64)>) -> Result<Rule, RuleError> {
        // The base options and matches counted first, so that each vector
        // is allocated once at its size (a pushed one reserves four: about
        // half of a parsed rule's memory was room never used).
        let (mut base_len, mut matches_len) = (0, 0);
        for a in args.iter().filter(|a| a.starts_with('-') && a.len() <= 16) {
            match a.as_str() {
                "-m" | "--match" => matches_len += 1,
                "-f" | "--fragment" => base_len += 1,
                a if BASE_OPTS.iter().any(|(long, _)| *long == a) => base_len += 1,
                _ => {}
            }
        }
        let mut args = args.into_iter().peekable();
        let chain = args
            .next()
            .ok_or_else(|| RuleError("rule without a chain".into()))?;
        name_word("chain", &chain)?;
        let mut rule = Rule {
            chain,
            counters,
            base: Vec::with_capacity(base_len),
            matches: Vec::with_capacity(matches_len),
            target: None,
        };
        // Where `--options` go: the last match, or the target.
        let mut in_target = false;
        let mut negate = false;
        while let Some(a) = args.next() {
            if a == "!" {
                negate = true;
                continue;
            }
            if let Some((_, short)) = BASE_OPTS.iter().find(|(long, _)| *long == a) {
                let v = args
                    .next()
                    .ok_or_else(|| RuleError(format!("{a} needs a value")))?;
                let name = if a == *short { a } else { short.to_string() };
                rule.base.push(Opt {
                    negated: negate,
                    name,
                    values: vec![v],
                });
                negate = false;
                continue;
            }
            match a.as_str() {
                "-f" | "--fragment" => {
                    rule.base.push(Opt {
                        negated: negate,
                        name: "-f".into(),
                        values: vec![],
                    });
                }
                "-m" | "--match" => {
                    let m = args
                        .next()
                        .ok_or_else(|| RuleError("-m needs a module".into()))?;
                    name_word("match module", &m)?;
                    rule.matches.push(Match {
                        module: m,
                        options: Vec::new(),
                    });
                    in_target = false;
                }
                "-j" | "--jump" | "-g" | "--goto" => {
                    if rule.target.is_some() {
                        return Err(RuleError("more than one target".into()));
                    }
                    let t = args
                        .next()
                        .ok_or_else(|| RuleError(format!("{a} needs a target")))?;
                    name_word("target", &t)?;
                    rule.target = Some(Target {
                        name: t,
                        goto: a == "-g" || a == "--goto",
                        options: Vec::new(),
                    });
                    in_target = true;
                }
                opt if opt.starts_with("--") => {
                    // Most options have one value: a vector of exactly one
                    // (a pushed one reserves four; at 100,000 rules of
                    // several options each, tens of MB of memory).
                    let mut values = match args.next_if(|v| !is_option(v)) {
                        Some(v) => vec![v],
                        None => Vec::new(),
                    };
                    while let Some(v) = args.next_if(|v| !is_option(v)) {
                        values.push(v);
                    }
                    if let (true, Some(t)) = (in_target, rule.target.as_mut()) {
                        t.options.push(Opt {
                            negated: negate,
                            name: a,
                            values,
                        });
                    } else if let Some(m) = rule.matches.last_mut() {
                        m.options.push(Opt {
                            negated: negate,
                            name: a,
                            values,
                        });
                    } else {
                        // An option of the implicit protocol match (`-p tcp --dport 80`).
                        let proto = rule
                            .base
                            .iter()
                            .rev()
                            .find(|b| b.name == "-p")
                            .and_then(|b| b.values.first())
                            .cloned()
                            .ok_or_else(|| RuleError(format!("option {a} outside of a match")))?;
                        rule.matches.push(Match {
                            module: proto,
                            options: vec![Opt {
                                negated: negate,
                                name: a,
                                values,
                            }],
                        });
                    }
                }
                other => {
                    return Err(RuleError(format!(
                        "unexpected argument {}",
                        crate::excerpt::excerpt(other)
                    )));
                }
            }
            negate = false;
        }
        for m in &mut rule.matches {
            m.options.shrink_to_fit();
        }
        if let Some(t) = &mut rule.target {
            t.options.shrink_to_fit();
        }
        if let Some(p) = rule
            .find_match("statistic")
            .and_then(|m| m.value("--probability"))
            && !p.parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p))
        {
            return Err(RuleError(format!(
                "bad --probability {}",
                crate::excerpt::excerpt(p)
            )));
        }
        Ok(rule)
    }

    /// The value of base option `-s`, `-d`, `-p`, `-i` or `-o` with its negation.
    pub fn base(&self, name: &str) -> Option<(bool, &str)> {
        self.base
            .iter()
            .find(|o| o.name == name)
            .map(|o| (o.negated, o.values[0].as_str()))
    }

    /// The first match of `module`.
    pub fn find_match(&self, module: &str) -> Option<&Match> {
        self.matches.iter().find(|m| m.module == module)
    }

    /// The `--comment` text, if any.
    pub fn comment(&self) -> Option<&str> {
        self.find_match("comment")
            .and_then(|m| m.value("--comment"))
    }

    /// The jump target's name, if any.
    pub fn target_name(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.name.as_str())
    }

    /// The `statistic --probability` of this rule, as the kernel stores it
    /// (31-bit fixed point), converted back to a fraction.
    pub fn probability(&self) -> Option<f64> {
        let p: f64 = self
            .find_match("statistic")?
            .value("--probability")?
            .parse()
            .ok()?;
        Some(quantize_probability(p) as f64 / 2f64.powi(31))
    }

    /// A canonical text of what the rule does: two rules with the same
    /// canonical form are the same rule to the kernel (kube-proxy's input
    /// and `iptables-save`'s rendering of it compare equal). Counters are
    /// not part of it.
    ///
    /// ```
    /// use kpinspect_core::netfilter::Rule;
    /// let written = Rule::parse("-A KUBE-SVC-X -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ").unwrap();
    /// let saved = Rule::parse("-A KUBE-SVC-X ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns/s:p cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ").unwrap();
    /// assert_eq!(written.canonical(), saved.canonical());
    /// ```
    pub fn canonical(&self) -> String {
        let mut kernel = super::ext::kernel_form(self.clone());
        // The kernel compares each extension's data, not the order its
        // options were written in.
        for m in &mut kernel.matches {
            m.options
                .sort_by(|a, b| (&a.name, &a.values).cmp(&(&b.name, &b.values)));
        }
        if let Some(t) = &mut kernel.target {
            // A rule names no family: a REJECT without addresses gets the
            // IPv4 default, which ip6tables-save prints as its own. Each
            // spelling is valid in one family only, so they are one value.
            if t.name == "REJECT" {
                for o in &mut t.options {
                    if o.name == "--reject-with" && o.values == ["icmp6-port-unreachable"] {
                        o.values = vec!["icmp-port-unreachable".into()];
                    }
                }
            }
            t.options
                .sort_by(|a, b| (&a.name, &a.values).cmp(&(&b.name, &b.values)));
        }
        super::ruleset::render_rule(&kernel)
    }

    /// The rule as the kernel stores it and `iptables-save` prints it
    /// (addresses with their prefix length, defaults filled in, aliases
    /// folded; see the `ext` module).
    ///
    /// ```
    /// use kpinspect_core::netfilter::{Rule, render_rule};
    /// let r = Rule::parse("-A X -m tcp -p tcp -d 10.0.0.1 --dport 80 -j REJECT").unwrap();
    /// assert_eq!(
    ///     render_rule(&r.kernel_form()),
    ///     "-A X -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
    /// );
    /// ```
    pub fn kernel_form(&self) -> Rule {
        super::ext::kernel_form(self.clone())
    }

    /// Whether two rules are the same to the kernel.
    pub fn same_as(&self, other: &Rule) -> bool {
        self.canonical() == other.canonical()
    }

    /// Parses a whole `-A CHAIN ...` line (an optional `[pkts:bytes]` first).
    pub fn parse(line: &str) -> Result<Rule, RuleError> {
        let mut rest = line.trim();
        let mut counters = None;
        if rest.starts_with('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| RuleError("unterminated counters".into()))?;
            counters = Some(
                parse_counters(&rest[..=end]).ok_or_else(|| RuleError("bad counters".into()))?,
            );
            rest = rest[end + 1..].trim_start();
        }
        let rest = rest
            .strip_prefix("-A ")
            .or_else(|| rest.strip_prefix("--append "))
            .ok_or_else(|| RuleError("a rule starts with -A".into()))?;
        Rule::from_owned_args(split_args(rest)?, counters)
    }
}

/// Parses `[packets:bytes]`.
pub fn parse_counters(s: &str) -> Option<(u64, u64)> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some((p.parse().ok()?, b.parse().ok()?))
}

fn is_option(tok: &str) -> bool {
    if tok == "!" {
        return true;
    }
    let mut chars = tok.chars();
    chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '-')
}

/// The kernel's 31-bit fixed-point form of a `statistic` probability.
pub fn quantize_probability(p: f64) -> u32 {
    (p * 2f64.powi(31)).round().clamp(0.0, u32::MAX as f64) as u32
}

pub(crate) fn parse_u32(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A mark option's `value[/mask]` as numbers, the mask defaulting to all
/// ones.
///
/// ```
/// assert_eq!(kpinspect_core::netfilter::mark_pair("0x4000/0x4000"), Some((0x4000, 0x4000)));
/// assert_eq!(kpinspect_core::netfilter::mark_pair("16384"), Some((16384, u32::MAX)));
/// ```
pub fn mark_pair(v: &str) -> Option<(u32, u32)> {
    match v.split_once('/') {
        Some((a, b)) => Some((parse_u32(a)?, parse_u32(b)?)),
        None => Some((parse_u32(v)?, u32::MAX)),
    }
}

/// Splits rule text into arguments as iptables-restore does: whitespace
/// separates, double quotes group (and are removed), `\"` and `\\` escape.
pub fn split_args(text: &str) -> Result<Vec<String>, RuleError> {
    // Room for the arguments of most rules (kube-proxy's longest have ~30).
    let mut out = Vec::with_capacity(32);
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        // Most arguments hold no quote: they are copied whole.
        let end = arg_end(rest);
        let (arg, len) = if rest[end..].starts_with('"') {
            quoted_arg(rest)?
        } else {
            (rest[..end].to_string(), end)
        };
        out.push(arg);
        rest = rest[len..].trim_start();
    }
    Ok(out)
}

/// Where the unquoted start of `text` ends: at its first whitespace or
/// double quote (the text's length when it has neither). ASCII is looked
/// at a byte at a time; only other characters are decoded.
fn arg_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b.is_ascii_whitespace() || b == 0x0b || b == b'"' {
                return i;
            }
            i += 1;
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            if c.is_whitespace() {
                return i;
            }
            i += c.len_utf8();
        }
    }
    bytes.len()
}

/// The argument `text` starts with (not with whitespace), one with a quote
/// in it, and the length of text it took.
fn quoted_arg(text: &str) -> Result<(String, usize), RuleError> {
    let mut cur = String::with_capacity(64);
    let mut quoted = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quoted => match chars.next() {
                Some((_, n)) => cur.push(n),
                None => return Err(RuleError("trailing backslash".into())),
            },
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((cur, i)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(RuleError("unterminated quote".into()));
    }
    Ok((cur, text.len()))
}

/// Whether `ip` is inside the `-s`/`-d` value `spec` (an address or CIDR).
pub fn addr_matches(spec: &str, ip: &IpAddr) -> bool {
    let net = if spec.contains('/') {
        parse_cidr_sloppy(spec)
    } else {
        parse_ip_sloppy(spec).map(IpNet::from)
    };
    net.is_some_and(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        let (ra, rb) = (Rule::parse(a).expect("a"), Rule::parse(b).expect("b"));
        assert_eq!(ra.canonical(), rb.canonical(), "\n{a}\n{b}");
    }

    #[test]
    fn kube_proxy_input_equals_iptables_save_rendering() {
        same(
            "-A KUBE-SEP-X -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-X --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
            "-A KUBE-SEP-X -p tcp -m comment --comment \"ns1/svc1:p80\" -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.1:80",
        );
        same(
            "-A KUBE-SVC-X -m comment --comment \"a -> b\" -m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j KUBE-SEP-X",
            "-A KUBE-SVC-X -m comment --comment \"a -> b\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X",
        );
        same(
            "-A KUBE-SVC-X -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-X",
            "-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-X",
        );
        same(
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000",
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        );
        same(
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        );
        same(
            "-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        );
        same(
            "-A KUBE-SERVICES -m comment --comment \"x has no endpoints\" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT",
            "-A KUBE-SERVICES -d 172.30.0.46/32 -p tcp -m comment --comment \"x has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable",
        );
        same(
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP",
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP",
        );
        same(
            "-A X -p tcp --dport 80 -j ACCEPT",
            "-A X -p tcp -m tcp --dport 80 -j ACCEPT",
        );
        // One canonical form, the kernel's: what iptables-save leaves out
        // (a match-everything address) is not part of the rule.
        same(
            "-A X -s 0.0.0.0/0 -d 10.1.2.3/8 -j ACCEPT",
            "-A X -d 10.0.0.0/8 -j ACCEPT",
        );
        same(
            "-A X -m conntrack --ctstate ESTABLISHED,INVALID -j ACCEPT",
            "-A X -m conntrack --ctstate INVALID,ESTABLISHED -j ACCEPT",
        );
        // IPVS mode's KUBE-IPVS-OUT-FILTER rule, as written and as saved.
        same(
            "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.7 -m ipvs --vaddr 203.0.113.7 --vproto tcp --vport 80 -j DROP",
            "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.7/32 -m ipvs --vproto 6 --vaddr 203.0.113.7 --vport 80 -j DROP",
        );
    }

    /// The splitter as it was written first, character by character: the
    /// reference the fast one is held to.
    fn split_args_reference(text: &str) -> Result<Vec<String>, RuleError> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut has = false;
        let mut quoted = false;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if quoted => match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err(RuleError("trailing backslash".into())),
                },
                '"' => {
                    quoted = !quoted;
                    has = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if has {
                        out.push(std::mem::take(&mut cur));
                        has = false;
                    }
                }
                c => {
                    cur.push(c);
                    has = true;
                }
            }
        }
        if quoted {
            return Err(RuleError("unterminated quote".into()));
        }
        if has {
            out.push(cur);
        }
        Ok(out)
    }

    #[test]
    fn split_args_splits_as_iptables_restore() {
        let cases = [
            "",
            "   ",
            "-A X -j ACCEPT",
            "  -A\tX  -m comment --comment \"a b\" -j Y  ",
            "--comment \"\"",
            "--comment \"\" -j X",
            "a\"b c\"d e",
            "\"a\\\"b\" c",
            "\"a\\\\b\"",
            "a\\b \"c",
            "\"a\\",
            "x\"\"y",
            "\u{a0}a\u{2003}b\u{a0}",
            "é \"ü ß\"ñ",
            "\"\"\"\"",
            "a\"",
        ];
        for text in cases {
            let got = split_args(text).map_err(|e| e.0);
            let want = split_args_reference(text).map_err(|e| e.0);
            assert_eq!(got, want, "{text:?}");
        }
        assert_eq!(
            split_args("-m comment --comment \"a \\\"b\\\"\" -j X").expect("splits"),
            ["-m", "comment", "--comment", "a \"b\"", "-j", "X"]
        );
    }

    #[test]
    fn different_rules_differ() {
        let a = Rule::parse("-A X -d 10.0.0.1 -j ACCEPT").expect("a");
        for b in [
            "-A X -d 10.0.0.2 -j ACCEPT",
            "-A X ! -d 10.0.0.1 -j ACCEPT",
            "-A Y -d 10.0.0.1 -j ACCEPT",
            "-A X -d 10.0.0.1 -j DROP",
            "-A X -d 10.0.0.1/31 -j ACCEPT",
        ] {
            assert!(!a.same_as(&Rule::parse(b).expect("b")), "{b}");
        }
        let p3 = Rule::parse("-A X -m statistic --mode random --probability 0.3333333333 -j Y")
            .expect("p");
        let p5 = Rule::parse("-A X -m statistic --mode random --probability 0.5000000000 -j Y")
            .expect("p");
        assert!(!p3.same_as(&p5));
        assert!((p3.probability().expect("p") - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn parses_parts() {
        let r = Rule::parse("[5:300] -A KUBE-FW-X -s 203.0.113.0/25 -m comment --comment \"a \\\"b\\\"\" -j KUBE-EXT-X").expect("r");
        assert_eq!(r.counters, Some((5, 300)));
        assert_eq!(r.base("-s"), Some((false, "203.0.113.0/25")));
        assert_eq!(r.comment(), Some("a \"b\""));
        assert_eq!(r.target_name(), Some("KUBE-EXT-X"));
        let r = Rule::parse("-A KUBE-FW-X -m comment --comment \"other traffic\"").expect("r");
        assert!(r.target.is_none());
        assert!(Rule::parse("-A X --dport 80").is_err());
        assert!(Rule::parse("-A X -m statistic --mode random --probability abc -j Y").is_err());
        assert!(Rule::parse("-A X -m statistic --mode random --probability 1.5 -j Y").is_err());
        assert!(Rule::parse("-A X -m comment --comment \"unterminated").is_err());
        assert!(Rule::parse("-I X 1 -j ACCEPT").is_err());
    }

    #[test]
    fn reject_defaults_of_both_families_compare_equal() {
        // An address-less REJECT (IPVS mode's KUBE-IPVS-FILTER) as written
        // and as ip6tables-save prints it.
        let written = Rule::parse("-A F -m conntrack --ctstate NEW -j REJECT").expect("rule");
        let saved = Rule::parse(
            "-A F -m conntrack --ctstate NEW -j REJECT --reject-with icmp6-port-unreachable",
        )
        .expect("rule");
        assert_eq!(written.canonical(), saved.canonical());
        let other = Rule::parse("-A F -j REJECT --reject-with icmp6-adm-prohibited").expect("rule");
        assert_ne!(written.canonical(), other.canonical());
    }
}

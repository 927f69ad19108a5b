//! `nft -f` input in knftables' line forms (what [`Transaction::render`]
//! writes) read back into [`Transaction`]s.

use super::{
    BaseChain, Chain, Element, Family, KeyType, Map, Object, Op, Rule, Set, Table, Transaction,
    Verb, duration_seconds, priority_value,
};

/// Why a script line does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nft script line {line}: {message}")]
pub struct ScriptError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses `nft -f` input made of knftables' one-line operations (`add`,
/// `flush`, `delete` of tables, chains, sets, maps, elements and rules;
/// blank lines and `#` comments skipped). Consecutive operations on one
/// table form one [`Transaction`]; the order is kept.
///
/// ```
/// use kpinspect_core::nft::{Family, parse_script};
/// let text = "add table ip t { comment \"c\" ; }\nadd chain ip t in { type filter hook input priority 0 ; }\n\
///             add rule ip t in tcp dport 22 accept comment \"ssh\"\ndelete table ip6 u\n";
/// let txs = parse_script(text).unwrap();
/// assert_eq!(txs.len(), 2);
/// assert_eq!((txs[0].family, txs[0].table.as_str(), txs[0].len()), (Family::Ip, "t", 3));
/// assert_eq!(txs[0].render() + &txs[1].render(), text);
/// ```
pub fn parse_script(text: &str) -> Result<Vec<Transaction>, ScriptError> {
    let mut out: Vec<Transaction> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| ScriptError {
            line: i + 1,
            message,
        };
        let (family, table, op) = parse_line(line).map_err(err)?;
        match out.last_mut() {
            Some(tx) if tx.family == family && tx.table == table => tx.ops.push(op),
            _ => {
                let mut tx = Transaction::new(family, table, true);
                tx.ops.push(op);
                out.push(tx);
            }
        }
    }
    Ok(out)
}

/// `s` split at its first space.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once(' ') {
        Some((w, rest)) => (w, rest.trim_start()),
        None => (s, ""),
    }
}

/// The contents of `{ ... }` at the start of `s`.
fn braces(s: &str) -> Result<&str, String> {
    s.trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .map(str::trim)
        .ok_or_else(|| format!("expected {{ ... }}, got {s:?}"))
}

/// A `"..."` string (Go's quoting undone for `\"` and `\\`) at the start of
/// `s`, and the rest.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a quoted string, got {s:?}"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            // Go's %q escapes, as knftables writes comments.
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 'a')) => out.push('\u{7}'),
                Some((_, 'b')) => out.push('\u{8}'),
                Some((_, 'f')) => out.push('\u{c}'),
                Some((_, 'v')) => out.push('\u{b}'),
                Some((_, e @ ('x' | 'u' | 'U'))) => {
                    let digits = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.by_ref().take(digits).map(|(_, c)| c).collect();
                    let c = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == digits)
                        .and_then(char::from_u32)
                        .ok_or_else(|| {
                            format!(
                                "bad escape \\{e}{} in a string",
                                crate::excerpt::excerpt(&hex)
                            )
                        })?;
                    out.push(c);
                }
                Some((_, o)) => out.push(o),
                None => break,
            },
            '"' => return Ok((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    Err(format!(
        "unterminated string {}",
        crate::excerpt::excerpt(s)
    ))
}

/// `text` without a trailing ` comment "..."`, and the comment.
fn trailing_comment(text: &str) -> Result<(&str, Option<String>), String> {
    if !text.ends_with('"') {
        return Ok((text, None));
    }
    // The last ` comment "` whose string runs to the end.
    let mut from = text.len();
    while let Some(i) = text[..from].rfind(" comment \"") {
        if let Ok((c, rest)) = quoted(&text[i + 9..])
            && rest.is_empty()
        {
            return Ok((text[..i].trim_end(), Some(c)));
        }
        from = i;
    }
    Ok((text, None))
}

/// The `; `-separated properties inside a declaration's braces.
fn properties(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = word(rest);
        let (value, after) = if after.starts_with('"') {
            let (v, a) = quoted(after)?;
            (v, a)
        } else {
            match after.find(';') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key.to_string(), value));
        rest = after.trim_start().trim_start_matches(';').trim_start();
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<(Family, String, Op), String> {
    let (verb, rest) = word(line);
    let verb = match verb {
        "add" => Verb::Add,
        "flush" => Verb::Flush,
        "delete" => Verb::Delete,
        v => return Err(format!("unknown verb {v:?}")),
    };
    let (kind, rest) = word(rest);
    let (family, rest) = word(rest);
    let family_name = family;
    let family = Family::parse(family).ok_or_else(|| format!("unknown family {family:?}"))?;
    let (table, rest) = word(rest);
    let table = table.to_string();
    if table.is_empty() {
        return Err("no table name".into());
    }
    let object: Object = match kind {
        "table" => {
            let mut t = Table::default();
            if !rest.is_empty() {
                for (k, v) in properties(braces(rest)?)? {
                    match k.as_str() {
                        "comment" => t.comment = Some(v),
                        other => return Err(unsupported("table", other, "comment")),
                    }
                }
            }
            t.into()
        }
        "chain" => {
            let (name, rest) = word(rest);
            let mut c = Chain::regular(name);
            if !rest.is_empty() {
                for (k, v) in properties(braces(rest)?)? {
                    match k.as_str() {
                        "type" => c.base = Some(base_chain(family_name, &v)?),
                        "comment" => c.comment = Some(v),
                        other => return Err(unsupported("chain", other, "type, comment")),
                    }
                }
            }
            c.into()
        }
        "set" | "map" => {
            let (name, rest) = word(rest);
            let (mut key, mut value) = (KeyType::Type(String::new()), String::new());
            let (mut flags, mut timeout, mut comment) = (Vec::new(), None, None);
            if !rest.is_empty() {
                for (k, v) in properties(braces(rest)?)? {
                    match k.as_str() {
                        "type" | "typeof" => {
                            let (kt, vt) = match v.rsplit_once(" : ") {
                                Some((kt, vt)) if kind == "map" => (kt.trim(), vt.trim()),
                                _ => (v.trim(), ""),
                            };
                            value = vt.to_string();
                            key = if k == "type" {
                                KeyType::Type(kt.into())
                            } else {
                                KeyType::Typeof(kt.into())
                            };
                        }
                        "flags" => flags = v.split(',').map(|f| f.trim().to_string()).collect(),
                        "timeout" => {
                            timeout = Some(
                                duration_seconds(&v).ok_or_else(|| format!("bad timeout {v:?}"))?,
                            )
                        }
                        "comment" => comment = Some(v),
                        other => {
                            return Err(unsupported(
                                kind,
                                other,
                                "type, typeof, flags, timeout, comment",
                            ));
                        }
                    }
                }
            }
            // nft creates no set or map without its type (and a map's
            // value type); knftables always writes them.
            if matches!(verb, Verb::Add) {
                let untyped = match &key {
                    KeyType::Type(t) | KeyType::Typeof(t) => t.trim().is_empty(),
                };
                if untyped || (kind == "map" && value.trim().is_empty()) {
                    return Err(format!(
                        "add {kind} {name} needs {{ type KEY{} ; }}",
                        if kind == "map" { " : VALUE" } else { "" }
                    ));
                }
            }
            if kind == "set" {
                Set {
                    name: name.into(),
                    key,
                    flags,
                    timeout,
                    comment,
                }
                .into()
            } else {
                Map {
                    name: name.into(),
                    key,
                    value,
                    flags,
                    timeout,
                    comment,
                }
                .into()
            }
        }
        "element" => {
            let (name, rest) = word(rest);
            let body = braces(rest)?;
            // `k1 . k2 [comment "c"] [: v]`
            let (key_text, value_text) = match split_value(body) {
                Some((k, v)) => (k, Some(v)),
                None => (body, None),
            };
            let (key_text, comment) = trailing_comment(key_text)?;
            let parts =
                |t: &str| -> Vec<String> { t.split(" . ").map(|p| p.trim().to_string()).collect() };
            let value = match value_text {
                Some(v) if v.starts_with("goto ") || v.starts_with("jump ") => vec![v.to_string()],
                Some(v) => parts(v),
                None => Vec::new(),
            };
            Element {
                container: name.into(),
                key: parts(key_text),
                value,
                comment,
            }
            .into()
        }
        "rule" => {
            let (chain, rest) = word(rest);
            let mut r = Rule::new(chain, "");
            if verb == Verb::Add {
                let (text, comment) = trailing_comment(rest)?;
                r.rule = text.to_string();
                r.comment = comment;
            } else if let Some(h) = rest.strip_prefix("handle ") {
                r.handle = Some(h.trim().parse().map_err(|_| format!("bad handle {h:?}"))?);
            }
            r.into()
        }
        k => return Err(format!("unknown object {k:?}")),
    };
    Ok((family, table, Op { verb, object }))
}

/// The error for a property of a declaration that [`Transaction`] does
/// not hold (knftables writes no other for kube-proxy): refused rather
/// than dropped, so that what is read is what is applied.
fn unsupported(kind: &str, property: &str, known: &str) -> String {
    format!(
        "{kind} property {} is not supported ({known})",
        crate::excerpt::excerpt(property)
    )
}

/// The chain types nft knows.
const CHAIN_TYPES: [&str; 3] = ["filter", "nat", "route"];

/// The hooks of the `ip`, `ip6` and `inet` families.
const HOOKS: [&str; 6] = [
    "prerouting",
    "input",
    "forward",
    "output",
    "postrouting",
    "ingress",
];

/// A base chain's `type T hook H priority P` (the value after `type`),
/// exactly in that order, as knftables writes it and nft requires it.
fn base_chain(family: &str, value: &str) -> Result<BaseChain, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let (chain_type, hook, priority) = match words.as_slice() {
        [t, "hook", h, "priority", p @ ..] if !p.is_empty() => (t, h, p),
        _ => {
            return Err(format!(
                "a base chain is {{ type TYPE hook HOOK priority PRIORITY ; }}, got type {}",
                crate::excerpt::excerpt(value)
            ));
        }
    };
    if !CHAIN_TYPES.contains(chain_type) {
        return Err(format!(
            "unknown chain type {} ({})",
            crate::excerpt::excerpt(chain_type),
            CHAIN_TYPES.join(", ")
        ));
    }
    if !HOOKS.contains(hook) {
        return Err(format!(
            "unknown hook {} ({})",
            crate::excerpt::excerpt(hook),
            HOOKS.join(", ")
        ));
    }
    let p = priority.join(" ");
    let priority = priority_value(family, &p)
        .ok_or_else(|| format!("unknown priority {}", crate::excerpt::excerpt(&p)))?;
    Ok(BaseChain {
        chain_type: chain_type.to_string(),
        hook: hook.to_string(),
        priority,
    })
}

/// An element body split at its ` : ` outside quotes.
fn split_value(body: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let bytes = body.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
            b':' if !quoted && i > 0 && bytes[i - 1] == b' ' && bytes.get(i + 1) == Some(&b' ') => {
                return Some((body[..i].trim_end(), body[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_read_go_escapes_back() {
        let line = "add table ip t { comment \"a\\x00b\\\"c\\u00e9\" ; }";
        let txs = parse_script(line).expect("parses");
        let rendered: String = txs.iter().map(|t| t.render()).collect();
        assert_eq!(parse_script(&rendered).expect("re-parses"), txs);
        assert!(parse_script("add table ip t { comment \"\\xZZ\" ; }").is_err());
    }

    #[test]
    fn a_set_or_map_added_without_its_type_is_refused() {
        for line in [
            "add map ip kube-proxy firewall-ips",
            "add set ip kube-proxy cluster-ips",
            "add map ip kube-proxy m { type ipv4_addr ; }",
        ] {
            let e = parse_script(line).unwrap_err();
            assert!(e.to_string().contains("needs { type KEY"), "{line}: {e}");
        }
        assert!(parse_script("delete set ip kube-proxy cluster-ips").is_ok());
        assert!(parse_script("add set ip kube-proxy s { type ipv4_addr ; }").is_ok());
    }

    #[test]
    fn every_knftables_line_form_round_trips() {
        let text = "add table ip kp { comment \"rules\" ; }\n\
            add chain ip kp a { type nat hook output priority -100 ; comment \"x ; y\" ; }\n\
            add chain ip kp h { comment \"helper\" ; }\n\
            flush chain ip kp a\n\
            delete chain ip kp b\n\
            add set ip kp s { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n\
            add map ip kp m { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vm\" ; }\n\
            flush map ip kp m\n\
            delete set ip kp s\n\
            add element ip kp m { 1.2.3.4 . tcp . 80 comment \"ns/svc:p\" : goto a }\n\
            add element ip kp s { 10.0.0.1 }\n\
            delete element ip kp m { 1.2.3.4 . tcp . 80 }\n\
            add rule ip kp a ip daddr { 1.0.0.0/8,2.0.0.0/8 } drop comment \"a \\\"q\\\" comment \\\"x\\\"\"\n\
            add rule ip kp a numgen random mod 2 vmap { 0 : goto a , 1 : goto h }\n\
            delete rule ip kp a handle 7\n";
        let txs = parse_script(text).expect("parses");
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].render(), text);
        let Object::Rule(r) = &txs[0].ops[12].object else {
            panic!("a rule");
        };
        assert_eq!(r.comment.as_deref(), Some("a \"q\" comment \"x\""));
        let Object::Element(e) = &txs[0].ops[9].object else {
            panic!("an element");
        };
        assert_eq!(e.value, ["goto a"]);
    }

    #[test]
    fn a_base_chain_is_type_hook_priority_in_that_order() {
        let chain = |body: &str| parse_script(&format!("add chain ip t c {{ {body} ; }}"));
        for (body, says) in [
            // The fuzz finding: a chain type `hook` read the second `hook`
            // as the hook, and rendered `type hook hook hook`.
            (
                "type hook hook forward priority 0",
                "unknown chain type \"hook\"",
            ),
            ("type filter hook hook priority 0", "unknown hook \"hook\""),
            ("type filte\0 hook input priority 0", "unknown chain type"),
            ("type filter hook input", "a base chain is"),
            ("type filter priority 0 hook input", "a base chain is"),
            ("type filter", "a base chain is"),
            ("type filter hook input priority", "a base chain is"),
            (
                "type filter hook input priority sideways",
                "unknown priority",
            ),
            ("policy drop", "chain property \"policy\" is not supported"),
            ("C\0 type nat hook output priority -100", "chain property"),
        ] {
            let e = chain(body).expect_err(body);
            assert!(e.message.contains(says), "{body}: {e}");
            assert_eq!(e.line, 1);
        }
        let txs = chain("type nat hook output priority dstnat").expect("parses");
        let Object::Chain(c) = &txs[0].ops[0].object else {
            panic!("a chain");
        };
        assert_eq!(
            c.base,
            Some(BaseChain {
                chain_type: "nat".into(),
                hook: "output".into(),
                priority: -100
            })
        );
        for bad in [
            "add table ip t { flags dormant ; }",
            "add set ip t s { type ipv4_addr ; size 10 ; }",
            "add map ip t m { type ipv4_addr : verdict ; policy memory ; }",
        ] {
            let e = parse_script(bad).expect_err(bad);
            assert!(e.message.contains("is not supported"), "{bad}: {e}");
        }
    }

    #[test]
    fn named_priorities_and_errors() {
        let txs = parse_script(
            "add chain ip6 t c { type filter hook prerouting priority dstnat - 10 ; }\n",
        )
        .expect("parses");
        let Object::Chain(c) = &txs[0].ops[0].object else {
            panic!("a chain");
        };
        assert_eq!(c.base.as_ref().map(|b| b.priority), Some(-110));
        for bad in [
            "insert rule ip t c accept",
            "add rule arp t c accept",
            "add widget ip t x",
            "add element ip t s 1.2.3.4",
            "add table ip t { comment \"open ; }",
        ] {
            let e = parse_script(&format!("\n{bad}\n")).expect_err(bad);
            assert_eq!(e.line, 2, "{bad}");
        }
    }
}

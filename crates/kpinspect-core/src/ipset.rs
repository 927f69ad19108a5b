//! The `ipset` tool's texts, for any program's sets: `ipset save` (and the
//! `ipset restore` lines it is made of) and `ipset list`. Members are kept
//! as written (`10.96.0.1,tcp:443`, with any options such as `comment "x"`
//! or `timeout 10`); two members are the same when their first word is.
//! Set types and `create` options are not validated, nor the options of a
//! save's `add` lines; a listing's member options are
//! ([`check_member_options`]). kube-proxy's sets with typed
//! members are [`crate::mode::ipvs::IpSet`].

/// A line the text cannot hold, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error in line {line}: {message}")]
pub struct IpSetError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong, in ipset's words where it has some.
    pub message: String,
}

/// One set as the tool prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetText {
    /// Its name.
    pub name: String,
    /// Its type, e.g. `hash:ip,port`.
    pub set_type: String,
    /// The rest of its `create` line (`family inet hashsize 1024 ...`; the
    /// `Header:` of `ipset list`).
    pub options: String,
    /// Its members in the order they were added (listed), each as written
    /// after the set name on its `add` line.
    pub members: Vec<String>,
}

impl SetText {
    /// Whether `entry` (the first word of a member) is in the set.
    pub fn contains(&self, entry: &str) -> bool {
        self.members.iter().any(|m| first_word(m).0 == entry)
    }
}

/// The first word of `s` and the rest, trimmed.
pub fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// One `ipset restore` line split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreLine<'a> {
    /// Its words without `-exist`: the command, the set name, ...
    pub words: Vec<&'a str>,
    /// The text after the command and the set name (a member with its
    /// options, or a type with its options), with its spacing (quoted
    /// comments) unless `-exist` had to be cut out.
    pub rest: String,
    /// Whether the line carries `-exist` (`--exist`, `-!`).
    pub exist: bool,
}

/// Splits an `ipset restore` line; `None` for blank lines and comments.
///
/// ```
/// let l = kpinspect_core::ipset::restore_line("add S 1.2.3.4 -exist").unwrap();
/// assert_eq!((l.words, l.rest.as_str(), l.exist), (vec!["add", "S", "1.2.3.4"], "1.2.3.4", true));
/// ```
pub fn restore_line(raw: &str) -> Option<RestoreLine<'_>> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let is_exist = |w: &&str| matches!(*w, "-exist" | "--exist" | "-!");
    let words: Vec<&str> = line.split_whitespace().filter(|w| !is_exist(w)).collect();
    let (_, rest) = first_word(line);
    let (_, rest) = first_word(rest);
    let exist = line.split_whitespace().any(|w| is_exist(&w));
    let rest = if exist {
        rest.split_whitespace()
            .filter(|w| !is_exist(w))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        rest.to_string()
    };
    Some(RestoreLine { words, rest, exist })
}

/// Reads `ipset save` output: `create` and `add` lines (`-exist` allowed).
///
/// ```
/// let text = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
///             add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n";
/// let sets = kpinspect_core::ipset::parse_save(text).unwrap();
/// assert!(sets[0].contains("10.96.0.1,tcp:443"));
/// assert_eq!(kpinspect_core::ipset::render_save(&sets), text);
/// ```
pub fn parse_save(text: &str) -> Result<Vec<SetText>, IpSetError> {
    let mut sets: Vec<SetText> = Vec::new();
    // Per set, where each member (its first word) is in `members`: a
    // lookup per `add` (a large node's sets hold tens of thousands).
    let mut index: Vec<std::collections::HashMap<String, usize>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let Some(l) = restore_line(raw) else {
            continue;
        };
        let err = |message: &str| IpSetError {
            line: i + 1,
            message: message.to_string(),
        };
        match l.words.as_slice() {
            ["create" | "n" | "-N" | "--create", name, set_type, ..] => {
                if sets.iter().any(|s| s.name == *name) {
                    if l.exist {
                        continue;
                    }
                    return Err(err(
                        "Set cannot be created: set with the same name already exists",
                    ));
                }
                sets.push(SetText {
                    name: name.to_string(),
                    set_type: set_type.to_string(),
                    options: first_word(&l.rest).1.to_string(),
                    members: Vec::new(),
                });
                index.push(std::collections::HashMap::new());
            }
            ["add" | "a" | "-A" | "--add", name, member, ..] => {
                let at = sets
                    .iter()
                    .position(|s| s.name == *name)
                    .ok_or_else(|| err("The set with the given name does not exist"))?;
                let (set, members) = (&mut sets[at], &mut index[at]);
                match members.get(*member) {
                    Some(_) if !l.exist => {
                        return Err(err(
                            "Element cannot be added to the set: it's already added",
                        ));
                    }
                    Some(&at) => set.members[at] = l.rest,
                    None => {
                        let key = first_word(&l.rest).0.to_string();
                        members.entry(key).or_insert(set.members.len());
                        set.members.push(l.rest);
                    }
                }
            }
            [
                cmd @ ("create" | "n" | "-N" | "--create" | "add" | "a" | "-A" | "--add"),
                ..,
            ] => {
                return Err(err(&format!("missing argument to {cmd}")));
            }
            [other, ..] => {
                return Err(err(&format!(
                    "{} is not a line of ipset save (create, add)",
                    crate::excerpt::excerpt(other)
                )));
            }
            [] => {}
        }
    }
    Ok(sets)
}

/// The fields `ipset list` prints before a set's members.
const LIST_FIELDS: [&str; 9] = [
    "Name",
    "Type",
    "Revision",
    "Header",
    "Size in memory",
    "References",
    "Referenced by",
    "Number of entries",
    "Members",
];

/// The options `ipset list` prints after a member's element (the
/// extensions among ipset's `add` arguments, in its `lib/args.c`
/// spelling), and whether each takes a value.
pub const MEMBER_OPTIONS: [(&str, bool); 9] = [
    ("timeout", true),
    ("nomatch", false),
    ("wildcard", false),
    ("packets", true),
    ("bytes", true),
    ("comment", true),
    ("skbmark", true),
    ("skbprio", true),
    ("skbqueue", true),
];

/// Checks the options after a listed member's element (`timeout 10
/// packets 0 bytes 0 comment "x y"`): each one of [`MEMBER_OPTIONS`], at
/// most once, with its value where it takes one — decimal for the
/// counters, timeout and skbqueue, `0xMARK[/0xMASK]` for skbmark,
/// `MAJOR:MINOR` (hex) for skbprio, a double-quoted text for comment.
/// The error says what is wrong, in words.
///
/// ```
/// use kpinspect_core::ipset::check_member_options;
/// assert!(check_member_options("timeout 10 comment \"a b\" nomatch").is_ok());
/// assert!(check_member_options("of entries: 7").is_err());
/// assert!(check_member_options("timeout").is_err());
/// ```
pub fn check_member_options(options: &str) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = options.trim();
    while !rest.is_empty() {
        let (word, after) = first_word(rest);
        let Some(&(name, takes_value)) = MEMBER_OPTIONS.iter().find(|(n, _)| *n == word) else {
            let known: Vec<&str> = MEMBER_OPTIONS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{} is not a member option ({})",
                crate::excerpt::excerpt(word),
                known.join(", ")
            ));
        };
        if seen.contains(&name) {
            return Err(format!("{name} given twice"));
        }
        seen.push(name);
        rest = after;
        if !takes_value {
            continue;
        }
        let (value, after) = if name == "comment" {
            quoted(rest).ok_or("comment without its double-quoted text")?
        } else {
            first_word(rest)
        };
        if value.is_empty() {
            return Err(format!("{name} without its value"));
        }
        let hex = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_hexdigit())
        };
        let ok = match name {
            "comment" => true,
            "skbmark" => {
                let mut parts = value.split('/');
                parts
                    .next()
                    .is_some_and(|m| m.strip_prefix("0x").is_some_and(|m| hex(m, 8)))
                    && parts
                        .next()
                        .is_none_or(|m| m.strip_prefix("0x").is_some_and(|m| hex(m, 8)))
                    && parts.next().is_none()
            }
            "skbprio" => value
                .split_once(':')
                .is_some_and(|(a, b)| hex(a, 4) && hex(b, 4)),
            _ => {
                value.len() <= 20
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && value.parse::<u64>().is_ok()
            }
        };
        if !ok {
            return Err(format!(
                "bad {name} value {}",
                crate::excerpt::excerpt(value)
            ));
        }
        rest = after;
    }
    Ok(())
}

/// A double-quoted text at the start of `s` (quotes included) and the
/// rest; `None` unless it is closed and followed by a space or the end.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let end = body.find('"')? + 2;
    let (value, after) = s.split_at(end);
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        return None;
    }
    Some((value, after.trim_start()))
}

/// Reads `ipset list` output (`Name:`, `Type:`, `Header:`, ...,
/// `Members:` then one member a line; blank lines between sets). A
/// member's element is kept as written; after it only the options ipset
/// prints are taken ([`check_member_options`]), and a line reading as one
/// of the listing's fields among the members is refused.
///
/// ```
/// let text = "Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nRevision: 3\n\
///             Header: range 0-65535\nSize in memory: 8264\nReferences: 1\n\
///             Number of entries: 1\nMembers:\n30080\n";
/// let sets = kpinspect_core::ipset::parse_list(text).unwrap();
/// assert_eq!((sets[0].set_type.as_str(), sets[0].members[0].as_str()), ("bitmap:port", "30080"));
/// ```
pub fn parse_list(text: &str) -> Result<Vec<SetText>, IpSetError> {
    let mut sets: Vec<SetText> = Vec::new();
    // The line of each set's `Name:`.
    let mut name_lines: Vec<usize> = Vec::new();
    let mut in_members = false;
    // The members of the current set, to refuse one listed twice.
    let mut members_seen: std::collections::HashSet<String> = Default::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: &str| IpSetError {
            line: i + 1,
            message: message.to_string(),
        };
        if line.is_empty() {
            in_members = false;
            continue;
        }
        if let Some(name) = line.strip_prefix("Name:") {
            in_members = false;
            // A set's name is one word of at most 31 bytes (IPSET_MAXNAMELEN).
            let n = name.trim();
            // None starts with `-`: `ipset restore` would read the save's
            // `create -exist ...` as a flag.
            if n.is_empty()
                || n.len() > 31
                || n.starts_with('-')
                || n.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err(&format!("bad set name {}", crate::excerpt::excerpt(n))));
            }
            // ipset names each set once; as `ipset restore` would refuse
            // the save of this listing, so does the parser.
            if sets.iter().any(|s| s.name == name.trim()) {
                return Err(err(&format!(
                    "set {} listed twice",
                    crate::excerpt::excerpt(name.trim())
                )));
            }
            name_lines.push(i + 1);
            members_seen.clear();
            sets.push(SetText {
                name: name.trim().to_string(),
                set_type: String::new(),
                options: String::new(),
                members: Vec::new(),
            });
            continue;
        }
        let set = sets
            .last_mut()
            .ok_or_else(|| err("a line before the first set's Name:"))?;
        if in_members {
            // A field of the listing among the members: the blank line
            // ending the members is missing (or the text was cut up).
            if let Some(field) = LIST_FIELDS.iter().find(|f| {
                line.strip_prefix(**f)
                    .is_some_and(|rest| rest.starts_with(':'))
            }) {
                return Err(err(&format!(
                    "{field}: among the members of set {} (a blank line ends a set's members)",
                    crate::excerpt::excerpt(&set.name)
                )));
            }
            // A member is words of printable text (`10.0.0.1,tcp:80`,
            // then options such as `timeout 10` or `nomatch`); none starts
            // with `-`, which `ipset restore` would read as a flag.
            if line.chars().any(char::is_control)
                || line.split_whitespace().any(|w| w.starts_with('-'))
            {
                return Err(err(&format!(
                    "bad member {} in set {}",
                    crate::excerpt::excerpt(line),
                    crate::excerpt::excerpt(&set.name)
                )));
            }
            // After the element, only the options ipset prints.
            if let Err(why) = check_member_options(first_word(line).1) {
                return Err(err(&format!(
                    "bad member {} in set {}: {why}",
                    crate::excerpt::excerpt(line),
                    crate::excerpt::excerpt(&set.name)
                )));
            }
            // As in a save, an element (the member's first word) is
            // listed once.
            if !members_seen.insert(first_word(line).0.to_string()) {
                return Err(err(&format!(
                    "member {} listed twice in set {}",
                    crate::excerpt::excerpt(line),
                    crate::excerpt::excerpt(&set.name)
                )));
            }
            set.members.push(line.to_string());
        } else if let Some((key, value)) = line.split_once(':') {
            let value = value.trim();
            match key {
                "Type" => {
                    // One word (`hash:ip,port`), as ipset prints it; not
                    // a flag to `ipset restore` (`create S -exist ...`).
                    if value.is_empty()
                        || value.starts_with('-')
                        || value.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(err(&format!(
                            "bad set type {}",
                            crate::excerpt::excerpt(value)
                        )));
                    }
                    set.set_type = value.to_string()
                }
                "Header" => {
                    // Words of printable text (`family inet hashsize 1024
                    // ...`); none starts with `-` (a flag to `ipset restore`).
                    if value.chars().any(char::is_control)
                        || value.split_whitespace().any(|w| w.starts_with('-'))
                    {
                        return Err(err(&format!(
                            "bad header {} of set {}",
                            crate::excerpt::excerpt(value),
                            crate::excerpt::excerpt(&set.name)
                        )));
                    }
                    set.options = value.to_string()
                }
                "Members" => in_members = true,
                f if LIST_FIELDS.contains(&f) => {}
                _ => {
                    return Err(err(&format!(
                        "unknown field {} of ipset list",
                        crate::excerpt::excerpt(key)
                    )));
                }
            }
        } else {
            return Err(err("not a line of ipset list"));
        }
    }
    if let Some((set, line)) = sets
        .iter()
        .zip(name_lines)
        .find(|(s, _)| s.set_type.is_empty())
    {
        return Err(IpSetError {
            line,
            message: format!("set {} has no Type:", set.name),
        });
    }
    Ok(sets)
}

/// Reads `ipset list` or `ipset save` output, whichever `text` is (the
/// listing starts with `Name:`).
pub fn parse(text: &str) -> Result<Vec<SetText>, IpSetError> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    if first.is_some_and(|l| l.starts_with("Name:")) {
        parse_list(text)
    } else {
        parse_save(text)
    }
}

/// The sets as `ipset save` prints them.
pub fn render_save(sets: &[SetText]) -> String {
    let mut out = String::new();
    for s in sets {
        out.push_str("create ");
        out.push_str(&s.name);
        out.push(' ');
        out.push_str(&s.set_type);
        if !s.options.is_empty() {
            out.push(' ');
            out.push_str(&s.options);
        }
        out.push('\n');
        for m in &s.members {
            out.push_str("add ");
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_set_listed_twice_is_refused() {
        let set = "Name: A\nType: hash:ip\nHeader: family inet\nMembers:\n";
        let e = super::parse_list(&format!("{set}\n{set}")).unwrap_err();
        assert_eq!(e.line, 6);
        assert!(e.message.contains("listed twice"), "{e}");
        assert!(super::parse_list(set).is_ok());
    }

    use super::*;

    #[test]
    fn listed_member_options_are_ipsets() {
        let text = "Name: S\nType: hash:net,iface\nHeader: family inet counters comment skbinfo\n\
                    Members:\n\
                    10.0.0.0/8,eth0 timeout 10 packets 3 bytes 180 comment \"a -b c\" skbmark 0x1/0xff skbprio 1:2 skbqueue 3\n\
                    10.1.0.0/16,eth1 nomatch wildcard\n\
                    10.2.0.0/16,eth1 comment \"x\"\n";
        // A quoted comment's word starting with `-` is still refused (as
        // `-exist` it would be a flag to `ipset restore`).
        assert!(parse_list(text).is_err());
        let text = text.replace("a -b c", "a b c");
        let sets = parse_list(&text).expect("listing");
        assert_eq!(sets[0].members.len(), 3);
        assert_eq!(
            sets[0].members[0],
            "10.0.0.0/8,eth0 timeout 10 packets 3 bytes 180 comment \"a b c\" skbmark 0x1/0xff skbprio 1:2 skbqueue 3"
        );
        let save = render_save(&sets);
        assert_eq!(parse(&save).expect("save"), sets);
    }

    #[test]
    fn member_lines_with_other_words_are_refused_naming_the_line() {
        let head = "Name: S\nType: hash:ip,port\nHeader: family inet\nMembers:\n10.0.0.1,tcp:80\n";
        for (member, says) in [
            ("References: 2", "References: among the members"),
            ("Members:", "Members: among the members"),
            ("Number of entries: 7", "Number of entries: among"),
            ("Size in memory: 648", "Size in memory: among"),
            (
                "10.244.0: family inet hashsize 1024",
                "\"family\" is not a member option",
            ),
            ("10.0.0.2,tcp:80 timeout", "timeout without its value"),
            ("10.0.0.2,tcp:80 timeout 1x", "bad timeout value"),
            ("10.0.0.2,tcp:80 timeout 1 timeout 2", "timeout given twice"),
            ("10.0.0.2,tcp:80 comment x", "double-quoted"),
            ("10.0.0.2,tcp:80 comment \"x", "double-quoted"),
            ("10.0.0.2,tcp:80 comment \"x\"y", "double-quoted"),
            ("10.0.0.2,tcp:80 skbmark 1", "bad skbmark value"),
            ("10.0.0.2,tcp:80 skbprio 1", "bad skbprio value"),
            (
                "10.0.0.2,tcp:80 before X",
                "\"before\" is not a member option",
            ),
        ] {
            let e = parse_list(&format!("{head}{member}\n")).unwrap_err();
            assert_eq!(e.line, 6, "{member}: {e}");
            assert!(e.message.contains(says), "{member}: {e}");
            assert!(e.to_string().starts_with("Error in line 6: "), "{e}");
        }
        assert!(parse_list(head).is_ok());
    }

    #[test]
    fn names_and_types_that_read_as_flags_are_refused() {
        for text in [
            "Name: S\nType: --exist\nMembers:\n",
            "Name: -exist\nType: hash:ip\nMembers:\n",
        ] {
            assert!(parse_list(text).is_err(), "{text:?}");
        }
    }

    const LIST: &str = "Name: KUBE-CLUSTER-IP
Type: hash:ip,port
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2c1d2f6b
Size in memory: 440
References: 2
Number of entries: 2
Members:
10.96.0.10,udp:53
10.96.0.1,tcp:443

Name: KUBE-NODE-PORT-TCP
Type: bitmap:port
Revision: 3
Header: range 0-65535
Size in memory: 8264
References: 0
Number of entries: 0
Members:
";

    #[test]
    fn the_listing_is_the_save() {
        let sets = parse(LIST).expect("list");
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].members, ["10.96.0.10,udp:53", "10.96.0.1,tcp:443"]);
        assert!(sets[1].members.is_empty());
        let save = render_save(&sets);
        assert_eq!(parse(&save).expect("save"), sets);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("create S hash:ip\nadd T 1.2.3.4\n", 2),
            ("create S hash:ip\ncreate S hash:ip\n", 2),
            ("\nflush S\n", 2),
            ("create S\n", 1),
            ("Name: S\nType: hash:ip\nBogus: 1\n", 3),
            ("Name: S\nType: hash:ip\n\nName: T\nMembers:\n", 4),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}

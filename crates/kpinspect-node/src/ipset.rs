//! A small model of the kernel's ipsets, as `ipset save` prints them and
//! `ipset restore` changes them — enough for an in-memory node. The text
//! (sets, lines, `ipset save`) is the core's [`kpinspect_core::ipset`];
//! this applies its commands.

pub use kpinspect_core::ipset::{IpSetError, SetText as IpSet};
use kpinspect_core::ipset::{first_word, restore_line};

/// All sets of a node, in creation order (the order `ipset save` prints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSetState {
    /// The sets.
    pub sets: Vec<IpSet>,
}

const NO_SET: &str = "The set with the given name does not exist";

impl IpSetState {
    /// Parses `ipset save` output.
    ///
    /// ```
    /// use kpinspect_node::IpSetState;
    /// let text = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
    ///             add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n";
    /// let sets = IpSetState::parse(text).unwrap();
    /// assert!(sets.set("KUBE-CLUSTER-IP").unwrap().contains("10.96.0.1,tcp:443"));
    /// assert_eq!(sets.render(), text);
    /// ```
    pub fn parse(save: &str) -> Result<IpSetState, IpSetError> {
        Ok(IpSetState {
            sets: kpinspect_core::ipset::parse_save(save)?,
        })
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&IpSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.sets
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| NO_SET.to_string())
    }

    /// Applies `ipset restore` input line by line, as the kernel does: the
    /// lines before a failing one stay applied. `-exist` on any line makes
    /// the rest of the input ignore "already exists" / "not added" errors,
    /// as ipset does. `in_use(name)` says whether a firewall rule still
    /// references a set, which makes destroying it fail.
    ///
    /// Commands: `create`, `add`, `del`, `flush [SET]`, `destroy [SET]`,
    /// `rename`, `swap` (and their one-letter and `-N`-style aliases).
    pub fn restore(
        &mut self,
        payload: &str,
        in_use: impl Fn(&str) -> bool,
    ) -> Result<(), IpSetError> {
        let mut exist = false;
        for (i, raw) in payload.lines().enumerate() {
            let Some(line) = restore_line(raw) else {
                continue;
            };
            exist |= line.exist;
            self.apply(&line.words, &line.rest, exist, &in_use)
                .map_err(|message| IpSetError {
                    line: i + 1,
                    message,
                })?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        words: &[&str],
        rest: &str,
        exist: bool,
        in_use: &impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let (cmd, args) = words.split_first().ok_or("empty line")?;
        let need = |n: usize| {
            if args.len() < n {
                Err(format!("missing argument to {cmd}"))
            } else {
                Ok(())
            }
        };
        match *cmd {
            "create" | "n" | "-N" | "--create" => {
                need(2)?;
                if self.set(args[0]).is_some() {
                    return if exist {
                        Ok(())
                    } else {
                        Err("Set cannot be created: set with the same name already exists".into())
                    };
                }
                let (_, options) = first_word(rest);
                self.sets.push(IpSet {
                    name: args[0].into(),
                    set_type: args[1].into(),
                    options: options.into(),
                    members: Vec::new(),
                });
                Ok(())
            }
            "add" | "a" | "-A" | "--add" => {
                need(2)?;
                let i = self.index(args[0])?;
                let set = &mut self.sets[i];
                match set.members.iter().position(|m| first_word(m).0 == args[1]) {
                    Some(_) if !exist => {
                        Err("Element cannot be added to the set: it's already added".into())
                    }
                    Some(at) => {
                        set.members[at] = rest.into();
                        Ok(())
                    }
                    None => {
                        set.members.push(rest.into());
                        Ok(())
                    }
                }
            }
            "del" | "d" | "-D" | "--del" => {
                need(2)?;
                let i = self.index(args[0])?;
                let set = &mut self.sets[i];
                match set.members.iter().position(|m| first_word(m).0 == args[1]) {
                    Some(at) => {
                        set.members.remove(at);
                        Ok(())
                    }
                    None if exist => Ok(()),
                    None => Err("Element cannot be deleted from the set: it's not added".into()),
                }
            }
            "flush" | "f" | "-F" | "--flush" => {
                match args.first() {
                    Some(name) => {
                        let i = self.index(name)?;
                        self.sets[i].members.clear();
                    }
                    None => self.sets.iter_mut().for_each(|s| s.members.clear()),
                }
                Ok(())
            }
            "destroy" | "x" | "-X" | "--destroy" => {
                let in_use_err =
                    || "Set cannot be destroyed: it is in use by a kernel component".to_string();
                match args.first() {
                    Some(name) => {
                        let i = self.index(name)?;
                        if in_use(name) {
                            return Err(in_use_err());
                        }
                        self.sets.remove(i);
                    }
                    None => {
                        if self.sets.iter().any(|s| in_use(&s.name)) {
                            return Err(in_use_err());
                        }
                        self.sets.clear();
                    }
                }
                Ok(())
            }
            "rename" | "e" | "-E" | "--rename" => {
                need(2)?;
                let i = self.index(args[0])?;
                if self.set(args[1]).is_some() {
                    return Err(
                        "Set cannot be renamed: a set with the new name already exists".into(),
                    );
                }
                self.sets[i].name = args[1].into();
                Ok(())
            }
            "swap" | "w" | "-W" | "--swap" => {
                need(2)?;
                let (a, b) = (self.index(args[0])?, self.index(args[1])?);
                if self.sets[a].set_type != self.sets[b].set_type {
                    return Err("The sets cannot be swapped: their type does not match".into());
                }
                let (na, nb) = (self.sets[a].name.clone(), self.sets[b].name.clone());
                self.sets.swap(a, b);
                self.sets[a].name = na;
                self.sets[b].name = nb;
                Ok(())
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    /// The sets as `ipset save` prints them.
    pub fn render(&self) -> String {
        kpinspect_core::ipset::render_save(&self.sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
        add KUBE-CLUSTER-IP 10.96.0.10,udp:53\n\
        add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n\
        create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536 comment\n\
        add KUBE-LOOP-BACK 10.0.0.5,tcp:80,10.0.0.5 comment \"a  b\"\n\
        create BM bitmap:port range 0-65535\n";

    fn state() -> IpSetState {
        IpSetState::parse(SAVE).expect("parse")
    }

    #[test]
    fn parses_and_renders_back() {
        let s = state();
        assert_eq!(s.sets.len(), 3);
        let lb = s.set("KUBE-LOOP-BACK").expect("set");
        assert_eq!(lb.set_type, "hash:ip,port,ip");
        assert!(lb.contains("10.0.0.5,tcp:80,10.0.0.5"));
        assert_eq!(s.render(), SAVE);
    }

    #[test]
    fn commands() {
        let mut s = state();
        s.restore(
            "flush KUBE-CLUSTER-IP\nadd KUBE-CLUSTER-IP 1.2.3.4,tcp:1\ndel KUBE-CLUSTER-IP 1.2.3.4,tcp:1\n\
             add KUBE-CLUSTER-IP 5.6.7.8,tcp:2\ncreate NEW hash:ip\nrename NEW NEWER\ndestroy BM\n",
            |_| false,
        )
        .expect("restore");
        assert_eq!(
            s.set("KUBE-CLUSTER-IP").expect("set").members,
            ["5.6.7.8,tcp:2"]
        );
        assert!(s.set("NEWER").is_some() && s.set("NEW").is_none() && s.set("BM").is_none());
        s.restore(
            "create T hash:ip,port\nadd T 9.9.9.9,tcp:9\nswap T KUBE-CLUSTER-IP\n",
            |_| false,
        )
        .expect("swap");
        assert!(s.set("T").expect("T").contains("5.6.7.8,tcp:2"));
        assert!(
            s.set("KUBE-CLUSTER-IP")
                .expect("set")
                .contains("9.9.9.9,tcp:9")
        );
        s.restore("destroy\n", |_| false).expect("destroy all");
        assert!(s.sets.is_empty());
    }

    #[test]
    fn errors_stop_at_their_line_and_keep_what_came_before() {
        let mut s = state();
        let e = s
            .restore(
                "flush KUBE-CLUSTER-IP\nadd KUBE-CLUSTER-IP 1.2.3.4,tcp:1\nadd NOPE 1.2.3.4\nadd KUBE-CLUSTER-IP 5.5.5.5,tcp:5\n",
                |_| false,
            )
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.message, NO_SET);
        assert_eq!(
            s.set("KUBE-CLUSTER-IP").expect("set").members,
            ["1.2.3.4,tcp:1"]
        );

        for (payload, line) in [
            ("destroy NOPE\n", 1),
            ("\ncreate BM bitmap:port range 0-65535\n", 2),
            ("add BM 80\nadd BM 80\n", 2),
            ("del BM 81\n", 1),
            ("flush NOPE\n", 1),
            ("swap BM KUBE-CLUSTER-IP\n", 1),
            ("rename BM KUBE-LOOP-BACK\n", 1),
            ("bogus\n", 1),
            ("add BM\n", 1),
        ] {
            let e = state().restore(payload, |_| false).unwrap_err();
            assert_eq!(e.line, line, "{payload:?}: {e}");
        }
    }

    #[test]
    fn exist_is_sticky() {
        let mut s = state();
        s.restore(
            "add BM 80 -exist\nadd BM 80\ndel BM 81\ncreate BM bitmap:port range 0-65535\n",
            |_| false,
        )
        .expect("-exist");
        assert_eq!(s.set("BM").expect("BM").members, ["80"]);
    }

    #[test]
    fn sets_in_use_cannot_be_destroyed() {
        let mut s = state();
        let used = |name: &str| name == "KUBE-LOOP-BACK";
        assert_eq!(
            s.restore("destroy KUBE-LOOP-BACK\n", used)
                .unwrap_err()
                .line,
            1
        );
        assert_eq!(s.restore("destroy\n", used).unwrap_err().line, 1);
        assert_eq!(s, state());
        s.restore("destroy BM\n", used).expect("unused");
    }
}

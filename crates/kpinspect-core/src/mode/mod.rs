//! kube-proxy's proxy modes, one module each with the same face:
//!
//! | | [`iptables`] | [`ipvs`] | [`nftables`] |
//! |---|---|---|---|
//! | compile | [`iptables::compile`] | [`ipvs::compile`] | [`nftables::compile`] |
//! | view | [`iptables::dump()`] | (issue 11) | |
//! | the tools' text | `iptables-restore` | [`ipvs::ipvsadm_save`], [`ipvs::ipset_save`], [`ipvs::address_lines`], `iptables-restore` | `nft -f` ([`nftables::Compiled::render`]) |
//! | what it owns | [`iptables::PROFILE`] | [`ipvs::PROFILE`] | [`nftables::PROFILE`] |
//! | jump rules | [`iptables::JUMP_RULES`] | [`ipvs::JUMP_RULES`] | none |
//!
//! A [`Profile`] is what the mode-independent code (plan, cleanup, trace)
//! needs to know of a mode: the iptables chains it creates, the per-service
//! chain prefixes it deletes when stale, the jump rules it inserts into the
//! built-in chains and the ipsets it creates. [`chain_owner`] and
//! [`jump_owner`] answer "whose is this?" from the profiles alone, so each
//! fact is written once.

pub mod iptables;
pub mod ipvs;
pub mod nftables;
mod owner;

pub use crate::config::ProxyMode;
pub use owner::{
    KUBELET_CHAINS, Modes, Owner, chain_owner, foreign_state, ipset_owner, jump_owner, rule_owner,
};

use crate::netfilter::{LineBuffer, Rule, wln};

/// The masquerade rules iptables and IPVS mode both write, word for word:
/// nat KUBE-POSTROUTING returns unless the packet is marked, unmarks it and
/// masquerades it; KUBE-MARK-MASQ marks.
pub(crate) fn write_masquerade_rules(nr: &mut LineBuffer, mark: &str, random_fully: bool) {
    wln!(
        nr,
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    wln!(nr, "-A KUBE-POSTROUTING -j MARK --xor-mark {mark}");
    wln!(
        nr,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{}",
        if random_fully { " --random-fully" } else { "" }
    );
    wln!(nr, "-A KUBE-MARK-MASQ -j MARK --or-mark {mark}");
}

/// What one proxy mode creates outside the service-specific rules it
/// compiles: see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The mode.
    pub mode: ProxyMode,
    /// `(table, chain)` of the fixed chains it creates in iptables.
    pub chains: &'static [(&'static str, &'static str)],
    /// Whether `(table, chain)` is one of its per-service chains (of any
    /// generation): the chains it deletes when their service is gone.
    pub service_chain: fn(&str, &str) -> bool,
    /// Whether `(table, chain)` is the one chain that stands for a service
    /// port (iptables mode's `KUBE-SVC-`): what an apply counts to tell a
    /// plan that wipes the node's services.
    pub service_port_chain: fn(&str, &str) -> bool,
    /// Its jump rules from the built-in chains, in the order it ensures them.
    pub jump_rules: &'static [JumpRule],
    /// The ipsets it creates (IPv4 names; see [`ipvs::ipv6_ipset_name`]).
    pub ipsets: &'static [&'static str],
}

impl Profile {
    /// Whether this mode creates `chain` in `table`.
    pub fn owns_chain(&self, table: &str, chain: &str) -> bool {
        self.chains.iter().any(|(t, c)| *t == table && *c == chain)
            || self.is_service_chain(table, chain)
    }

    /// Whether `chain` is one of this mode's per-service chains.
    pub fn is_service_chain(&self, table: &str, chain: &str) -> bool {
        (self.service_chain)(table, chain)
    }

    /// Whether this mode creates ipset `name` (either family's name).
    pub fn owns_ipset(&self, name: &str) -> bool {
        self.ipsets
            .iter()
            .any(|s| *s == name || ipvs::ipv6_ipset_name(s) == name)
    }

    /// The rules of built-in `chain` of `table` on a fresh host after this
    /// mode ensured its jumps (each is inserted at the top, so they are
    /// listed in reverse).
    ///
    /// ```
    /// use kpinspect_core::mode::ProxyMode;
    /// let rules = ProxyMode::Iptables.profile().fresh_builtin_rules("nat", "PREROUTING");
    /// assert_eq!(rules.len(), 1);
    /// assert_eq!(rules[0].target_name(), Some("KUBE-SERVICES"));
    /// ```
    pub fn fresh_builtin_rules(&self, table: &str, chain: &str) -> Vec<Rule> {
        self.jump_rules
            .iter()
            .rev()
            .filter(|j| j.table == table && j.chain == chain)
            .map(JumpRule::rule)
            .collect()
    }
}

impl ProxyMode {
    /// Every mode.
    pub const ALL: [ProxyMode; 3] = [ProxyMode::Iptables, ProxyMode::Ipvs, ProxyMode::Nftables];

    /// What this mode creates.
    pub const fn profile(self) -> &'static Profile {
        match self {
            ProxyMode::Iptables => &iptables::PROFILE,
            ProxyMode::Ipvs => &ipvs::PROFILE,
            ProxyMode::Nftables => &nftables::PROFILE,
        }
    }
}

/// `nat OUTPUT -> KUBE-SERVICES`, the same in iptables and IPVS mode.
pub const NAT_OUTPUT_SERVICES: JumpRule = JumpRule::new(
    "nat",
    "OUTPUT",
    &[],
    "kubernetes service portals",
    "KUBE-SERVICES",
);

/// `nat PREROUTING -> KUBE-SERVICES`, the same in iptables and IPVS mode.
pub const NAT_PREROUTING_SERVICES: JumpRule = JumpRule::new(
    "nat",
    "PREROUTING",
    &[],
    "kubernetes service portals",
    "KUBE-SERVICES",
);

/// `nat POSTROUTING -> KUBE-POSTROUTING`, the same in iptables and IPVS mode.
pub const NAT_POSTROUTING: JumpRule = JumpRule::new(
    "nat",
    "POSTROUTING",
    &[],
    "kubernetes postrouting rules",
    "KUBE-POSTROUTING",
);

/// `filter FORWARD -> KUBE-FORWARD`, the same in iptables and IPVS mode.
pub const FILTER_FORWARD: JumpRule = JumpRule::new(
    "filter",
    "FORWARD",
    &[],
    "kubernetes forwarding rules",
    "KUBE-FORWARD",
);

/// One jump from a built-in chain into a kube-proxy chain, inserted outside
/// the restore input (`iptablesJumpChains` in kube-proxy's proxiers): on
/// every full sync kube-proxy creates the target chain and inserts the rule
/// at the top of its built-in chain unless it is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpRule {
    /// `filter` or `nat`.
    pub table: &'static str,
    /// The built-in chain the rule is inserted into.
    pub chain: &'static str,
    /// Match arguments before the comment.
    pub extra: &'static [&'static str],
    /// The rule's comment, if any.
    pub comment: Option<&'static str>,
    /// The kube-proxy chain it jumps to.
    pub target: &'static str,
    /// Shared with kubelet (`-j KUBE-FIREWALL`): installed by kube-proxy but
    /// never removed by its cleanup.
    pub shared_with_kubelet: bool,
}

impl JumpRule {
    /// A jump with a comment, not shared with kubelet.
    pub(crate) const fn new(
        table: &'static str,
        chain: &'static str,
        extra: &'static [&'static str],
        comment: &'static str,
        target: &'static str,
    ) -> JumpRule {
        JumpRule {
            table,
            chain,
            extra,
            comment: Some(comment),
            target,
            shared_with_kubelet: false,
        }
    }

    /// The rule's arguments after the chain, as kube-proxy passes them
    /// (`-m conntrack --ctstate NEW -m comment --comment TEXT -j TARGET`).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = self.extra.iter().map(|s| s.to_string()).collect();
        if let Some(c) = self.comment {
            args.extend(["-m".into(), "comment".into(), "--comment".into(), c.into()]);
        }
        args.extend(["-j".into(), self.target.into()]);
        args
    }

    /// The rule, parsed.
    pub fn rule(&self) -> Rule {
        let mut args = vec![self.chain.to_string()];
        args.extend(self.args());
        Rule::from_args(&args, None).expect("kube-proxy's jump rules parse")
    }
}

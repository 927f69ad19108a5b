//! The jump rules kube-proxy installs in the built-in chains, outside its
//! iptables-restore input (`iptablesJumpChains` in kube-proxy's proxier):
//! on every full sync it creates the target chain and inserts each rule at
//! the top of its built-in chain unless it is already there.

use super::rule::Rule;

/// One jump from a built-in chain into a kube-proxy chain.
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

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

pub(crate) const fn jump(
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

/// kube-proxy's jump rules, in the order it ensures them. Each is inserted
/// at position 1, so on a fresh host a built-in chain lists them in reverse.
pub const JUMP_RULES: [JumpRule; 14] = [
    jump(
        "filter",
        "INPUT",
        NEW,
        "kubernetes externally-visible service portals",
        "KUBE-EXTERNAL-SERVICES",
    ),
    jump(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes externally-visible service portals",
        "KUBE-EXTERNAL-SERVICES",
    ),
    jump(
        "filter",
        "INPUT",
        &[],
        "kubernetes health check service ports",
        "KUBE-NODEPORTS",
    ),
    jump(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    jump(
        "filter",
        "OUTPUT",
        NEW,
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    jump(
        "filter",
        "FORWARD",
        &[],
        "kubernetes forwarding rules",
        "KUBE-FORWARD",
    ),
    jump(
        "filter",
        "INPUT",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    jump(
        "filter",
        "OUTPUT",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    jump(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    jump(
        "nat",
        "OUTPUT",
        &[],
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    jump(
        "nat",
        "PREROUTING",
        &[],
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    jump(
        "nat",
        "POSTROUTING",
        &[],
        "kubernetes postrouting rules",
        "KUBE-POSTROUTING",
    ),
    JumpRule {
        table: "filter",
        chain: "INPUT",
        extra: &[],
        comment: None,
        target: "KUBE-FIREWALL",
        shared_with_kubelet: true,
    },
    JumpRule {
        table: "filter",
        chain: "OUTPUT",
        extra: &[],
        comment: None,
        target: "KUBE-FIREWALL",
        shared_with_kubelet: true,
    },
];

impl JumpRule {
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

/// The rules of built-in `chain` of `table` on a fresh host after kube-proxy
/// ensured its jumps (the reverse of the insertion order).
///
/// ```
/// let rules = kpinspect_core::iptables::fresh_builtin_rules("nat", "PREROUTING");
/// assert_eq!(rules.len(), 1);
/// assert_eq!(rules[0].target_name(), Some("KUBE-SERVICES"));
/// ```
pub fn fresh_builtin_rules(table: &str, chain: &str) -> Vec<Rule> {
    JUMP_RULES
        .iter()
        .rev()
        .filter(|j| j.table == table && j.chain == chain)
        .map(JumpRule::rule)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_filter_input_matches_the_spec_order() {
        let targets: Vec<String> = fresh_builtin_rules("filter", "INPUT")
            .iter()
            .map(|r| r.target_name().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            targets,
            [
                "KUBE-FIREWALL",
                "KUBE-PROXY-FIREWALL",
                "KUBE-NODEPORTS",
                "KUBE-EXTERNAL-SERVICES"
            ]
        );
        let r = &fresh_builtin_rules("filter", "INPUT")[1];
        assert_eq!(r.comment(), Some("kubernetes load balancer firewall"));
        assert_eq!(
            r.find_match("conntrack").and_then(|m| m.value("--ctstate")),
            Some("NEW")
        );
    }
}

//! The jump rules kube-proxy's iptables mode installs in the built-in chains, outside its
//! iptables-restore input (`iptablesJumpChains` in kube-proxy's proxier):
//! on every full sync it creates the target chain and inserts each rule at
//! the top of its built-in chain unless it is already there.

use crate::mode::{
    FILTER_FORWARD, JumpRule, NAT_OUTPUT_SERVICES, NAT_POSTROUTING, NAT_PREROUTING_SERVICES,
};

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

/// kube-proxy's jump rules, in the order it ensures them. Each is inserted
/// at position 1, so on a fresh host a built-in chain lists them in reverse.
pub const JUMP_RULES: [JumpRule; 14] = [
    JumpRule::new(
        "filter",
        "INPUT",
        NEW,
        "kubernetes externally-visible service portals",
        "KUBE-EXTERNAL-SERVICES",
    ),
    JumpRule::new(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes externally-visible service portals",
        "KUBE-EXTERNAL-SERVICES",
    ),
    JumpRule::new(
        "filter",
        "INPUT",
        &[],
        "kubernetes health check service ports",
        "KUBE-NODEPORTS",
    ),
    JumpRule::new(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    JumpRule::new(
        "filter",
        "OUTPUT",
        NEW,
        "kubernetes service portals",
        "KUBE-SERVICES",
    ),
    FILTER_FORWARD,
    JumpRule::new(
        "filter",
        "INPUT",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    JumpRule::new(
        "filter",
        "OUTPUT",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    JumpRule::new(
        "filter",
        "FORWARD",
        NEW,
        "kubernetes load balancer firewall",
        "KUBE-PROXY-FIREWALL",
    ),
    NAT_OUTPUT_SERVICES,
    NAT_PREROUTING_SERVICES,
    NAT_POSTROUTING,
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

#[cfg(test)]
mod tests {

    #[test]
    fn fresh_filter_input_matches_the_spec_order() {
        let targets: Vec<String> = super::super::PROFILE
            .fresh_builtin_rules("filter", "INPUT")
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
        let r = &super::super::PROFILE.fresh_builtin_rules("filter", "INPUT")[1];
        assert_eq!(r.comment(), Some("kubernetes load balancer firewall"));
        assert_eq!(
            r.find_match("conntrack").and_then(|m| m.value("--ctstate")),
            Some("NEW")
        );
    }
}

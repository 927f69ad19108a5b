//! kube-proxy's iptables mode: chain names, the compiler, restore text, and
//! the helpers kube-proxy's own tests use to compare and check dumps.

mod check;
mod cleanup;
mod commit;
mod compile;
pub mod dump;
mod jumps;
pub mod names;
mod normalize;
mod ownership;
mod plan;
mod restore;
mod rule;
mod save;

pub use check::{JumpError, check_rule_jumps};
pub use cleanup::{CleanupPlan, CleanupScope, cleanup_plan};
pub use commit::{RestoreError, RestoreFlush, builtin_chains};
pub use compile::{compile, compile_sync, probability};
pub use jumps::{JUMP_RULES, JumpRule, fresh_builtin_rules};
pub use normalize::{NormalizeError, sort_iptables_rules, sort_iptables_rules_by_service};
pub use ownership::{
    IPTABLES_SERVICE_PREFIXES, IPVS_IPSETS, IPVS_JUMP_RULES, OBSOLETE_IPVS_IPSETS, Owner,
    chain_owner, ipv6_ipset_name, is_ipvs_ipset, jump_owner,
};
pub use plan::{ChainChange, ChainDiff, IptablesDiff, Plan, diff, plan};
pub use restore::{LineBuffer, Restore, RestoreTable};
pub(crate) use rule::mark_pair as rule_mark_pair;
pub use rule::{
    Match, Opt, Rule, RuleError, Target, addr_matches, parse_counters, quantize_probability,
    split_args,
};
pub use save::{Chain, Ruleset, SaveParseError, Table, render_rule};

//! kube-proxy's iptables mode: chain names, the compiler, restore text, and
//! the helpers kube-proxy's own tests use to compare and check dumps.

mod check;
mod compile;
pub mod dump;
mod jumps;
pub mod names;
mod normalize;
mod restore;
mod rule;
mod save;

pub use check::{JumpError, check_rule_jumps};
pub use compile::{compile, compile_sync, probability};
pub use jumps::{JUMP_RULES, JumpRule, fresh_builtin_rules};
pub use normalize::{NormalizeError, sort_iptables_rules, sort_iptables_rules_by_service};
pub use restore::{LineBuffer, Restore, RestoreTable};
pub use rule::{
    Match, Opt, Rule, RuleError, Target, addr_matches, parse_counters, quantize_probability,
    split_args,
};
pub use save::{Chain, Ruleset, SaveParseError, Table, render_rule};

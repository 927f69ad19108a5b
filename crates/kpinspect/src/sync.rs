//! `kpinspect diff`, `apply` and `cleanup`: desired state from the cluster
//! files, actual state from the node (or saves). The cycles that read,
//! plan and write run in kpinspect-node; this prints their reports.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::config::ProxyMode;
use kpinspect_core::diff::{NodeDiff, ServiceState, node_diff};
use kpinspect_core::net::IpFamily;
use kpinspect_core::plan::{ChainChange, CleanupScope, Refusal, check_input};
use kpinspect_core::proxy::ProxyState;
use kpinspect_node::Desired;

use crate::UsageError;
use crate::args::{
    ApplyArgs, CleanupArgs, CleanupMode, ClusterArgs, DiffArgs, FamilyArg, NodeArgs, TraceFormat,
};
use crate::live;

fn desired(args: &ClusterArgs) -> Result<Desired> {
    desired_checked(args, None)
}

/// The desired state; for an apply (`guard` given), an input that would
/// wipe the node is refused unless forced.
fn desired_checked(args: &ClusterArgs, guard: Option<Guard>) -> Result<Desired> {
    let node = args.node.resolve()?;
    if node.config.mode != ProxyMode::Iptables {
        anyhow::bail!(UsageError::msg(
            "only iptables mode can be compiled yet; pass --mode iptables"
        ));
    }
    let cluster = crate::load_cluster(&args.files)?;
    if let (Some(guard), Some(refusal)) = (guard, check_input(&cluster)) {
        guard.check(&refusal)?;
    }
    let state = ProxyState::build(&cluster, &node.config, node.family);
    Ok(Desired::compile(state, &node.config).map_err(UsageError::from)?)
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let want = desired(&args.cluster)?;
    let (source, actual) = crate::rules::ruleset_for(&args.saves, want.family)?;
    let d = node_diff(&want.rules, &actual, want.state.as_ref());
    let out = match args.format {
        TraceFormat::Json => serde_json::to_string_pretty(&d)? + "\n",
        TraceFormat::Text => diff_text(&d, &source),
    };
    crate::write_stdout(&out)?;
    Ok(if d.in_sync() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn diff_text(d: &NodeDiff, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "compared with {source}");
    for s in &d.services {
        let state = match s.state {
            ServiceState::InSync => "in sync".to_string(),
            ServiceState::Missing => "missing".into(),
            ServiceState::Stale => "stale (not in the cluster files)".into(),
            ServiceState::RulesDiffer => "rules differ".into(),
            ServiceState::EndpointsDiffer => {
                let mut parts: Vec<String> =
                    s.endpoints_added.iter().map(|e| format!("+{e}")).collect();
                parts.extend(s.endpoints_removed.iter().map(|e| format!("-{e}")));
                format!("endpoints differ ({})", parts.join(" "))
            }
        };
        let _ = writeln!(
            out,
            "{:<50} {}",
            format!("{} ({})", s.service, s.protocol),
            state
        );
    }
    for c in &d.iptables.chains {
        let what = match c.change {
            ChainChange::Missing => "missing chain",
            ChainChange::Changed => "changed chain",
            ChainChange::Stale => "stale chain",
        };
        let _ = writeln!(out, "\n{what} {} {}", c.table, c.chain);
        for r in &c.missing {
            let _ = writeln!(out, "+ {r}");
        }
        for r in &c.extra {
            let _ = writeln!(out, "- {r}");
        }
    }
    if !d.iptables.missing_jumps.is_empty() {
        let _ = writeln!(out, "\nmissing jump rules");
        for j in &d.iptables.missing_jumps {
            let _ = writeln!(out, "+ {j}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if d.in_sync() { "in sync" } else { "different" }
    );
    out
}

/// Refuses to change a node on which kube-proxy runs, unless forced.
fn refuse_if_kube_proxy_runs(force: bool) -> Result<()> {
    if let Some(pid) = live::kube_proxy_running()
        && !force
    {
        anyhow::bail!(UsageError::msg(format!(
            "kube-proxy is running on this node (pid {pid}) and would fight these changes; stop it or pass --force"
        )));
    }
    Ok(())
}

/// What an apply does with a [`Refusal`].
#[derive(Debug, Clone, Copy)]
struct Guard {
    force: bool,
    dry_run: bool,
}

impl Guard {
    /// Refuses, unless forced (then warns) or a dry run (then says so).
    fn check(self, refusal: &Refusal) -> Result<()> {
        if self.force {
            eprintln!("kpinspect: warning: {refusal} (applied: --force)");
        } else if self.dry_run {
            eprintln!("kpinspect: warning: {refusal}; apply refuses this without --force");
        } else {
            anyhow::bail!(UsageError::msg(format!(
                "refusing to apply: {refusal}; pass --force to apply anyway"
            )));
        }
        Ok(())
    }
}

pub fn apply(args: ApplyArgs) -> Result<ExitCode> {
    let guard = Guard {
        force: args.force,
        dry_run: args.dry_run,
    };
    let want = desired_checked(&args.cluster, Some(guard))?;
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    // Read, plan and write under one lock: a second apply plans against
    // what this one wrote.
    let _lock = live::lock()?;
    let node = live::node()?;
    let planned = kpinspect_node::plan_apply(&node, &want).map_err(UsageError::from)?;
    for w in planned.warnings() {
        eprintln!("kpinspect: warning: {w}");
    }
    if let Some(refusal) = planned.refusal() {
        guard.check(&refusal)?;
    }
    if args.dry_run {
        crate::write_stdout(planned.payload())?;
        return Ok(ExitCode::SUCCESS);
    }
    let report = planned.write(&node).map_err(UsageError::from)?;
    eprintln!("kpinspect: {report}");
    Ok(ExitCode::SUCCESS)
}

pub fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let scope = if args.stale_only {
        let config = args.config.as_ref().expect("clap requires --config");
        let node = NodeArgs::only_config(config.clone()).resolve()?;
        match node.config.mode {
            ProxyMode::Iptables => CleanupScope::StaleFor(ProxyMode::Iptables),
            ProxyMode::Ipvs => CleanupScope::StaleFor(ProxyMode::Ipvs),
            ProxyMode::Nftables => anyhow::bail!(UsageError::msg(
                "--stale-only: the configuration's mode is nftables; use --mode all to remove all iptables and IPVS state"
            )),
        }
    } else {
        match args.mode {
            Some(CleanupMode::Iptables) => CleanupScope::Mode(ProxyMode::Iptables),
            Some(CleanupMode::Ipvs) => CleanupScope::Mode(ProxyMode::Ipvs),
            Some(CleanupMode::All) => CleanupScope::All,
            None => anyhow::bail!(UsageError::msg(
                "say what to remove: --mode iptables|ipvs|all, or --stale-only --config FILE"
            )),
        }
    };
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    let _lock = live::lock()?;
    let node = live::node()?;
    let family = args.family.map(|f| match f {
        FamilyArg::Ipv4 => IpFamily::V4,
        FamilyArg::Ipv6 => IpFamily::V6,
    });
    let planned =
        kpinspect_node::plan_cleanup(&node, &node, scope, family).map_err(UsageError::from)?;
    if args.dry_run {
        crate::write_stdout(&planned.restore_input())?;
        eprint!("{planned}");
        return Ok(ExitCode::SUCCESS);
    }
    let report = planned.write(&node, &node).map_err(UsageError::from)?;
    crate::write_stdout(&report.to_string())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use kpinspect_core::netfilter::Ruleset;
    use kpinspect_core::plan::plan;
    use kpinspect_node::NodeError;

    use super::*;

    /// The CLI's desired state carries what names a refused line's
    /// Service, and the message is one line.
    #[test]
    fn restore_failures_name_the_chain_and_service() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
        let args = ClusterArgs {
            node: NodeArgs::only_config(format!("{root}examples/kube-proxy-config.yaml").into()),
            files: vec![format!("{root}examples/cluster.yaml").into()],
        };
        let want = desired(&args).unwrap();
        let plan = plan(
            &want.rules,
            &Ruleset::default(),
            ProxyMode::Iptables.profile(),
        );
        let (line, text) = plan
            .payload
            .lines()
            .enumerate()
            .find(|(_, l)| l.starts_with("-A KUBE-SVC-") && l.contains("default/web-svc-cip"))
            .map(|(i, l)| (i + 1, l.to_string()))
            .unwrap();
        let chain = text.split_whitespace().nth(1).unwrap().to_string();
        let e = NodeError::Restore {
            line: Some(line),
            message: "iptables-restore: line N failed".into(),
        };
        let msg = UsageError::from(kpinspect_node::apply_failure(e, &plan, &want)).to_string();
        assert!(
            msg.contains(&format!("line {line}: {chain} for default/web-svc-cip")),
            "{msg}"
        );
        // The filter table comes first in the payload and was committed.
        assert!(
            msg.contains("(the filter table before it was applied)"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1);
    }
}

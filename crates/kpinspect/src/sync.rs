//! `kpinspect diff`, `apply` and `cleanup`: desired state from the cluster
//! files, actual state from the node (or saves), and the libraries' plans.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::config::ProxyMode;
use kpinspect_core::diff::{NodeDiff, ServiceState, node_diff};
use kpinspect_core::iptables::{self, CleanupScope, Plan, Ruleset};
use kpinspect_core::net::IpFamily;
use kpinspect_core::proxy::ProxyState;

use crate::UsageError;
use crate::args::{
    ApplyArgs, CleanupArgs, CleanupMode, ClusterArgs, DiffArgs, FamilyArg, NodeArgs, TraceFormat,
};
use crate::live;
use kpinspect_node::NodeError;

/// What kube-proxy should have programmed.
struct Desired {
    family: IpFamily,
    state: ProxyState,
    rules: Ruleset,
}

fn desired(args: &ClusterArgs) -> Result<Desired> {
    let node = args.node.resolve()?;
    if node.config.mode != ProxyMode::Iptables {
        anyhow::bail!(UsageError::msg(
            "only iptables mode can be compiled yet; pass --mode iptables"
        ));
    }
    let cluster = crate::load_cluster(&args.files)?;
    let state = ProxyState::build(&cluster, &node.config, node.family);
    let text = iptables::compile(&state, &node.config).render();
    let rules = Ruleset::parse(&text).map_err(|e| anyhow::anyhow!("compiled rules: {e}"))?;
    Ok(Desired {
        family: node.family,
        state,
        rules,
    })
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let want = desired(&args.cluster)?;
    let (source, actual) = crate::rules::ruleset_for(&args.saves, want.family)?;
    let d = node_diff(&want.rules, &actual, Some(&want.state));
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
            iptables::ChainChange::Missing => "missing chain",
            iptables::ChainChange::Changed => "changed chain",
            iptables::ChainChange::Stale => "stale chain",
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

pub fn apply(args: ApplyArgs) -> Result<ExitCode> {
    let want = desired(&args.cluster)?;
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    // Read, plan and write under one lock: a second apply plans against
    // what this one wrote.
    let _lock = live::lock()?;
    let node = live::iptables()?;
    let actual = node.read(want.family)?;
    let plan = iptables::plan(&want.rules, &actual.rules);
    for (chain, rule) in &plan.chains_kept {
        eprintln!("kpinspect: warning: stale chain {chain} kept: still jumped to by `{rule}`");
    }
    if args.dry_run {
        crate::write_stdout(&plan.payload)?;
        return Ok(ExitCode::SUCCESS);
    }
    if plan.is_empty() {
        eprintln!("kpinspect: {}: in sync, nothing written", actual.name);
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(e) = node.restore(want.family, &plan.payload) {
        anyhow::bail!(UsageError::msg(restore_failure(&e, &plan, &want)));
    }
    eprintln!(
        "kpinspect: applied {} bytes: {} chains written, {} rules added, {} rules deleted, {} stale chains deleted",
        plan.payload.len(),
        plan.chains_written,
        plan.rules_added,
        plan.rules_deleted,
        plan.chains_deleted.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// "line 812: KUBE-SVC-… for default/web:http: <iptables' message>".
fn restore_failure(e: &NodeError, plan: &Plan, want: &Desired) -> String {
    let NodeError::Restore {
        line: Some(line), ..
    } = e
    else {
        return format!(
            "apply failed (each table of the payload is committed whole or not at all; run diff to see what stands): {e}"
        );
    };
    let line = *line;
    let chain = plan.chain_at(line).unwrap_or("?");
    // Tables whose COMMIT came before the failing line were applied.
    let committed: Vec<String> = plan
        .payload
        .lines()
        .take(line.saturating_sub(1))
        .enumerate()
        .filter(|(_, l)| *l == "COMMIT")
        .filter_map(|(i, _)| plan.chain_at(i + 1))
        .map(|t| t.trim_start_matches("table ").to_string())
        .collect();
    let before = if committed.is_empty() {
        String::new()
    } else {
        format!(
            " (the {} table before it was applied)",
            committed.join(", ")
        )
    };
    let service = kpinspect_core::dump::dump(&want.rules, Some(&want.state))
        .services
        .into_iter()
        .find(|s| s.chains.iter().any(|c| c == chain))
        .map(|s| {
            if s.port_name.is_empty() {
                format!(" for {}/{}", s.namespace, s.name)
            } else {
                format!(" for {}/{}:{}", s.namespace, s.name, s.port_name)
            }
        })
        .unwrap_or_default();
    format!(
        "apply failed at payload line {line}: {chain}{service}; that table was left as it was{before}: {e}"
    )
}

pub fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let scope = if args.stale_only {
        let config = args.config.as_ref().expect("clap requires --config");
        let node = NodeArgs::only_config(config.clone()).resolve()?;
        match node.config.mode {
            ProxyMode::Iptables => CleanupScope::StaleFor { ipvs: false },
            ProxyMode::Ipvs => CleanupScope::StaleFor { ipvs: true },
            ProxyMode::Nftables => anyhow::bail!(UsageError::msg(
                "--stale-only: the configuration's mode is nftables; use --mode all to remove all iptables and IPVS state"
            )),
        }
    } else {
        match args.mode {
            Some(CleanupMode::Iptables) => CleanupScope::Mode { ipvs: false },
            Some(CleanupMode::Ipvs) => CleanupScope::Mode { ipvs: true },
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
    let node = live::iptables()?;
    let families = match args.family {
        Some(FamilyArg::Ipv4) => vec![IpFamily::V4],
        Some(FamilyArg::Ipv6) => vec![IpFamily::V6],
        None => vec![IpFamily::V4, IpFamily::V6],
    };
    let mut sources = Vec::new();
    for f in &families {
        // A node without ip6tables has no IPv6 state to clean.
        if args.family.is_none() && !node.has_tools(*f) {
            continue;
        }
        sources.push((*f, node.read(*f)?));
    }
    // Only the sets of the families read: a set of the other family may be
    // matched by rules this run does not see.
    let read = |f: IpFamily| sources.iter().any(|(g, _)| *g == f);
    let ipsets: Vec<String> = live::ipset_names()?
        .into_iter()
        .filter(|s| {
            if s.starts_with("KUBE-6-") {
                read(IpFamily::V6)
            } else {
                read(IpFamily::V4)
            }
        })
        .collect();
    let rulesets: Vec<&Ruleset> = sources.iter().map(|(_, s)| &s.rules).collect();
    let plan = iptables::cleanup_plan(&rulesets, &ipsets, scope);
    let mut report = String::new();
    for (t, c) in &plan.removed_chains {
        let _ = writeln!(report, "removed chain {t} {c}");
    }
    for (t, r) in &plan.removed_rules {
        let _ = writeln!(report, "removed rule {t} {r}");
    }
    for s in &plan.removed_ipsets {
        let _ = writeln!(report, "removed ipset {s}");
    }
    for (what, why) in &plan.kept {
        let _ = writeln!(report, "kept {what}: {why}");
    }
    if plan.is_empty() && plan.kept.is_empty() {
        let _ = writeln!(report, "nothing to remove");
    }
    if args.dry_run {
        let mut out = String::new();
        for ((f, _), payload) in sources.iter().zip(&plan.payloads) {
            if !payload.is_empty() {
                let _ = writeln!(out, "# {} --noflush", node.restore_program(*f));
                out.push_str(payload);
            }
        }
        if !plan.ipset_payload.is_empty() {
            out.push_str("# ipset restore\n");
            out.push_str(&plan.ipset_payload);
        }
        crate::write_stdout(&out)?;
        eprint!("{}", report.replace("removed ", "would remove "));
        return Ok(ExitCode::SUCCESS);
    }
    for ((f, _), payload) in sources.iter().zip(&plan.payloads) {
        if !payload.is_empty() {
            node.restore(*f, payload).map_err(|e| {
                UsageError::msg(format!(
                    "cleanup failed for {}, the failing table was left as it was (tables before it in the payload were applied): {e}", node.restore_program(*f)
                ))
            })?;
        }
    }
    if !plan.ipset_payload.is_empty() {
        live::restore_ipsets(&plan.ipset_payload)
            .map_err(|e| UsageError::msg(format!("cleanup of ipsets failed: {e}")))?;
    }
    crate::write_stdout(&report)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused line is named with its chain and the Service that chain
    /// belongs to, and says which tables were already applied.
    #[test]
    fn restore_failures_name_the_chain_and_service() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
        let args = ClusterArgs {
            node: NodeArgs::only_config(format!("{root}examples/kube-proxy-config.yaml").into()),
            files: vec![format!("{root}examples/cluster.yaml").into()],
        };
        let want = desired(&args).unwrap();
        let plan = iptables::plan(&want.rules, &Ruleset::default());
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
        let msg = restore_failure(&e, &plan, &want);
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

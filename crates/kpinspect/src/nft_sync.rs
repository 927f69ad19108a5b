//! `kpinspect diff|apply --mode nftables` and `cleanup --mode nftables`:
//! the cycles run in kpinspect-node (`plan_nft_apply`, `plan_nft_cleanup`);
//! this prints their plans and reports.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::mode::nftables::{self, ElementChange};
use kpinspect_core::net::IpFamily;
use kpinspect_core::plan::ChainChange;
use kpinspect_core::proxy::ProxyState;
use kpinspect_node::{PlannedNftApply, SystemNftables};

use crate::UsageError;
use crate::args::{ApplyArgs, CleanupArgs, DiffArgs, DiffFormat, ReportFormat};
use crate::live;
use crate::sync::{
    Guard, Inputs, clear_conntrack, conntrack_step, live_config, print_apply_json,
    refuse_if_kube_proxy_runs,
};

/// One family's plan with the proxier view it was compiled from.
type Planned = (PlannedNftApply, ProxyState);

/// Reads and plans every family: (facts, plans with their proxier views).
fn plan_families(
    inputs: &Inputs,
    args: &crate::args::NodeArgs,
    guard: Option<Guard>,
) -> Result<(Vec<String>, Vec<Planned>)> {
    let node = live::node()?;
    let (mut config, mut facts) = live_config(inputs, args, &node, guard)?;
    // knftables' start-up probe, unless --no-object-comments said it.
    if config.node.nft_object_comments {
        let supported = kpinspect_node::nft_object_comments_supported(kpinspect_node::nft_family(
            config.default_family(),
        ))
        .map_err(|e| UsageError::msg(e.to_string()))?;
        config.node.nft_object_comments = supported;
        facts.push(format!(
            "nft object comments: {} (detected)",
            if supported {
                "supported"
            } else {
                "not supported"
            }
        ));
    } else {
        facts.push("nft object comments: no (given: --no-object-comments)".into());
    }
    let families: Vec<IpFamily> = match args.family {
        Some(f) => vec![f.into()],
        None => vec![IpFamily::V4, IpFamily::V6],
    };
    let mut planned = Vec::new();
    for family in families {
        let state = ProxyState::build(&inputs.cluster, &config, family);
        let compiled = nftables::compile(&state, &config);
        for n in &compiled.notices {
            note!("kpinspect: warning: {}: {}", n.object, n.message);
        }
        let p = kpinspect_node::plan_nft_apply(&SystemNftables, &compiled)
            .map_err(|e| UsageError::msg(e.to_string()))?;
        if let (Some(guard), Some(refusal)) = (guard, p.refusal()) {
            guard.check(&refusal)?;
        }
        planned.push((p, state));
    }
    Ok((facts, planned))
}

/// `diff --mode nftables`: the live node's `kube-proxy` tables against the
/// cluster files; exit 0 in sync, 1 different.
pub(crate) fn diff(args: &DiffArgs, inputs: &Inputs) -> Result<ExitCode> {
    if !args.saves.is_empty() {
        anyhow::bail!(UsageError::msg(
            "diff --mode nftables compares with the live node only (drop --iptables-save)"
        ));
    }
    let (facts, planned) = plan_families(inputs, &args.cluster.node, None)?;
    let planned: Vec<PlannedNftApply> = planned.into_iter().map(|(p, _)| p).collect();
    let in_sync = planned.iter().all(|p| p.plan.in_sync());
    let out = match args.format {
        DiffFormat::Json => {
            let families: Vec<serde_json::Value> = planned
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "family": p.plan.family,
                        "compared_with": p.from,
                        "services": p.plan.services,
                        "chains": p.plan.chains,
                        "sets": p.plan.containers,
                        "elements": p.plan.elements,
                        "transaction": p.text(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({
                "node": facts,
                "families": families,
                "in_sync": in_sync,
            }))? + "\n"
        }
        DiffFormat::Text => {
            let mut out = String::new();
            if !facts.is_empty() {
                let _ = writeln!(out, "node facts:");
                for f in &facts {
                    let _ = writeln!(out, "  {f}");
                }
                out.push('\n');
            }
            for (i, p) in planned.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&diff_text(p));
            }
            crate::fmt::colour_diff(&out, crate::fmt::stdout_colour())
        }
    };
    crate::write_stdout(&out)?;
    Ok(if in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One family's differences, as text.
fn diff_text(p: &PlannedNftApply) -> String {
    let plan = &p.plan;
    let fam = plan.family.as_k8s_str();
    let mut out = String::new();
    let _ = writeln!(out, "{fam}: compared with {}", p.from);
    for s in &plan.services {
        crate::sync::service_line(&mut out, s);
    }
    for c in &plan.containers {
        let what = match c.change {
            ChainChange::Missing => "missing set/map",
            ChainChange::Changed => "changed set/map",
            ChainChange::Stale => "stale set/map",
        };
        let _ = writeln!(out, "\n{what} {}", c.name);
    }
    for c in &plan.chains {
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
    if !plan.elements.is_empty() {
        let _ = writeln!(out, "\nelements");
        for e in &plan.elements {
            let value = |v: &str| {
                if v.is_empty() {
                    String::new()
                } else {
                    format!(" : {v}")
                }
            };
            match e.change {
                ElementChange::Missing => {
                    let _ = writeln!(out, "+ {} {{ {}{} }}", e.container, e.key, value(&e.want));
                }
                ElementChange::Stale => {
                    let _ = writeln!(out, "- {} {{ {}{} }}", e.container, e.key, value(&e.have));
                }
                ElementChange::Changed => {
                    let _ = writeln!(
                        out,
                        "~ {} {{ {}{} }} (node:{})",
                        e.container,
                        e.key,
                        value(&e.want),
                        value(&e.have)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{fam}: {}",
        if plan.in_sync() {
            "in sync"
        } else {
            "different"
        }
    );
    out
}

/// `apply --mode nftables`: per family one `nft -f -`, or with `--dry-run`
/// the transactions.
pub(crate) fn apply(args: &ApplyArgs, inputs: &Inputs, guard: Guard) -> Result<ExitCode> {
    kpinspect_node::require_net_admin("nft").map_err(|e| UsageError::msg(e.to_string()))?;
    let _lock = live::lock()?;
    let (facts, planned) = plan_families(inputs, &args.cluster.node, Some(guard))?;
    if args.format == ReportFormat::Json {
        return apply_json(args, &facts, planned);
    }
    if args.dry_run {
        for f in &facts {
            note!("kpinspect: {f}");
        }
        let several = planned.iter().filter(|(p, _)| !p.is_empty()).count() > 1;
        let mut out = String::new();
        for (p, _) in &planned {
            if several && !p.is_empty() {
                let _ = writeln!(
                    out,
                    "# nft -f - ({} kube-proxy)",
                    kpinspect_node::nft_family(p.plan.family)
                );
            }
            out.push_str(&p.text());
        }
        crate::write_stdout(&out)?;
        if !args.no_conntrack_cleanup {
            for (p, state) in &planned {
                clear_conntrack(state.family, &p.serving_endpoints(state), true);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (p, state) in planned {
        let serving = p.serving_endpoints(&state);
        let report = p
            .write(&SystemNftables)
            .map_err(|e| UsageError::msg(e.to_string()))?;
        note!("kpinspect: {report}");
        // kube-proxy's conntrack reconciler runs after nftables syncs too.
        if !args.no_conntrack_cleanup {
            clear_conntrack(state.family, &serving, false);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `apply --mode nftables -o json`: one report on stdout in the shape of
/// the other modes' (`families[].nftables` instead of `iptables`).
fn apply_json(args: &ApplyArgs, facts: &[String], planned: Vec<Planned>) -> Result<ExitCode> {
    let mut families = Vec::new();
    for (p, state) in planned {
        let serving = p.serving_endpoints(&state);
        let mut family = if args.dry_run {
            crate::report::nft_family(&p.plan, &p.from)
        } else {
            let report = p
                .write(&SystemNftables)
                .map_err(|e| UsageError::msg(e.to_string()))?;
            crate::report::nft_family(&report.plan, &report.from)
        };
        family["conntrack"] = conntrack_step(args, state.family, &serving, args.dry_run);
        families.push(family);
    }
    print_apply_json(args.dry_run, facts, &[], families, None)
}

/// `cleanup --mode nftables`: `delete table ip|ip6 kube-proxy`, nothing
/// else.
pub(crate) fn cleanup_tables(args: &CleanupArgs) -> Result<ExitCode> {
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    kpinspect_node::require_net_admin("nft").map_err(|e| UsageError::msg(e.to_string()))?;
    let _lock = live::lock()?;
    let planned =
        kpinspect_node::plan_nft_cleanup(&SystemNftables, args.family.map(IpFamily::from))
            .map_err(|e| UsageError::msg(e.to_string()))?;
    let json = args.format == ReportFormat::Json;
    if json && args.dry_run {
        return cleanup_json(true, &planned);
    }
    if args.dry_run {
        crate::write_stdout(&planned.commands())?;
        if planned.is_empty() {
            note!("nothing to remove");
        } else {
            note_raw!("{planned}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let empty = planned.is_empty();
    let done = planned
        .write(&SystemNftables)
        .map_err(|e| UsageError::msg(e.to_string()))?;
    if json {
        return cleanup_json(false, &done);
    }
    if empty {
        crate::write_stdout("nothing to remove\n")?;
    } else {
        crate::write_stdout(&done.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cleanup --mode nftables -o json`: the other modes' cleanup report
/// with only `nftables` filled in.
fn cleanup_json(dry_run: bool, c: &kpinspect_node::NftCleanup) -> Result<ExitCode> {
    crate::write_stdout(
        &(serde_json::to_string_pretty(&serde_json::json!({
            "dry_run": dry_run,
            "ipvs": null,
            "iptables": null,
            "nftables": crate::report::nft_cleanup(c),
            "nfacct_counters": [],
        }))? + "\n"),
    )?;
    Ok(ExitCode::SUCCESS)
}

//! `kpinspect diff`, `apply` and `cleanup`: desired state from the cluster
//! files, actual state from the node (or saves). The cycles that read,
//! plan and write run in kpinspect-node; this prints their reports.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use kpinspect_core::config::{ProxyConfig, ProxyMode};
use kpinspect_core::diff::{NodeDiff, ServiceState, node_diff};
use kpinspect_core::mode::ipvs::Ownership;
use kpinspect_core::model::Cluster;
use kpinspect_core::net::IpFamily;
use kpinspect_core::plan::{ChainChange, CleanupScope, Refusal, check_input};
use kpinspect_core::proxy::ProxyState;
use kpinspect_node::{
    Backend, CounterCleanup, Desired, Iptables as _, LiveNode, Sysctls as _, SystemConntrack,
    SystemIpvs, SystemLinks, SystemNfAcct, SystemSysctls, cleanup_kube_proxy_counters,
};

use crate::UsageError;
use crate::args::{
    ApplyArgs, CleanupArgs, CleanupMode, ClusterArgs, DiffArgs, DiffFormat, Node, NodeArgs,
    ReportFormat,
};
use crate::live;

/// The cluster files and the node's configuration of one command.
pub(crate) struct Inputs {
    pub(crate) node: Node,
    pub(crate) cluster: Cluster,
}

fn inputs(args: &ClusterArgs, guard: Option<Guard>) -> Result<Inputs> {
    let node = args.node.resolve()?;
    let cluster = crate::load_cluster_from(&args.files, false)?;
    if let (Some(guard), Some(refusal)) = (guard, check_input(&cluster)) {
        guard.check(&refusal)?;
    }
    Ok(Inputs { node, cluster })
}

/// What kube-proxy should have programmed in `family`'s tables.
fn desired_for(inputs: &Inputs, config: &ProxyConfig, family: IpFamily) -> Result<Desired> {
    let state = ProxyState::build(&inputs.cluster, config, family);
    Ok(Desired::compile(state, config).map_err(UsageError::from)?)
}

/// The desired state of the family the node arguments choose.
#[cfg(test)]
fn desired(args: &ClusterArgs) -> Result<Desired> {
    let inputs = inputs(args, None)?;
    desired_for(&inputs, &inputs.node.config, inputs.node.family)
}

/// The families a live command covers: `--family`, else each whose tools
/// the node has (kube-proxy runs a proxier per family iptables supports).
fn live_families(args: &NodeArgs, node: &LiveNode) -> Vec<IpFamily> {
    match args.family {
        Some(f) => vec![f.into()],
        None => [IpFamily::V4, IpFamily::V6]
            .into_iter()
            .filter(|f| kpinspect_node::find_program(&node.save_program(*f)).is_some())
            .collect(),
    }
}

/// The live node's facts filled into the configuration, with what was
/// found; problems are warned about, or for an apply (`guard`) refused
/// unless forced.
pub(crate) fn live_config(
    inputs: &Inputs,
    args: &NodeArgs,
    node: &LiveNode,
    guard: Option<Guard>,
) -> Result<(ProxyConfig, Vec<String>)> {
    let mut config = inputs.node.config.clone();
    let facts = crate::facts::detect(args, &mut config, node)?;
    if let Some(problem) = crate::facts::node_port_addresses_problem(&config) {
        match guard {
            Some(guard) => guard.check_problem(&problem)?,
            None => note!("kpinspect: warning: {problem}"),
        }
    }
    if let Some(w) = crate::facts::node_name_warning(&inputs.cluster, &config.node.name) {
        note!("kpinspect: warning: {w}");
    }
    Ok((config, facts))
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    // Validated first: a bad value is an error in every mode.
    args.node_ports.resolve()?;
    let inputs = inputs(&args.cluster, None)?;
    match inputs.node.config.mode {
        ProxyMode::Ipvs => return diff_ipvs(&args, &inputs),
        ProxyMode::Nftables => return crate::nft_sync::diff(&args, &inputs),
        ProxyMode::Iptables => {}
    }
    // (facts, per family: family, source, diff)
    let mut facts = Vec::new();
    let mut results: Vec<(IpFamily, String, NodeDiff)> = Vec::new();
    if args.saves.is_empty() {
        let node = live::node()?;
        let (config, lines) = live_config(&inputs, &args.cluster.node, &node, None)?;
        facts = lines;
        for family in live_families(&args.cluster.node, &node) {
            let want = desired_for(&inputs, &config, family)?;
            let actual = kpinspect_node::read_rules(&node, family).map_err(UsageError::from)?;
            let d = node_diff(&want.rules, &actual.rules, want.state.as_ref());
            results.push((family, actual.from, d));
        }
    } else {
        let family = inputs.node.family;
        let want = desired_for(&inputs, &inputs.node.config, family)?;
        let (source, actual) = crate::rules::ruleset_for(&args.saves, family)?;
        let d = node_diff(&want.rules, &actual, want.state.as_ref());
        results.push((family, source, d));
    }
    let in_sync = results.iter().all(|(_, _, d)| d.in_sync());
    let out = match args.format {
        DiffFormat::Json => {
            let families: Vec<serde_json::Value> = results
                .iter()
                .map(|(family, source, d)| {
                    serde_json::json!({
                        "family": family,
                        "compared_with": source,
                        "services": d.services,
                        "iptables": d.iptables,
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
            for (i, (family, source, d)) in results.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&diff_text(*family, d, source));
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

/// One service port's line of diff's text: its name and protocol, then its
/// state (shared by every mode's diff).
pub(crate) fn service_line(out: &mut String, s: &kpinspect_core::diff::ServiceStatus) {
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

fn diff_text(family: IpFamily, d: &NodeDiff, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: compared with {source}", family.as_k8s_str());
    for s in &d.services {
        service_line(&mut out, s);
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
        "\n{}: {}",
        family.as_k8s_str(),
        if d.in_sync() { "in sync" } else { "different" }
    );
    out
}

/// Refuses to change a node on which kube-proxy runs, unless forced.
pub(crate) fn refuse_if_kube_proxy_runs(force: bool) -> Result<()> {
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
pub(crate) struct Guard {
    force: bool,
    dry_run: bool,
}

impl Guard {
    /// Refuses, unless forced (then warns) or a dry run (then says so).
    pub(crate) fn check(self, refusal: &Refusal) -> Result<()> {
        self.check_problem(&refusal.to_string())
    }

    /// [`Guard::check`] for a problem described in one line.
    fn check_problem(self, refusal: &str) -> Result<()> {
        if self.force {
            note!("kpinspect: warning: {refusal} (applied: --force)");
        } else if self.dry_run {
            note!("kpinspect: warning: {refusal}; apply refuses this without --force");
        } else {
            anyhow::bail!(UsageError::msg(format!(
                "refusing to apply: {refusal}; pass --force to apply anyway"
            )));
        }
        Ok(())
    }
}

pub fn apply(args: ApplyArgs) -> Result<ExitCode> {
    let mut timer = kpinspect_node::PhaseTimer::from_env();
    args.node_ports.resolve()?;
    let drain_timeout = crate::args::parse_duration("--drain-timeout", &args.drain_timeout)?;
    let guard = Guard {
        force: args.force,
        dry_run: args.dry_run,
    };
    let inputs = inputs(&args.cluster, Some(guard))?;
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    if inputs.node.config.mode != ProxyMode::Ipvs && !drain_timeout.is_zero() {
        anyhow::bail!(UsageError::msg(
            "--drain-timeout: only IPVS mode drains real servers (iptables and nftables modes have none)"
        ));
    }
    match inputs.node.config.mode {
        ProxyMode::Ipvs => return apply_ipvs(&args, &inputs, guard, drain_timeout),
        ProxyMode::Nftables => return crate::nft_sync::apply(&args, &inputs, guard),
        ProxyMode::Iptables => {}
    }
    timer.mark("input");
    // Detect, read, plan and write under one lock: a second apply plans
    // against what this one wrote, and the saves detection ran serve as
    // the read (nothing is written before it).
    // Privileges first: without CAP_NET_ADMIN the lock file under /run is
    // not ours to open either, and the user is told how to run apply.
    kpinspect_node::require_net_admin("iptables-restore")
        .map_err(|e| UsageError::msg(e.to_string()))?;
    let _lock = live::lock()?;
    let node = live::node_keeping_saves()?;
    timer.mark("backend detection");
    let (mut config, facts) = live_config(&inputs, &args.cluster.node, &node, Some(guard))?;
    timer.mark("node facts");
    if args.dry_run {
        for f in &facts {
            note!("kpinspect: {f}");
        }
    }
    let families = live_families(&args.cluster.node, &node);
    let progress = Progress::new();
    let compile = |config: &ProxyConfig| -> Result<Vec<Desired>> {
        families
            .iter()
            .map(|f| desired_for(&inputs, config, *f))
            .collect()
    };
    // The desired state is compiled on a second thread while this one
    // parses the node's rules (detection's saves): on a small change these
    // are the two largest steps, and they do not depend on each other.
    let (wants, reads) = std::thread::scope(|s| {
        let compiled = s.spawn(|| compile(&config));
        let reads = read_node_rules(&node, &families);
        let wants = compiled
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (wants, reads)
    });
    let (wants, reads) = (wants?, reads?);
    timer.mark("compile and read (side by side)");
    let planned = plan_families(reads, &wants, guard, &progress)?;
    timer.mark("plan");
    // The rules may use -m nfacct once kube-proxy's counters exist: they are
    // created after the plan passed the guards, right before writing (not
    // in a dry run); where the kernel cannot create them, the rules are
    // compiled and planned again without.
    if config.node.nfacct
        && !args.dry_run
        && let Err(why) = kpinspect_node::ensure_counters_for_rules(&SystemNfAcct)
    {
        note!("kpinspect: warning: {why}; rules without -m nfacct");
        config.node.nfacct = false;
        let wants = compile(&config)?;
        let planned = plan_families(read_node_rules(&node, &families)?, &wants, guard, &progress)?;
        return write_planned(&args, &node, planned, &progress, &facts);
    }
    write_planned(&args, &node, planned, &progress, &facts)
}

/// Reads and parses the rules of each of `families`, in their order (from
/// detection's saves). Unlike `kpinspect_node::read_families`, a family
/// whose tools are missing is an error: `families` is what was compiled.
fn read_node_rules(
    node: &LiveNode,
    families: &[IpFamily],
) -> Result<Vec<kpinspect_node::NodeRules>> {
    families
        .iter()
        .map(|f| kpinspect_node::read_rules(node, *f).map_err(|e| UsageError::from(e).into()))
        .collect()
}

/// Plans each family against its rules read, printing the plans' warnings;
/// a plan that would wipe the node is refused unless forced.
fn plan_families<'a>(
    reads: Vec<kpinspect_node::NodeRules>,
    wants: &'a [Desired],
    guard: Guard,
    progress: &Progress,
) -> Result<Vec<kpinspect_node::PlannedApply<'a>>> {
    let mut planned = Vec::new();
    for (read, want) in reads.into_iter().zip(wants) {
        progress.say(&format!("{}: planning", want.family.as_k8s_str()));
        let p = kpinspect_node::plan_read(read, want).map_err(UsageError::from)?;
        for w in p.warnings() {
            note!("kpinspect: warning: {w}");
        }
        if let Some(refusal) = p.refusal() {
            progress.done();
            guard.check(&refusal)?;
        }
        planned.push(p);
    }
    Ok(planned)
}

/// Prints (dry run) or writes the planned families, then clears stale UDP
/// conntrack entries; with `--format json`, one report on stdout.
fn write_planned(
    args: &ApplyArgs,
    node: &LiveNode,
    planned: Vec<kpinspect_node::PlannedApply<'_>>,
    progress: &Progress,
    facts: &[String],
) -> Result<ExitCode> {
    let json = args.format == ReportFormat::Json;
    let mut timer = kpinspect_node::PhaseTimer::from_env();
    // kube-proxy's conntrack reconciler, per family.
    let serving: Vec<_> = planned
        .iter()
        .map(|p| {
            let state = p
                .desired
                .state
                .as_ref()
                .expect("compiled from a proxy state");
            kpinspect_node::serving_endpoints(state, &p.actual)
        })
        .collect();
    timer.mark("serving endpoints");
    let mut families = Vec::new();
    if args.dry_run {
        progress.done();
        let mut out = String::new();
        let several = planned.len() > 1;
        for (p, serving) in planned.iter().zip(&serving) {
            if several && !p.is_empty() {
                let _ = writeln!(
                    out,
                    "# {} --noflush",
                    node.restore_program(p.desired.family)
                );
            }
            out.push_str(p.payload());
            let mut family =
                crate::report::iptables_family(p.desired.family, &p.plan, &p.from, p.warnings());
            family["conntrack"] = conntrack_step(args, p.desired.family, serving, true);
            families.push(family);
        }
        if json {
            return print_apply_json(true, facts, &[], families, None);
        }
        crate::write_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (p, serving) in planned.into_iter().zip(&serving) {
        let family = p.desired.family;
        if !p.is_empty() {
            progress.say(&format!(
                "{}: writing {} bytes",
                family.as_k8s_str(),
                p.payload().len()
            ));
        }
        let mut timer = kpinspect_node::PhaseTimer::from_env();
        let report = p.write(node).map_err(UsageError::from);
        progress.done();
        timer.mark(&format!("{}: write", family.as_k8s_str()));
        let report = report?;
        let mut value =
            crate::report::iptables_family(family, &report.plan, &report.from, report.warnings());
        if !json {
            note!("kpinspect: {report}");
        }
        value["conntrack"] = conntrack_step(args, family, serving, false);
        timer.mark(&format!("{}: conntrack", family.as_k8s_str()));
        families.push(value);
    }
    if json {
        return print_apply_json(false, facts, &[], families, None);
    }
    Ok(ExitCode::SUCCESS)
}

/// Clears (or with `dry_run` lists) `family`'s stale UDP conntrack entries
/// unless `--no-conntrack-cleanup`: in text, says so on stderr; returns the
/// JSON report (null when skipped).
pub(crate) fn conntrack_step(
    args: &ApplyArgs,
    family: IpFamily,
    serving: &kpinspect_node::ServingEndpoints,
    dry_run: bool,
) -> serde_json::Value {
    if args.no_conntrack_cleanup {
        return serde_json::Value::Null;
    }
    let result = kpinspect_node::clear_stale_conntrack(&SystemConntrack, family, serving, dry_run);
    if args.format == ReportFormat::Text {
        say_conntrack(family, &result);
    }
    crate::report::conntrack(family, &result)
}

/// Prints an apply's JSON report.
pub(crate) fn print_apply_json(
    dry_run: bool,
    facts: &[String],
    sysctls: &[serde_json::Value],
    families: Vec<serde_json::Value>,
    drain: Option<serde_json::Value>,
) -> Result<ExitCode> {
    crate::write_stdout(
        &(serde_json::to_string_pretty(&serde_json::json!({
            "dry_run": dry_run,
            "node": facts,
            "sysctls": sysctls,
            "families": families,
            "drain": drain,
        }))? + "\n"),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The live node as an IPVS-mode cycle sees it.
fn ipvs_parts(node: &LiveNode) -> kpinspect_node::NodeParts<'_, LiveNode, SystemIpvs, SystemLinks> {
    kpinspect_node::NodeParts {
        rules: node,
        ipvs: &SystemIpvs,
        links: &SystemLinks,
    }
}

/// Reads the live node and plans IPVS mode for each family: (family,
/// plan), with the plans' warnings printed.
fn plan_ipvs_families(
    inputs: &Inputs,
    args: &NodeArgs,
    node_port_range: std::ops::RangeInclusive<u16>,
    node: &LiveNode,
    guard: Option<Guard>,
) -> Result<IpvsFamilies> {
    let mut timer = kpinspect_node::PhaseTimer::from_env();
    let (config, facts) = live_config(inputs, args, node, guard)?;
    timer.mark("node facts");
    let mut owner = Ownership::new(&config, &inputs.cluster);
    owner.node_port_range = node_port_range;
    let parts = ipvs_parts(node);
    let mut planned = Vec::new();
    let mut serving = Vec::new();
    // The node's IPVS state (both families' virtual servers, every set,
    // kube-ipvs0's addresses) is read once, for the first family, and
    // serves each family's plan: nothing is written in between.
    let mut node_state = None;
    for family in live_families(args, node) {
        let state = ProxyState::build(&inputs.cluster, &config, family);
        let want = kpinspect_core::mode::ipvs::compile(&state, &config);
        timer.mark(&format!("{}: compile", family.as_k8s_str()));
        let node_state = match &mut node_state {
            Some(s) => s,
            None => {
                let s = kpinspect_node::read_ipvs_node(&parts)
                    .map_err(|e| UsageError::msg(e.to_string()))?;
                timer.mark(&format!(
                    "read IPVS, ipsets, kube-ipvs0 ({} virtual servers)",
                    s.servers.len()
                ));
                node_state.insert(s)
            }
        };
        let p = kpinspect_node::plan_ipvs_apply_from(&parts, node_state, &want, &owner)
            .map_err(|e| UsageError::msg(e.to_string()))?;
        timer.reset();
        for w in p.warnings() {
            note!("kpinspect: warning: {w}");
        }
        if let (Some(guard), Some(refusal)) = (guard, p.refusal()) {
            guard.check(&refusal)?;
        }
        serving.push(p.serving_endpoints(&state));
        planned.push(p);
        timer.mark(&format!(
            "{}: guard, serving endpoints",
            family.as_k8s_str()
        ));
    }
    // Read after planning: reading IPVS loads ip_vs, which brings its
    // sysctls.
    let sysctls = ipvs_sysctls_wanted(&config);
    let sysctl_diff = kpinspect_node::diff_sysctls(&SystemSysctls::new(), &sysctls)
        .map_err(|e| UsageError::msg(e.to_string()))?;
    timer.mark("sysctls read");
    Ok(IpvsFamilies {
        facts,
        planned,
        serving,
        sysctls,
        sysctl_diff,
    })
}

/// What [`plan_ipvs_families`] found.
struct IpvsFamilies {
    facts: Vec<String>,
    planned: Vec<kpinspect_node::PlannedIpvsApply>,
    /// Per plan: what kube-proxy's conntrack reconciler keeps.
    serving: Vec<kpinspect_node::ServingEndpoints>,
    /// IPVS mode's sysctls for this node's kernel.
    sysctls: Vec<kpinspect_node::DesiredSysctl>,
    /// Those whose value differs.
    sysctl_diff: Vec<kpinspect_node::SysctlDiff>,
}

/// IPVS mode's sysctls for `config` on the running kernel (its release
/// read from `kernel/osrelease`; unreadable counts as the oldest).
fn ipvs_sysctls_wanted(config: &ProxyConfig) -> Vec<kpinspect_node::DesiredSysctl> {
    let kernel = SystemSysctls::new()
        .read_sysctl("kernel/osrelease")
        .ok()
        .flatten()
        .and_then(|r| kpinspect_node::KernelVersion::parse(r.trim()))
        .unwrap_or(kpinspect_node::KernelVersion::new(0, 0, 0));
    kpinspect_node::ipvs_sysctls(&config.ipvs, kernel)
}

/// Whether kube-proxy would write `d` (not only warn about it).
fn sysctl_written(d: &kpinspect_node::SysctlDiff) -> bool {
    d.policy == kpinspect_node::SysctlPolicy::Ensure
}

/// `d` as the `sysctl` command that writes it.
fn sysctl_command(d: &kpinspect_node::SysctlDiff) -> String {
    format!("sysctl -w {}={}", d.name.replace('/', "."), d.want)
}

/// What a plan would write, one command a line, then the iptables payload.
fn ipvs_plan_text(p: &kpinspect_node::PlannedIpvsApply, several: bool) -> String {
    let mut out = String::new();
    if several && !p.is_empty() {
        let _ = writeln!(out, "# {}", p.ipvs.family.as_k8s_str());
    }
    let (before, after): (Vec<_>, Vec<_>) = p.ipvs.ops.iter().partition(|o| !o.after_restore());
    for op in before {
        let _ = writeln!(out, "{op}");
    }
    if !p.rules.is_empty() {
        let _ = writeln!(out, "# iptables-restore --noflush");
        out.push_str(&p.rules.payload);
    }
    for op in after {
        let _ = writeln!(out, "{op}");
    }
    out
}

/// `kpinspect diff --mode ipvs`: the live node against the cluster files.
fn diff_ipvs(args: &DiffArgs, inputs: &Inputs) -> Result<ExitCode> {
    let node_port_range = args.node_ports.resolve()?;
    if !args.saves.is_empty() {
        anyhow::bail!(UsageError::msg(
            "diff --mode ipvs compares with the live node only (drop --iptables-save)"
        ));
    }
    let node = live::node()?;
    let IpvsFamilies {
        facts,
        planned,
        sysctl_diff,
        ..
    } = plan_ipvs_families(inputs, &args.cluster.node, node_port_range, &node, None)?;
    let in_sync = planned.iter().all(|p| p.is_empty()) && !sysctl_diff.iter().any(sysctl_written);
    let out = match args.format {
        DiffFormat::Json => {
            let families: Vec<serde_json::Value> = planned
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "family": p.ipvs.family,
                        "compared_with": p.from,
                        "ipvs": p.ipvs,
                        "iptables_payload": p.rules.payload,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({
                "node": facts,
                "families": families,
                "sysctls": sysctl_diff
                    .iter()
                    .map(|d| serde_json::json!({
                        "name": d.name,
                        "want": d.want,
                        "have": d.have,
                        "written_by_kube_proxy": sysctl_written(d),
                    }))
                    .collect::<Vec<_>>(),
                "in_sync": in_sync,
            }))? + "\n"
        }
        DiffFormat::Text => {
            let mut out = String::new();
            for f in &facts {
                let _ = writeln!(out, "node fact: {f}");
            }
            for d in &sysctl_diff {
                if sysctl_written(d) {
                    let _ = writeln!(out, "sysctl differs: {d}");
                } else {
                    let _ = writeln!(out, "sysctl differs (kube-proxy only warns): {d}");
                }
            }
            for p in &planned {
                out.push_str(&ipvs_plan_text(p, true));
                let _ = writeln!(
                    out,
                    "{}: IPVS mode {}",
                    p.ipvs.family.as_k8s_str(),
                    if p.is_empty() { "in sync" } else { "different" }
                );
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

/// `kpinspect apply --mode ipvs`: read, plan (guarded), write or print.
fn apply_ipvs(
    args: &ApplyArgs,
    inputs: &Inputs,
    guard: Guard,
    drain_timeout: Duration,
) -> Result<ExitCode> {
    let mut timer = kpinspect_node::PhaseTimer::from_env();
    let node_port_range = args.node_ports.resolve()?;
    // Detect, read, plan and write under one lock, as the iptables apply
    // does: the saves detection ran serve as the read of the rules
    // (nothing is written before it), one save fewer. Privileges first:
    // without CAP_NET_ADMIN the lock file is not ours to open either.
    kpinspect_node::require_net_admin("iptables-restore")
        .map_err(|e| UsageError::msg(e.to_string()))?;
    let _lock = live::lock()?;
    let node = live::node_keeping_saves()?;
    timer.mark("backend detection");
    let IpvsFamilies {
        facts,
        planned,
        serving,
        sysctls,
        sysctl_diff,
    } = plan_ipvs_families(
        inputs,
        &args.cluster.node,
        node_port_range,
        &node,
        Some(guard),
    )?;
    timer.reset();
    for d in sysctl_diff.iter().filter(|d| !sysctl_written(d)) {
        note!("kpinspect: warning: sysctl {d} (kube-proxy only warns)");
    }
    let json = args.format == ReportFormat::Json;
    if args.dry_run {
        for f in &facts {
            note!("kpinspect: {f}");
        }
        let several = planned.len() > 1;
        let mut out: String = sysctl_diff
            .iter()
            .filter(|d| sysctl_written(d))
            .map(|d| sysctl_command(d) + "\n")
            .collect();
        out.extend(planned.iter().map(|p| ipvs_plan_text(p, several)));
        let mut families = Vec::new();
        for (p, serving) in planned.iter().zip(&serving) {
            let mut family = crate::report::ipvs_family(&p.ipvs, &p.rules, &p.from, p.warnings());
            family["conntrack"] = conntrack_step(args, p.ipvs.family, serving, true);
            families.push(family);
        }
        let draining = planned.iter().map(|p| p.ipvs.draining.len()).sum::<usize>();
        if !drain_timeout.is_zero() && draining > 0 {
            note!(
                "kpinspect: would wait up to {} for {draining} draining real servers, deleting each as its connections end",
                kpinspect_node::seconds_text(drain_timeout)
            );
        }
        if json {
            let sysctls: Vec<_> = sysctl_diff
                .iter()
                .filter(|d| sysctl_written(d))
                .map(crate::report::sysctl)
                .collect();
            return print_apply_json(true, &facts, &sysctls, families, None);
        }
        crate::write_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    // kube-proxy sets its sysctls at start-up, before its first sync.
    let set = kpinspect_node::ensure_sysctls(&SystemSysctls::new(), &sysctls)
        .map_err(|e| UsageError::msg(e.to_string()))?;
    let set: Vec<_> = set.iter().filter(|d| sysctl_written(d)).collect();
    if !json {
        for d in &set {
            note!("kpinspect: sysctl set: {d}");
        }
    }
    timer.mark("sysctls written");
    let parts = ipvs_parts(&node);
    let mut draining = Vec::new();
    let mut families = Vec::new();
    for (p, serving) in planned.into_iter().zip(&serving) {
        let family = p.ipvs.family;
        let report = p
            .write(&parts)
            .map_err(|e| UsageError::msg(e.to_string()))?;
        timer.reset();
        if !json {
            note!("kpinspect: {report}");
        }
        let mut value = crate::report::ipvs_family(
            &report.ipvs,
            &report.rules,
            &report.from,
            report.warnings(),
        );
        draining.extend(report.ipvs.draining);
        // kube-proxy's reconciler works the same in IPVS mode.
        value["conntrack"] = conntrack_step(args, family, serving, false);
        families.push(value);
        timer.mark(&format!("{}: conntrack", family.as_k8s_str()));
    }
    // Graceful termination, bounded: every family written first.
    let mut drained = None;
    if !drain_timeout.is_zero() && !draining.is_empty() {
        if !json {
            note!(
                "kpinspect: waiting up to {} for {} draining real servers",
                kpinspect_node::seconds_text(drain_timeout),
                draining.len()
            );
        }
        let report = kpinspect_node::drain_real_servers(
            &parts,
            &draining,
            drain_timeout,
            kpinspect_node::DRAIN_POLL,
            &kpinspect_node::SystemClock::new(),
        )
        .map_err(|e| UsageError::msg(e.to_string()))?;
        if !json {
            for line in report.to_string().lines() {
                note!("kpinspect: {line}");
            }
        }
        drained = Some(crate::report::drain(&report));
    }
    if json {
        let sysctls: Vec<_> = set.iter().map(|d| crate::report::sysctl(d)).collect();
        return print_apply_json(false, &facts, &sysctls, families, drained);
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes (or with `dry_run` lists) `family`'s stale UDP conntrack
/// entries and says so; a failure is a warning (the rules are written).
pub(crate) fn clear_conntrack(
    family: IpFamily,
    serving: &kpinspect_node::ServingEndpoints,
    dry_run: bool,
) {
    say_conntrack(
        family,
        &kpinspect_node::clear_stale_conntrack(&SystemConntrack, family, serving, dry_run),
    );
}

/// Says what a conntrack clearing of `family` did on stderr (nothing when
/// there was nothing stale); a failure is a warning (the rules are
/// written).
fn say_conntrack(
    family: IpFamily,
    result: &Result<kpinspect_node::ConntrackReport, kpinspect_node::ConntrackError>,
) {
    match result {
        Ok(r) if r.stale.is_empty() => {}
        Ok(r) => note!("kpinspect: {r}"),
        Err(e) => note!(
            "kpinspect: warning: {}: stale UDP conntrack entries not cleared: {e}",
            family.as_k8s_str()
        ),
    }
}

/// Progress of a long apply on a terminal: one line, rewritten in place,
/// cleared before anything else is printed. Silent when stderr is not a
/// terminal.
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal as _;
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn say(&self, what: &str) {
        if self.on {
            note_raw!("\r\x1b[2Kkpinspect: {what}...");
        }
    }

    fn done(&self) {
        if self.on {
            note_raw!("\r\x1b[2K");
        }
    }
}

pub fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let node_port_range = args.node_ports.resolve()?;
    let scope = if args.stale_only {
        let config = args.config.as_ref().expect("clap requires --config");
        let node = NodeArgs::only_config(config.clone()).resolve()?;
        CleanupScope::StaleFor(node.config.mode)
    } else {
        match args.mode {
            Some(CleanupMode::Iptables) => CleanupScope::Mode(ProxyMode::Iptables),
            Some(CleanupMode::Ipvs) => CleanupScope::Mode(ProxyMode::Ipvs),
            Some(CleanupMode::Nftables) => return crate::nft_sync::cleanup_tables(&args),
            Some(CleanupMode::All) => CleanupScope::All,
            None => anyhow::bail!(UsageError::msg(
                "say what to remove: --mode iptables|ipvs|nftables|all, or --stale-only --config FILE"
            )),
        }
    };
    if !args.dry_run {
        refuse_if_kube_proxy_runs(args.force)?;
    }
    let node = live::node_with(args.backend.map(Backend::from))?;
    kpinspect_node::require_net_admin(&node.restore_program(IpFamily::V4))
        .map_err(|e| UsageError::msg(e.to_string()))?;
    let _lock = live::lock()?;
    let family = args.family.map(IpFamily::from);
    let planned =
        kpinspect_node::plan_cleanup(&node, &node, scope, family).map_err(UsageError::from)?;
    // kube-proxy's start-up cleanup (platformCleanup): iptables and IPVS
    // modes delete the nftables tables, nftables mode keeps them.
    let nft = match scope {
        CleanupScope::All
        | CleanupScope::StaleFor(ProxyMode::Iptables)
        | CleanupScope::StaleFor(ProxyMode::Ipvs) => Some(
            kpinspect_node::plan_nft_cleanup(
                &kpinspect_node::SystemNftables,
                args.family.map(IpFamily::from),
            )
            .map_err(|e| UsageError::msg(e.to_string()))?,
        ),
        _ => None,
    }
    .filter(|n| !n.is_empty());
    // IPVS mode's state besides rules and sets: its virtual servers and
    // kube-ipvs0, removed before the rules (the sets go last).
    let ipvs = if matches!(
        scope,
        CleanupScope::Mode(ProxyMode::Ipvs)
            | CleanupScope::All
            | CleanupScope::StaleFor(ProxyMode::Iptables)
            | CleanupScope::StaleFor(ProxyMode::Nftables)
    ) {
        let node_ips =
            kpinspect_node::local_addresses().map_err(|e| UsageError::msg(e.to_string()))?;
        Some(
            kpinspect_node::plan_ipvs_cleanup(
                &ipvs_parts(&node),
                &node_ips,
                node_port_range,
                family,
            )
            .map_err(|e| UsageError::msg(e.to_string()))?,
        )
    } else {
        None
    };
    let ipvs_changes = ipvs.as_ref().is_some_and(|i| !i.is_empty()) || nft.is_some();
    // The iptables report's "nothing to remove" is not the whole story
    // when IPVS state goes.
    let quiet = |empty: bool, kept: bool| ipvs_changes && empty && !kept;
    // iptables mode's nfacct counters go with its rules, when no rule of
    // any family uses them any more.
    let counters = matches!(
        scope,
        CleanupScope::Mode(ProxyMode::Iptables) | CleanupScope::All
    );
    let json = args.format == ReportFormat::Json;
    if args.dry_run {
        // A counter its rules use now is free once they are gone.
        let would = if counters {
            cleanup_kube_proxy_counters(&SystemNfAcct, true).unwrap_or_default()
        } else {
            Vec::new()
        };
        if json {
            // As the text says: each goes once no rule uses it.
            let would: Vec<CounterCleanup> = would
                .iter()
                .map(|c| {
                    let (CounterCleanup::Removed(n) | CounterCleanup::InUse(n)) = c;
                    CounterCleanup::Removed(n)
                })
                .collect();
            return print_cleanup_json(
                true,
                ipvs.as_ref(),
                nft.as_ref(),
                &planned.families,
                &planned.plan,
                &would,
            );
        }
        let mut commands = String::new();
        let mut list = String::new();
        if let Some(i) = &ipvs {
            commands.push_str(&i.commands());
            list.push_str(&i.to_string());
        }
        commands.push_str(&planned.restore_input());
        if let Some(n) = &nft {
            commands.push_str(&n.commands());
            list.push_str(&n.to_string());
        }
        crate::write_stdout(&commands)?;
        if !quiet(planned.is_empty(), !planned.plan.kept.is_empty()) {
            list.push_str(&planned.to_string());
        }
        for c in would {
            let (CounterCleanup::Removed(n) | CounterCleanup::InUse(n)) = c;
            let _ = writeln!(
                list,
                "would remove nfacct counter {n} (once no rule uses it)"
            );
        }
        let summary = CleanupSummary::of(&planned.plan, ipvs.as_ref(), nft.as_ref());
        note_raw!("{}", summary.with_list(&list, true, args.verbose));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let ipvs = match ipvs {
        Some(i) => Some(
            i.write(&ipvs_parts(&node))
                .map_err(|e| UsageError::msg(e.to_string()))?,
        ),
        None => None,
    };
    if let Some(done) = &ipvs {
        out.push_str(&done.to_string());
    }
    let report = planned.write(&node, &node).map_err(UsageError::from)?;
    if !quiet(report.is_empty(), !report.plan.kept.is_empty()) {
        out.push_str(&report.to_string());
    }
    let nft_done = match nft {
        Some(n) => {
            let done = n
                .write(&kpinspect_node::SystemNftables)
                .map_err(|e| UsageError::msg(e.to_string()))?;
            out.push_str(&done.to_string());
            Some(done)
        }
        None => None,
    };
    let mut removed_counters = Vec::new();
    if counters {
        match cleanup_kube_proxy_counters(&SystemNfAcct, false) {
            Ok(done) => {
                for c in &done {
                    let _ = writeln!(out, "{c}");
                }
                removed_counters = done;
            }
            Err(e) => note!("kpinspect: warning: nfacct counters not removed: {e}"),
        }
    }
    if !json {
        let summary = CleanupSummary::of(&report.plan, ipvs.as_ref(), nft_done.as_ref());
        out = summary.with_list(&out, false, args.verbose);
    }
    if json {
        return print_cleanup_json(
            false,
            ipvs.as_ref(),
            nft_done.as_ref(),
            &report.families,
            &report.plan,
            &removed_counters,
        );
    }
    crate::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// How many lines of a cleanup's list are printed without `--verbose`.
const CLEANUP_LIST_LINES: usize = 20;

/// What a cleanup removes, counted: chains, rules and ipsets per table,
/// IPVS mode's objects and the nftables tables.
#[derive(Debug, Default, PartialEq, Eq)]
struct CleanupSummary {
    /// (table, chains, rules), tables in the order first met.
    tables: Vec<(String, usize, usize)>,
    ipsets: usize,
    virtual_servers: usize,
    addresses: usize,
    link: bool,
    nft_tables: usize,
}

impl CleanupSummary {
    fn of(
        plan: &kpinspect_core::plan::CleanupPlan,
        ipvs: Option<&kpinspect_node::IpvsCleanup>,
        nft: Option<&kpinspect_node::NftCleanup>,
    ) -> CleanupSummary {
        let mut s = CleanupSummary::default();
        let mut slot = |table: &str| -> usize {
            match s.tables.iter().position(|(t, _, _)| t == table) {
                Some(i) => i,
                None => {
                    s.tables.push((table.to_string(), 0, 0));
                    s.tables.len() - 1
                }
            }
        };
        let chain_slots: Vec<usize> = plan.removed_chains.iter().map(|(t, _)| slot(t)).collect();
        let rule_slots: Vec<usize> = plan.removed_rules.iter().map(|(t, _)| slot(t)).collect();
        for i in chain_slots {
            s.tables[i].1 += 1;
        }
        for i in rule_slots {
            s.tables[i].2 += 1;
        }
        s.ipsets = plan.removed_ipsets.len();
        if let Some(i) = ipvs {
            s.virtual_servers = i.services.len();
            s.addresses = i.addresses.len();
            s.link = i.delete_link;
        }
        s.nft_tables = nft.map_or(0, |n| n.tables.len());
        s
    }

    fn is_empty(&self) -> bool {
        *self == CleanupSummary::default()
    }

    /// One line: `summary: would remove 12 chains, 30 rules (nat: 10
    /// chains, 25 rules; filter: ...), 17 ipsets, ...`.
    fn line(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would remove" } else { "removed" };
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let chains: usize = self.tables.iter().map(|t| t.1).sum();
        let rules: usize = self.tables.iter().map(|t| t.2).sum();
        let mut parts = vec![format!(
            "{}, {}",
            plural(chains, "chain", "chains"),
            plural(rules, "rule", "rules")
        )];
        if !self.tables.is_empty() {
            let per: Vec<String> = self
                .tables
                .iter()
                .map(|(t, c, r)| {
                    format!(
                        "{t}: {}, {}",
                        plural(*c, "chain", "chains"),
                        plural(*r, "rule", "rules")
                    )
                })
                .collect();
            parts[0].push_str(&format!(" ({})", per.join("; ")));
        }
        parts.push(plural(self.ipsets, "ipset", "ipsets"));
        if self.virtual_servers > 0 || self.addresses > 0 || self.link {
            parts.push(plural(
                self.virtual_servers,
                "virtual server",
                "virtual servers",
            ));
            parts.push(plural(
                self.addresses,
                "kube-ipvs0 address",
                "kube-ipvs0 addresses",
            ));
            if self.link {
                parts.push("the kube-ipvs0 link".into());
            }
        }
        if self.nft_tables > 0 {
            parts.push(plural(self.nft_tables, "nftables table", "nftables tables"));
        }
        format!("summary: {verb} {}\n", parts.join(", "))
    }

    /// The summary line (when anything goes), then the list: whole when
    /// short or `verbose`, else a line saying how to see it.
    fn with_list(&self, list: &str, dry_run: bool, verbose: bool) -> String {
        if self.is_empty() {
            return list.to_string();
        }
        let mut out = self.line(dry_run);
        let lines = list.lines().count();
        if verbose || lines <= CLEANUP_LIST_LINES {
            out.push_str(list);
        } else {
            let _ = writeln!(out, "({lines} lines listing each; --verbose prints them)");
        }
        out
    }
}

/// Prints a cleanup's JSON report.
fn print_cleanup_json(
    dry_run: bool,
    ipvs: Option<&kpinspect_node::IpvsCleanup>,
    nft: Option<&kpinspect_node::NftCleanup>,
    families: &[(IpFamily, String)],
    plan: &kpinspect_core::plan::CleanupPlan,
    counters: &[CounterCleanup],
) -> Result<ExitCode> {
    crate::write_stdout(
        &(serde_json::to_string_pretty(&serde_json::json!({
            "dry_run": dry_run,
            "ipvs": ipvs.map(crate::report::ipvs_cleanup),
            "iptables": crate::report::cleanup_plan(families, plan, !dry_run),
            "nftables": nft.map(crate::report::nft_cleanup),
            "nfacct_counters": crate::report::counters(counters),
        }))? + "\n"),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use kpinspect_core::netfilter::Ruleset;
    use kpinspect_core::plan::plan;
    use kpinspect_node::NodeError;

    use super::*;

    #[test]
    fn a_large_cleanup_prints_its_summary_and_the_list_only_when_verbose() {
        let mut plan = kpinspect_core::plan::CleanupPlan::default();
        for i in 0..30 {
            plan.removed_chains
                .push(("nat".into(), format!("KUBE-SEP-{i}")));
        }
        plan.removed_chains
            .push(("filter".into(), "KUBE-FORWARD".into()));
        plan.removed_rules
            .push(("filter".into(), "-A FORWARD -j KUBE-FORWARD".into()));
        plan.removed_ipsets.push("KUBE-CLUSTER-IP".into());
        let ipvs = kpinspect_node::IpvsCleanup {
            services: vec![],
            kept_services: vec![],
            addresses: vec!["10.0.0.1".parse().unwrap()],
            delete_link: true,
            kept_link: None,
            written: false,
        };
        let s = CleanupSummary::of(&plan, Some(&ipvs), None);
        let list: String = plan
            .removed_chains
            .iter()
            .map(|(t, c)| format!("would remove chain {t} {c}\n"))
            .collect();
        let short = s.with_list(&list, true, false);
        assert_eq!(
            short.lines().next().unwrap(),
            "summary: would remove 31 chains, 1 rule (nat: 30 chains, 0 rules; filter: 1 chain, 1 rule), 1 ipset, 0 virtual servers, 1 kube-ipvs0 address, the kube-ipvs0 link"
        );
        assert!(!short.contains("KUBE-SEP-3"), "{short}");
        assert!(
            short.ends_with("(31 lines listing each; --verbose prints them)\n"),
            "{short}"
        );
        let long = s.with_list(&list, true, true);
        assert!(
            long.contains("would remove chain nat KUBE-SEP-29\n"),
            "{long}"
        );
        assert_eq!(long.lines().count(), 32);
        // A short list is printed whole; nothing at all has no summary.
        let few = "would remove chain nat KUBE-SEP-0\n";
        assert_eq!(s.with_list(few, false, false).lines().count(), 2);
        let none = CleanupSummary::of(&Default::default(), None, None);
        assert_eq!(
            none.with_list("nothing to remove\n", false, false),
            "nothing to remove\n"
        );
    }

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

//! Command-line arguments: clap's raw structs, then validation into values
//! of the libraries (ripgrep's raw → validated split).

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kpinspect_core::config::{ProxyConfig, ProxyMode};
use kpinspect_core::net::{IpFamily, IpNet, parse_cidr_sloppy, parse_ip_sloppy};

use crate::UsageError;

/// kpinspect: what kube-proxy programs on a Linux node.
#[derive(Debug, Parser)]
#[command(name = "kpinspect", version, about, long_about = None)]
pub struct Cli {
    /// Print only the output asked for and errors: no warnings, notes or
    /// progress on stderr (golden check: only failures and the summary).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile Services and EndpointSlices to what kube-proxy writes.
    Compile(CompileArgs),
    /// Show, per Service, what the node's iptables rules do, and what is stale.
    Dump(DumpArgs),
    /// Walk a new connection through the node's rules and list every outcome.
    Trace(TraceArgs),
    /// Compare what kube-proxy should have programmed with the node (exit 1 if different).
    Diff(DiffArgs),
    /// Bring the node's rules to what kube-proxy should have programmed, minimally.
    Apply(ApplyArgs),
    /// Remove kube-proxy's state: one mode's, or only another mode's leftovers.
    Cleanup(CleanupArgs),
    /// Golden files: check what case directories compile to against their
    /// pinned outputs, or pin them (bless).
    #[command(subcommand)]
    Golden(GoldenCommand),
    /// Print a shell completion script (e.g. `kpinspect completions bash >
    /// /etc/bash_completion.d/kpinspect`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff; `kpinspect man | man -l -`), the same
    /// as `doc/kpinspect.1`.
    Man,
}

/// `kpinspect completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `kpinspect golden`.
#[derive(Debug, Subcommand)]
pub enum GoldenCommand {
    /// Compile every case of DIR and compare it with its expected files
    /// (after kube-proxy's normaliser): a unified diff per failing case;
    /// exit 1 on any mismatch, 0 when all pass, 2 on bad input.
    Check(GoldenArgs),
    /// Write the expected files of every case of DIR from what it compiles
    /// to (refused when CI is set, unless --force).
    Bless(GoldenBlessArgs),
}

#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// A case directory (with cluster.yaml), or a directory of cases.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GoldenBlessArgs {
    #[command(flatten)]
    pub golden: GoldenArgs,
    /// Bless even though the CI environment variable is set.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// `iptables-save` output to compare with (default: the live node).
    #[arg(long = "iptables-save", value_name = "FILE")]
    pub saves: Vec<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: DiffFormat,
    #[command(flatten)]
    pub node_ports: NodePortRangeArg,
}

/// How `diff` reports.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DiffFormat {
    /// For people, per family: `FAMILY: compared with SOURCE`, one line per
    /// service port with its state (in sync, missing, stale, rules differ,
    /// endpoints differ with `+IP:PORT` added and `-IP:PORT` removed), then
    /// each differing chain (`missing|changed|stale chain TABLE CHAIN`)
    /// with the rules the node lacks (`+ RULE`) and has in excess (`- RULE`),
    /// missing jump rules, set and map elements (nftables), and
    /// `FAMILY: in sync|different`. `+` lines are green and `-` lines red
    /// on a terminal (never with NO_COLOR or when piped).
    Text,
    /// One JSON object: {"node": ["fact"], "families": [{"family",
    /// "compared_with", "services", ...}], "in_sync"}.
    Json,
}

/// The cluster's node-port range, for IPVS mode's ownership.
#[derive(Debug, Args)]
pub struct NodePortRangeArg {
    /// IPVS mode: the cluster's node-port range (kube-apiserver's
    /// --service-node-port-range). A virtual server on a node IP with a
    /// port in it is provably kube-proxy's (apply and diff delete it when
    /// stale, cleanup removes it).
    #[arg(
        long = "node-port-range",
        value_name = "LOW-HIGH",
        default_value = "30000-32767"
    )]
    pub raw: String,
}

impl NodePortRangeArg {
    /// The validated range.
    pub fn resolve(&self) -> Result<RangeInclusive<u16>> {
        parse_node_port_range(&self.raw)
    }
}

/// Parses `LOW-HIGH` (ports 1 to 65535, LOW <= HIGH) as kube-apiserver's
/// `--service-node-port-range` is written.
pub fn parse_node_port_range(raw: &str) -> Result<RangeInclusive<u16>> {
    let bad = |why: &str| -> anyhow::Error {
        UsageError::msg(format!(
            "--node-port-range: {why} in {raw:?} (expected LOW-HIGH, e.g. 30000-32767)"
        ))
        .into()
    };
    let (low, high) = raw.trim().split_once('-').ok_or_else(|| bad("no '-'"))?;
    let port = |p: &str| -> Result<u16> {
        match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("invalid port {:?}", p.trim()))),
            Ok(n) => Ok(n),
        }
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(bad("LOW is above HIGH"));
    }
    Ok(low..=high)
}

/// Parses a duration as Go (and kube-proxy's flags) write one: a sequence
/// of decimal numbers with a unit each (`ms`, `s`, `m`, `h`), e.g. `30s`,
/// `1m30s`, `1.5s`; a bare `0` is zero.
pub fn parse_duration(flag: &str, raw: &str) -> Result<std::time::Duration> {
    let bad = || -> anyhow::Error {
        UsageError::msg(format!(
            "{flag}: invalid duration {raw:?} (expected e.g. 30s, 2m, 1m30s or 0)"
        ))
        .into()
    };
    let text = raw.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = text;
    let mut seconds = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        seconds += number * scale;
    }
    std::time::Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the iptables-restore payload instead of applying it (IPVS
    /// mode: the ipset, address and ipvsadm commands around it).
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even though a kube-proxy process is running on this node, or
    /// the input or plan would wipe it (no Services, no EndpointSlices, most
    /// service chains or kube-proxy virtual servers deleted).
    #[arg(long)]
    pub force: bool,
    /// Leave the UDP conntrack entries that point at removed endpoints
    /// (kube-proxy deletes them; without that a client keeps sending to a
    /// removed endpoint while its entry lives).
    #[arg(long)]
    pub no_conntrack_cleanup: bool,
    /// IPVS mode: how long to wait for removed TCP real servers draining at
    /// weight 0 (e.g. 30s, 2m, 1m30s). The apply polls IPVS every second,
    /// deletes each as its connections reach 0, and at the timeout deletes
    /// the rest. 0 (the default): leave them draining; a later apply
    /// deletes those whose connections ended (kube-proxy's graceful
    /// termination).
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub drain_timeout: String,
    #[command(flatten)]
    pub node_ports: NodePortRangeArg,
    /// Report format. text: one line per family on stderr (a dry run
    /// prints the payload or commands on stdout). json: one object on
    /// stdout, {"dry_run", "node": ["fact"], "sysctls": [{"name", "want",
    /// "have"}], "families": [{"family", "read_from", "in_sync",
    /// "iptables": {"payload", "chains_written", "rules_added",
    /// "rules_deleted", "chains_deleted", "chains_kept"}, "warnings",
    /// "conntrack": {"family", "deleted", "stale": [{"src", "src_port",
    /// "dst", "dst_port", "endpoint", "endpoint_port"}], "error"} | null;
    /// IPVS mode also "counts", "ipvs" (the plan: "ops", "kept",
    /// "draining"), "commands"; nftables mode "nftables": {"transaction",
    /// "operations", "chains_written", "chains_deleted", "elements_added",
    /// "elements_deleted", "sets", "elements"} instead of "iptables"}],
    /// "drain": {"timeout_seconds",
    /// "waited_seconds", "real_servers": [{"service", "address", "port",
    /// "end", "after_seconds", "active_connections",
    /// "inactive_connections"}]} | null}.
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CleanupMode {
    /// iptables mode's chains and jumps (with the chains both modes share).
    Iptables,
    /// IPVS mode's chains, jumps and ipsets (with the shared chains).
    Ipvs,
    /// nftables mode's `ip` and `ip6 kube-proxy` tables (nothing else).
    Nftables,
    /// Everything kube-proxy owns (every mode, nftables tables included).
    All,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Whose state to remove (not with --stale-only).
    #[arg(long, value_enum, conflicts_with = "stale_only")]
    pub mode: Option<CleanupMode>,
    /// Remove only the state of the mode the configuration does not use
    /// (leftovers of a mode switch); needs --config.
    #[arg(long, requires = "config")]
    pub stale_only: bool,
    /// The kube-proxy configuration (KubeProxyConfiguration or its ConfigMap).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print what would be removed and the payloads, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Clean up even though a kube-proxy process is running on this node.
    #[arg(long)]
    pub force: bool,
    /// Only this family's rules (default: both).
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Clean this iptables backend instead of the one the node uses (the
    /// other backend's kube-proxy chains are stale; see `dump`'s
    /// both-backends warning).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    #[command(flatten)]
    pub node_ports: NodePortRangeArg,
    /// List every chain, rule, set and table removed, however many (by
    /// default a large cleanup prints a summary per table only).
    #[arg(long, short)]
    pub verbose: bool,
    /// Report format. text: a summary (chains, rules and sets per table;
    /// virtual servers, addresses, nftables tables), then what goes and
    /// stays, one line each (more than 20 lines only with --verbose) (a dry run
    /// prints the commands and payloads on stdout, the lines on stderr).
    /// json: one object on stdout, {"dry_run", "ipvs": {"removed",
    /// "virtual_servers": [{"address", "protocol", "port"}], "addresses",
    /// "link", "kept_virtual_servers": [{"service", "why"}], "kept_link":
    /// {"link", "why"} | null} | null, "iptables": {"removed",
    /// "payloads": [{"family", "program", "payload"}], "ipset_payload",
    /// "chains": [{"table", "chain"}], "rules": [{"table", "rule"}],
    /// "ipsets", "kept": [{"what", "why"}]} | null, "nftables": {"removed",
    /// "tables": [{"family", "table"}]} | null, "nfacct_counters": [{"name",
    /// "removed"}]} ("removed": false for what is kept; in a dry run it
    /// says what would be).
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: ReportFormat,
}

/// How `apply` and `cleanup` report.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// For people: one line per change or family.
    Text,
    /// One JSON object on stdout, with the stable fields listed above.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TraceFormat {
    /// For people: one line per outcome, then each outcome's rule path.
    Text,
    /// Stable JSON (see the README).
    Json,
    /// A Graphviz DOT graph: the packet, the chains it goes through (each
    /// edge the rule that sent it on), each outcome with its probability
    /// and masquerade.
    Dot,
    /// The DOT graph rendered with Graphviz's `dot -Tsvg` (needs graphviz).
    Svg,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The connection's source address.
    #[arg(long, value_name = "IP")]
    pub src: String,
    /// The destination: `IP:PORT/PROTO` (`[IPv6]:PORT/PROTO`; PROTO defaults to tcp).
    #[arg(long, value_name = "IP:PORT/PROTO")]
    pub dst: String,
    /// `iptables-save` output to read (repeatable; the one of the destination's
    /// family is used; `-` for stdin). Default: the live node.
    #[arg(long = "iptables-save", value_name = "FILE")]
    pub saves: Vec<PathBuf>,
    /// An address of the node (repeatable): decides where the walk starts and
    /// what `--dst-type LOCAL` matches. Loopback is always local.
    #[arg(long = "local-ip", value_name = "IP")]
    pub local_ips: Vec<String>,
    /// The interface the packet arrives on (else rules matching `-i` branch).
    #[arg(long, value_name = "NAME")]
    pub in_interface: Option<String>,
    /// The proxy mode of the rules (default: iptables, or ipvs with
    /// `--ipvsadm`). With `ipvs`, IPVS's virtual servers take the packets
    /// sent to them and `-m set` is decided from the ipsets' members; on a
    /// live node both are read from the kernel.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// IPVS mode: `ipvsadm -Sn` or `ipvsadm -Ln` output to read (needed
    /// with `--iptables-save`).
    #[arg(long, value_name = "FILE")]
    pub ipvsadm: Option<PathBuf>,
    /// IPVS mode: `ipset save` or `ipset list` output to read with
    /// `--ipvsadm` (without it, `-m set` matches are conditions).
    #[arg(long, value_name = "FILE", requires = "ipvsadm")]
    pub ipset: Option<PathBuf>,
    /// nftables mode: `nft list ruleset|table` or `nft -j list ...` output
    /// to read (`-` for stdin); the packet's family's `kube-proxy` table is
    /// traced.
    #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
    pub nft: Option<PathBuf>,
    /// nftables mode: trace through the table kube-proxy would program for
    /// these Services and EndpointSlices (kubectl output, repeatable; `-`
    /// for stdin), compiled with `--config` and the node flags below.
    #[arg(long = "cluster", value_name = "FILE")]
    pub cluster: Vec<PathBuf>,
    /// With `--cluster`: kube-proxy's configuration file.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub config: Option<PathBuf>,
    /// With `--cluster`: the node's name (which endpoints are local).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub hostname: Option<String>,
    /// With `--cluster`: an address of the node (repeatable); also a local
    /// address of the trace.
    #[arg(long = "node-ip", value_name = "IP", requires = "cluster")]
    pub node_ips: Vec<String>,
    /// With `--cluster`: the cluster's pod CIDR (the local-traffic detector).
    #[arg(long, value_name = "CIDR", requires = "cluster")]
    pub cluster_cidr: Option<String>,
    /// With `--cluster`: the masquerade mark (e.g. `0x4000`).
    #[arg(long, value_name = "MARK", requires = "cluster")]
    pub masquerade_mark: Option<String>,
    /// With `--cluster`: the cluster's service CIDRs (comma-separated).
    #[arg(long, value_name = "CIDR", requires = "cluster")]
    pub service_cidr: Option<String>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: TraceFormat,
}

impl TraceArgs {
    /// The node arguments of `--cluster` (nftables mode).
    pub fn node_args(&self) -> NodeArgs {
        NodeArgs {
            config: self.config.clone(),
            mode: Some(ModeArg::Nftables),
            hostname: self.hostname.clone(),
            node_ips: self.node_ips.clone(),
            cluster_cidr: self.cluster_cidr.clone(),
            node_pod_cidrs: vec![],
            node_zone: None,
            family: None,
            no_nfacct: false,
            no_random_fully: false,
            masquerade_mark: self.masquerade_mark.clone(),
            service_cidr: self.service_cidr.clone(),
            no_object_comments: false,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DumpFormat {
    /// For people: one block per service port (also spelt `text`).
    #[value(alias = "text")]
    Table,
    /// Stable JSON (see the README).
    Json,
    /// A Graphviz DOT graph of each service port's path: entry → dispatch
    /// (KUBE-SERVICES / nftables maps / IPVS ipset matches) → service
    /// chains or virtual servers → endpoint chains → endpoints, edges
    /// labelled with the match and the probability; local endpoints
    /// filled, masquerading edges and chains with anomalies marked.
    Dot,
    /// The DOT graph rendered with Graphviz's `dot -Tsvg` (needs graphviz).
    Svg,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// `iptables-save` output to read (repeatable; `-` for stdin). Default:
    /// the live node (both families).
    #[arg(long = "iptables-save", value_name = "FILE")]
    pub saves: Vec<PathBuf>,
    /// IPVS mode: `ipvsadm -Ln` or `ipvsadm -Sn` output to read (`-` for
    /// stdin): its virtual servers are the Services. Then only the
    /// `--iptables-save` files given are read, not the live node.
    #[arg(long, value_name = "FILE")]
    pub ipvsadm: Option<PathBuf>,
    /// IPVS mode: `ipset list` or `ipset save` output to read with
    /// `--ipvsadm` (tells cluster IPs from node ports without `--cluster`;
    /// set members without a virtual server are anomalies).
    #[arg(long, value_name = "FILE", requires = "ipvsadm")]
    pub ipset: Option<PathBuf>,
    /// nftables mode: `nft list ruleset|table` or `nft -j list ...` output
    /// to read (repeatable; `-` for stdin; text or JSON, detected). Without
    /// it, `--mode nftables` reads the live node (both families) and its
    /// iptables rules (leftovers of another mode).
    #[arg(long = "nft", value_name = "FILE")]
    pub nft: Vec<PathBuf>,
    /// kubectl output of the cluster, to name chains that carry no comment
    /// (IPVS mode: to name the Services of the virtual servers).
    #[arg(long = "cluster", value_name = "FILE")]
    pub clusters: Vec<PathBuf>,
    /// Only this Service (`NAMESPACE/NAME`) and the anomalies of its chains
    /// (exit status 1 when no rule names it).
    #[arg(long, value_name = "NS/NAME")]
    pub service: Option<String>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "table"
    )]
    pub format: DumpFormat,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    Iptables,
    Ipvs,
    /// compile (its transaction and the normalised state) and dump (`--nft`
    /// listings or the live node).
    Nftables,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl From<FamilyArg> for IpFamily {
    fn from(f: FamilyArg) -> IpFamily {
        match f {
            FamilyArg::Ipv4 => IpFamily::V4,
            FamilyArg::Ipv6 => IpFamily::V6,
        }
    }
}

/// An iptables backend.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    /// `iptables-legacy`.
    Legacy,
    /// `iptables-nft`.
    Nft,
}

impl From<BackendArg> for kpinspect_node::Backend {
    fn from(b: BackendArg) -> kpinspect_node::Backend {
        match b {
            BackendArg::Legacy => kpinspect_node::Backend::Legacy,
            BackendArg::Nft => kpinspect_node::Backend::Nft,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// The raw iptables-restore input, service ports sorted by name
    /// (nftables mode: the same as nft).
    Restore,
    /// The same, after kube-proxy's test normaliser (iptables mode:
    /// sortIPTablesRules; nftables mode: the table's state after the
    /// transaction, through sortNFTablesTransaction).
    Sorted,
    /// nftables mode: the transaction kube-proxy gives `nft -f`, service
    /// ports sorted by name.
    Nft,
    /// IPVS mode: the virtual and real servers as `ipvsadm -Sn` prints them
    /// (loadable with `ipvsadm -R`).
    Ipvsadm,
    /// IPVS mode: the ipsets as `ipset save` prints them (loadable with
    /// `ipset restore`).
    Ipset,
    /// IPVS mode: the addresses bound on kube-ipvs0, one CIDR per line.
    Addresses,
    /// IPVS and nftables mode: all of it as JSON, one object per IP family.
    Json,
}

/// The node and its kube-proxy: configuration file and flags.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The kube-proxy configuration: a KubeProxyConfiguration, or the
    /// kube-proxy ConfigMap holding one (`data["config.conf"]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Proxy mode (default: the configuration's mode, else iptables).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// The node's name (overrides hostnameOverride; default: this machine's hostname).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// One of the node's IP addresses (repeatable; the first of each family is primary).
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<String>,
    /// The cluster's pod CIDR(s) (overrides clusterCIDR; comma-separated).
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<String>,
    /// The node's pod CIDR(s), for detectLocalMode NodeCIDR (repeatable).
    #[arg(long = "node-pod-cidr", value_name = "CIDR")]
    pub node_pod_cidrs: Vec<String>,
    /// The node's topology.kubernetes.io/zone label, for topology hints.
    #[arg(long, value_name = "ZONE")]
    pub node_zone: Option<String>,
    /// IP family to compile (default: the node's or cluster's family, else ipv4).
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// The node cannot create nfacct counters (old kernel or iptables).
    #[arg(long)]
    pub no_nfacct: bool,
    /// iptables is older than 1.6.2 (no MASQUERADE --random-fully).
    #[arg(long)]
    pub no_random_fully: bool,
    /// Print this literal masquerade mark instead of the one derived from
    /// masqueradeBit (kube-proxy's unit tests use 0x4000).
    #[arg(long, value_name = "MARK")]
    pub masquerade_mark: Option<String>,
    /// The cluster's service CIDR(s) (its ServiceCIDR objects;
    /// comma-separated): nftables mode drops traffic to their unallocated
    /// addresses.
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<String>,
    /// nftables refuses comments on tables, chains, sets and maps (kernel
    /// before 5.10 or nft before 0.9.7): kube-proxy then writes none.
    #[arg(long)]
    pub no_object_comments: bool,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_name = "FORMAT",
        value_enum,
        default_value = "restore"
    )]
    pub format: FormatArg,
}

/// The node and the cluster files: what `compile`, `diff` and `apply`
/// compile.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// kubectl output: `kubectl get svc,endpointslices -A -o yaml` (or json); `-` for stdin.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// What the node arguments resolve to.
pub struct Node {
    pub config: ProxyConfig,
    pub family: IpFamily,
}

impl NodeArgs {
    /// Node arguments that only name a configuration file.
    pub fn only_config(config: PathBuf) -> NodeArgs {
        NodeArgs {
            config: Some(config),
            mode: None,
            hostname: None,
            node_ips: vec![],
            cluster_cidr: None,
            node_pod_cidrs: vec![],
            node_zone: None,
            family: None,
            no_nfacct: false,
            no_random_fully: false,
            masquerade_mark: None,
            service_cidr: None,
            no_object_comments: false,
        }
    }

    pub fn resolve(&self) -> Result<Node> {
        let mut config = ProxyConfig::default();
        if let Some(path) = &self.config {
            let name = path.display().to_string();
            let text = crate::read_input(path)?;
            if let Some(m) =
                crate::sniff::misplaced(&name, &text, "a kube-proxy configuration (--config)")
            {
                bail!(UsageError::msg(m));
            }
            let kpc =
                kpinspect_k8s::parse_kube_proxy_config(&text, &name).map_err(UsageError::from)?;
            kpc.apply_to(&mut config).map_err(UsageError::from)?;
        }
        if let Some(mode) = self.mode {
            config.mode = match mode {
                ModeArg::Iptables => ProxyMode::Iptables,
                ModeArg::Ipvs => ProxyMode::Ipvs,
                ModeArg::Nftables => ProxyMode::Nftables,
            };
        }
        if let Some(h) = &self.hostname {
            let h = h.trim();
            if h.is_empty() {
                bail!(UsageError::msg("--hostname: empty hostname is invalid"));
            }
            config.node.name = h.to_lowercase();
        }
        if config.node.name.is_empty() {
            config.node.name = kpinspect_node::hostname().unwrap_or_default();
        }
        for ip in &self.node_ips {
            let parsed: IpAddr = parse_ip_sloppy(ip.trim())
                .ok_or_else(|| UsageError::msg(format!("--node-ip: invalid IP address {ip:?}")))?;
            config.node.ips.push(parsed);
        }
        if let Some(c) = &self.cluster_cidr {
            config.cluster_cidrs = parse_cidrs(c.split(','), "--cluster-cidr")?;
        }
        config.node.pod_cidrs = parse_cidrs(
            self.node_pod_cidrs.iter().map(String::as_str),
            "--node-pod-cidr",
        )?;
        if let Some(z) = &self.node_zone {
            config.node.zone = Some(z.clone());
        }
        if self.no_nfacct {
            config.node.nfacct = false;
        }
        if self.no_random_fully {
            config.node.random_fully = false;
        }
        if let Some(m) = &self.masquerade_mark {
            config.iptables.masquerade_mark = Some(m.clone());
            config.nftables.masquerade_mark = Some(m.clone());
        }
        if let Some(c) = &self.service_cidr {
            config.service_cidrs = parse_cidrs(c.split(','), "--service-cidr")?;
        }
        if self.no_object_comments {
            config.node.nft_object_comments = false;
        }
        let family = match self.family {
            Some(f) => f.into(),
            None => config.default_family(),
        };
        Ok(Node { config, family })
    }
}

fn parse_cidrs<'a>(items: impl Iterator<Item = &'a str>, flag: &str) -> Result<Vec<IpNet>> {
    items
        .map(|c| {
            parse_cidr_sloppy(c.trim())
                .ok_or_else(|| UsageError::msg(format!("{flag}: invalid CIDR {c:?}")).into())
        })
        .collect::<Result<Vec<_>>>()
        .context("invalid argument")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        use std::time::Duration;
        let d = |s: &str| parse_duration("--drain-timeout", s);
        assert_eq!(d("0").unwrap(), Duration::ZERO);
        assert_eq!(d("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(d("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(d("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "30", "s", "-1s", "1x", "1.2.3s", "1e400h"] {
            let e = d(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--drain-timeout: invalid duration"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn node_port_ranges_parse_and_bad_ones_say_why() {
        assert_eq!(parse_node_port_range("30000-32767").unwrap(), 30000..=32767);
        assert_eq!(parse_node_port_range(" 80 - 80 ").unwrap(), 80..=80);
        for (bad, why) in [
            ("30000", "no '-'"),
            ("0-100", "invalid port \"0\""),
            ("1-65536", "invalid port \"65536\""),
            ("a-2", "invalid port \"a\""),
            ("32767-30000", "LOW is above HIGH"),
        ] {
            let e = parse_node_port_range(bad).unwrap_err().to_string();
            assert!(e.starts_with("--node-port-range: "), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
    }
}

//! Command-line arguments: clap's raw structs, then validation into values
//! of the libraries (ripgrep's raw → validated split).

use std::net::IpAddr;
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
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// `iptables-save` output to compare with (default: the live node).
    #[arg(long = "iptables-save", value_name = "FILE")]
    pub saves: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TraceFormat,
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
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TraceFormat {
    /// For people: one line per outcome, then each outcome's rule path.
    Text,
    /// Stable JSON (see the README).
    Json,
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
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TraceFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DumpFormat {
    /// For people: one block per service port.
    Table,
    /// Stable JSON (see the README).
    Json,
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
    /// kubectl output of the cluster, to name chains that carry no comment
    /// (IPVS mode: to name the Services of the virtual servers).
    #[arg(long = "cluster", value_name = "FILE")]
    pub clusters: Vec<PathBuf>,
    /// Only this Service (`NAMESPACE/NAME`) and the anomalies of its chains
    /// (exit status 1 when no rule names it).
    #[arg(long, value_name = "NS/NAME")]
    pub service: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: DumpFormat,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    Iptables,
    Ipvs,
    /// compile only (its transaction and the normalised state).
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
    #[arg(long, value_enum, default_value = "restore")]
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

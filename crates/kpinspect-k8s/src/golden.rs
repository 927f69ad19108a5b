//! Golden cases on disk: load a case directory, compile it the way
//! `kpinspect compile` does, compare with its pinned outputs, bless them —
//! and [`assert_golden`] for Rust tests.
//!
//! This is the one module of the crate that reads and writes files (a
//! golden case *is* a directory); the comparison itself is
//! [`kpinspect_core::golden`], which is pure.
//!
//! # A case directory
//!
//! The layout of kpinspect's own `fixtures/<mode>/<case>/`:
//!
//! | file | what it holds |
//! |---|---|
//! | `cluster.yaml` | kubectl output: Services, EndpointSlices (YAML or JSON; empty = no objects) |
//! | `config.yaml` | optional: the node's `KubeProxyConfiguration` (its `mode` picks the golden files) |
//! | `args` | optional: `kpinspect compile` node flags, one token per line (`--node-ip`, `--family`, `--mode`, `--hostname`, `--cluster-cidr`, `--node-pod-cidr`, `--node-zone`, `--masquerade-mark`, `--service-cidr`, `--no-nfacct`, `--no-random-fully`, `--no-object-comments`) |
//! | `existing_nat_chains` | optional (iptables mode): the node's nat chains before the sync, one per line; stale service chains among them are deleted in the compiled restore |
//! | `expected.txt` | iptables and nftables mode: `kpinspect compile --format sorted` |
//! | `expected-ipvsadm.txt`, `expected-ipset.txt` | IPVS mode: `compile --format ipvsadm` / `--format ipset` |
//! | `contains.txt`, `absent.txt` | optional line assertions: lines the sorted output must hold, texts it must not |
//!
//! The node's name is the configuration's `hostnameOverride` or `--hostname`,
//! never this machine's hostname, so a case compiles the same everywhere.
//!
//! A case whose expectations are only other files (kpinspect's own
//! `flows.yaml`, `chains.yaml`, `assertions.yaml`, `expected.yaml`, checked
//! by its test suite, or the rule counts of the mode directory's
//! `rule_counts.yaml`) is [`Outcome::Skipped`]; a case with no expectation
//! at all fails, asking to be blessed.
//!
//! # In a Rust test
//!
//! ```no_run
//! // tests/golden.rs of a crate that depends on kpinspect-k8s:
//! #[test]
//! fn web_service_compiles_as_pinned() {
//!     kpinspect_k8s::golden::assert_golden("tests/golden/web");
//! }
//! ```
//!
//! A mismatch panics with a unified diff. `KPINSPECT_BLESS=1 cargo test`
//! writes the expected files instead (refused when `CI` is set, as
//! `kpinspect golden bless` is without `--force`).

use std::fmt;
use std::path::{Path, PathBuf};

use kpinspect_core::config::{ProxyConfig, ProxyMode};
use kpinspect_core::golden::{Golden, check_lines, compare};
use kpinspect_core::mode::{iptables, ipvs, nftables};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::{IpFamily, IpNet, parse_cidr_sloppy, parse_ip_sloppy};
use kpinspect_core::proxy::ProxyState;
use thiserror::Error;

use crate::LoadError;

/// The environment variable that makes [`assert_golden`] write the
/// expected files instead of comparing (`KPINSPECT_BLESS=1`).
pub const BLESS_ENV: &str = "KPINSPECT_BLESS";

/// Files that hold expectations `golden check` does not evaluate (they
/// belong to kpinspect's own test suite).
const OTHER_EXPECTATIONS: &[&str] = &[
    "flows.yaml",
    "chains.yaml",
    "assertions.yaml",
    "expected.yaml",
    "rules.txt",
];

/// A golden case that cannot be used, or a file that cannot be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaseError {
    /// A file or directory that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A directory that is neither a case nor holds any.
    #[error("{}: no golden case here (a case is a directory with cluster.yaml)", .0.display())]
    NoCases(PathBuf),
    /// Bad cluster objects or configuration.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A bad `args` file.
    #[error("{}: {message}", path.display())]
    Args {
        /// The `args` file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An expected file that cannot be normalised.
    #[error("{}: {source}", path.display())]
    Expected {
        /// The expected file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kpinspect_core::golden::GoldenError,
    },
    /// The compiled iptables text does not normalise (a bug).
    #[error("{case}: {source}")]
    Normalize {
        /// The case.
        case: String,
        /// Why.
        #[source]
        source: iptables::NormalizeError,
    },
    /// The compiled nftables transaction does not apply (a bug).
    #[error("{case}: {source}")]
    Nftables {
        /// The case.
        case: String,
        /// Why.
        #[source]
        source: kpinspect_core::nft::FakeError,
    },
}

/// One case directory, loaded and validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Case {
    /// The case's name: its directory's name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// The cluster objects of `cluster.yaml`.
    pub cluster: Cluster,
    /// The configuration from `config.yaml` and `args`.
    pub config: ProxyConfig,
    /// `--family` of `args`, if given.
    pub family: Option<IpFamily>,
    /// `existing_nat_chains`.
    pub existing_nat_chains: Vec<String>,
    /// What loading `cluster.yaml` skipped, as kube-proxy would.
    pub warnings: Vec<crate::Warning>,
}

/// What checking one case found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Everything pinned matches.
    Pass {
        /// The outputs compared.
        compared: Vec<Golden>,
        /// The line assertions checked.
        assertions: usize,
    },
    /// Something differs.
    Fail {
        /// Per differing expected file: its name and the unified diff
        /// (`-` expected, `+` compiled).
        diffs: Vec<(String, String)>,
        /// Failed line assertions and missing expected files.
        failures: Vec<String>,
    },
    /// Nothing `golden check` evaluates: why.
    Skipped(String),
}

impl Outcome {
    /// Whether the case failed.
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Fail { .. })
    }
}

impl fmt::Display for Outcome {
    /// The report: nothing for a pass, the reason of a skip, each diff and
    /// failure of a mismatch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass { .. } => Ok(()),
            Outcome::Skipped(why) => writeln!(f, "{why}"),
            Outcome::Fail { diffs, failures } => {
                for (file, diff) in diffs {
                    writeln!(f, "{file} differs:")?;
                    f.write_str(diff)?;
                }
                for failure in failures {
                    writeln!(f, "{failure}")?;
                }
                Ok(())
            }
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaseError + '_ {
    move |source| CaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, CaseError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The cases of `dir`: `dir` itself when it holds `cluster.yaml`, else its
/// subdirectories that do, by name.
pub fn cases(dir: &Path) -> Result<Vec<Case>, CaseError> {
    if dir.join("cluster.yaml").is_file() {
        return Ok(vec![Case::load(dir)?]);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.join("cluster.yaml").is_file() {
            dirs.push(path);
        }
    }
    if dirs.is_empty() {
        return Err(CaseError::NoCases(dir.to_path_buf()));
    }
    dirs.sort();
    dirs.iter().map(|d| Case::load(d)).collect()
}

impl Case {
    /// Reads and validates the case in `dir`.
    pub fn load(dir: &Path) -> Result<Case, CaseError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let cluster_path = dir.join("cluster.yaml");
        let text = std::fs::read_to_string(&cluster_path).map_err(io(&cluster_path))?;
        let (cluster, warnings) =
            crate::load_objects(&text, &cluster_path.display().to_string())?.finish();
        let mut config = ProxyConfig::default();
        let config_path = dir.join("config.yaml");
        if let Some(text) = read_optional(&config_path)? {
            crate::parse_kube_proxy_config(&text, &config_path.display().to_string())?
                .apply_to(&mut config)?;
        }
        let args_path = dir.join("args");
        let family = match read_optional(&args_path)? {
            Some(text) => apply_args(&text, &mut config).map_err(|message| CaseError::Args {
                path: args_path.clone(),
                message,
            })?,
            None => None,
        };
        let existing_nat_chains = read_optional(&dir.join("existing_nat_chains"))?
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Case {
            name,
            dir: dir.to_path_buf(),
            cluster,
            config,
            family,
            existing_nat_chains,
            warnings,
        })
    }

    /// The outputs the case's proxy mode pins.
    pub fn goldens(&self) -> &'static [Golden] {
        match self.config.mode {
            ProxyMode::Iptables => &[Golden::Iptables],
            ProxyMode::Ipvs => &[Golden::Ipvsadm, Golden::Ipset],
            ProxyMode::Nftables => &[Golden::Nftables],
        }
    }

    /// The IP families compiled: `--family`, else both for a dual-stack
    /// cluster (as `kpinspect compile`), else the node's.
    pub fn families(&self) -> Vec<IpFamily> {
        if let Some(f) = self.family {
            return vec![f];
        }
        let has = |f: IpFamily| {
            self.cluster
                .services
                .iter()
                .any(|s| s.cluster_ips.iter().any(|ip| IpFamily::of(ip) == f))
        };
        if has(IpFamily::V4) && has(IpFamily::V6) {
            vec![IpFamily::V4, IpFamily::V6]
        } else {
            vec![self.config.default_family()]
        }
    }

    /// Compiles the case: each of [`Case::goldens`] with its text, as
    /// `kpinspect compile` prints it in that format.
    pub fn compile(&self) -> Result<Vec<(Golden, String)>, CaseError> {
        let families = self.families();
        let states: Vec<ProxyState> = families
            .iter()
            .map(|f| ProxyState::build(&self.cluster, &self.config, *f))
            .collect();
        let many = states.len() > 1;
        Ok(match self.config.mode {
            ProxyMode::Iptables => {
                let mut out = String::new();
                for state in &states {
                    if many {
                        out.push_str(match state.family {
                            IpFamily::V4 => "# iptables-restore\n",
                            IpFamily::V6 => "# ip6tables-restore\n",
                        });
                    }
                    let text =
                        iptables::compile_sync(state, &self.config, &self.existing_nat_chains)
                            .render();
                    out.push_str(&iptables::sort_iptables_rules(&text).map_err(|source| {
                        CaseError::Normalize {
                            case: self.name.clone(),
                            source,
                        }
                    })?);
                }
                vec![(Golden::Iptables, out)]
            }
            ProxyMode::Nftables => {
                let mut out = String::new();
                for state in &states {
                    let c = nftables::compile(state, &self.config);
                    if many {
                        out.push_str(&format!(
                            "# table {} {}\n",
                            c.transaction.family, c.transaction.table
                        ));
                    }
                    out.push_str(&c.sorted().map_err(|source| CaseError::Nftables {
                        case: self.name.clone(),
                        source,
                    })?);
                }
                vec![(Golden::Nftables, out)]
            }
            ProxyMode::Ipvs => {
                let compiled: Vec<ipvs::Compiled> = states
                    .iter()
                    .map(|s| ipvs::compile(s, &self.config))
                    .collect();
                vec![
                    (
                        Golden::Ipvsadm,
                        ipvs::ipvsadm_save(compiled.iter().flat_map(|c| &c.virtual_servers)),
                    ),
                    (
                        Golden::Ipset,
                        ipvs::ipset_save(compiled.iter().flat_map(|c| &c.ipsets)),
                    ),
                ]
            }
        })
    }

    /// Compiles the case and compares it with its expected files and line
    /// assertions.
    pub fn check(&self) -> Result<Outcome, CaseError> {
        let mut compared = Vec::new();
        let mut diffs = Vec::new();
        let mut failures = Vec::new();
        let mut missing = Vec::new();
        let compiled = self.compile()?;
        for (kind, actual) in &compiled {
            let path = self.dir.join(kind.file_name());
            let Some(expected) = read_optional(&path)? else {
                missing.push(kind.file_name());
                continue;
            };
            compared.push(*kind);
            if let Some(diff) = compare(*kind, &expected, actual)
                .map_err(|source| CaseError::Expected { path, source })?
            {
                diffs.push((kind.file_name().to_string(), diff));
            }
        }
        let contains = read_optional(&self.dir.join("contains.txt"))?;
        let absent = read_optional(&self.dir.join("absent.txt"))?;
        let mut assertions = 0;
        if contains.is_some() || absent.is_some() {
            let (contains, absent) = (contains.unwrap_or_default(), absent.unwrap_or_default());
            assertions = contains
                .lines()
                .chain(absent.lines())
                .filter(|l| !l.is_empty())
                .count();
            let text: String = compiled.iter().map(|(_, t)| t.as_str()).collect();
            failures.extend(check_lines(&text, &contains, &absent));
        }
        if compared.is_empty() && assertions == 0 {
            let mut others: Vec<&str> = OTHER_EXPECTATIONS
                .iter()
                .copied()
                .filter(|f| self.dir.join(f).exists())
                .collect();
            if self.named_in_rule_counts()? {
                others.push("../rule_counts.yaml");
            }
            if !others.is_empty() {
                return Ok(Outcome::Skipped(format!(
                    "no golden output ({} checked by kpinspect's test suite)",
                    others.join(", ")
                )));
            }
            failures.push(format!(
                "no expected output: {} missing (run `kpinspect golden bless`)",
                missing.join(", ")
            ));
        } else if !compared.is_empty() {
            // A mode pinning several outputs must pin them all.
            failures.extend(
                missing
                    .iter()
                    .map(|f| format!("{f} missing (run `kpinspect golden bless`)")),
            );
        }
        if diffs.is_empty() && failures.is_empty() {
            Ok(Outcome::Pass {
                compared,
                assertions,
            })
        } else {
            Ok(Outcome::Fail { diffs, failures })
        }
    }

    /// Whether the mode directory's `rule_counts.yaml` (kpinspect's own
    /// fixtures: kube-proxy's rule-count metrics) names this case.
    fn named_in_rule_counts(&self) -> Result<bool, CaseError> {
        let Some(parent) = self.dir.parent() else {
            return Ok(false);
        };
        let needle = format!("fixture: {}", self.name);
        Ok(
            read_optional(&parent.join("rule_counts.yaml"))?.is_some_and(|t| {
                t.lines()
                    .any(|l| l.trim_start_matches([' ', '-']) == needle)
            }),
        )
    }

    /// Whether [`Case::bless`] of a whole directory writes this case's
    /// files: it pins outputs already, or has no expectation at all (a new
    /// case). Cases with only other expectations (line assertions, the test
    /// suite's files) are left alone unless named directly.
    pub fn blessable(&self) -> bool {
        let pinned = self
            .goldens()
            .iter()
            .any(|g| self.dir.join(g.file_name()).exists());
        let other = ["contains.txt", "absent.txt"]
            .iter()
            .chain(OTHER_EXPECTATIONS)
            .any(|f| self.dir.join(f).exists());
        pinned || !(other || self.named_in_rule_counts().unwrap_or(true))
    }

    /// Writes the expected files from what the case compiles to (only
    /// those whose content changes); returns the files written.
    pub fn bless(&self) -> Result<Vec<PathBuf>, CaseError> {
        let mut written = Vec::new();
        for (kind, text) in self.compile()? {
            let path = self.dir.join(kind.file_name());
            if read_optional(&path)?.as_deref() == Some(text.as_str()) {
                continue;
            }
            std::fs::write(&path, &text).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Applies the node flags of an `args` file (one token per line, or
/// `--flag=value`) to `config`; returns `--family`.
fn apply_args(text: &str, config: &mut ProxyConfig) -> Result<Option<IpFamily>, String> {
    let mut tokens: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                tokens.push(flag.to_string());
                tokens.push(value.to_string());
            }
            _ => tokens.push(line.to_string()),
        }
    }
    let mut family = None;
    let mut it = tokens.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value (on the next line)"))
        };
        let cidrs = |v: &str| -> Result<Vec<IpNet>, String> {
            v.split(',')
                .map(|c| {
                    parse_cidr_sloppy(c.trim()).ok_or_else(|| format!("{flag}: invalid CIDR {c:?}"))
                })
                .collect()
        };
        match flag.as_str() {
            "--mode" => {
                config.mode = match value()?.as_str() {
                    "iptables" => ProxyMode::Iptables,
                    "ipvs" => ProxyMode::Ipvs,
                    "nftables" => ProxyMode::Nftables,
                    other => return Err(format!("--mode: unknown mode {other:?}")),
                }
            }
            "--hostname" => config.node.name = value()?.trim().to_lowercase(),
            "--node-ip" => {
                let v = value()?;
                let ip = parse_ip_sloppy(v.trim())
                    .ok_or_else(|| format!("--node-ip: invalid IP address {v:?}"))?;
                config.node.ips.push(ip);
            }
            "--cluster-cidr" => config.cluster_cidrs = cidrs(&value()?)?,
            "--node-pod-cidr" => {
                let v = value()?;
                config.node.pod_cidrs.extend(cidrs(&v)?);
            }
            "--node-zone" => config.node.zone = Some(value()?),
            "--family" => {
                family = Some(match value()?.as_str() {
                    "ipv4" => IpFamily::V4,
                    "ipv6" => IpFamily::V6,
                    other => return Err(format!("--family: expected ipv4 or ipv6, not {other:?}")),
                })
            }
            "--masquerade-mark" => {
                let m = value()?;
                config.iptables.masquerade_mark = Some(m.clone());
                config.nftables.masquerade_mark = Some(m);
            }
            "--service-cidr" => config.service_cidrs = cidrs(&value()?)?,
            "--no-nfacct" => config.node.nfacct = false,
            "--no-random-fully" => config.node.random_fully = false,
            "--no-object-comments" => config.node.nft_object_comments = false,
            other => {
                return Err(format!(
                    "unknown flag {other:?} (node flags of `kpinspect compile` only)"
                ));
            }
        }
    }
    Ok(family)
}

/// Checks the golden case in `case_dir` and panics with a unified diff on
/// a mismatch — or, with `KPINSPECT_BLESS=1` in the environment, writes
/// its expected files (panicking when `CI` is set too). For Rust tests.
///
/// ```
/// // kube-proxy's TestOverallIPTablesRules, as kpinspect's fixtures hold it:
/// // cluster.yaml, config.yaml, args and the expected dump.
/// let case = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/iptables/overall");
/// kpinspect_k8s::golden::assert_golden(case);
/// ```
///
/// # Panics
///
/// On a mismatch, a case that cannot be loaded, or a refused bless.
#[track_caller]
pub fn assert_golden(case_dir: impl AsRef<Path>) {
    let dir = case_dir.as_ref();
    let case = Case::load(dir).unwrap_or_else(|e| panic!("golden case {}: {e}", dir.display()));
    let bless = std::env::var_os(BLESS_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if bless {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{BLESS_ENV} is set under CI: refusing to rewrite {}",
                dir.display()
            );
        }
        case.bless()
            .unwrap_or_else(|e| panic!("golden case {}: {e}", dir.display()));
        return;
    }
    let outcome = case
        .check()
        .unwrap_or_else(|e| panic!("golden case {}: {e}", dir.display()));
    if outcome.failed() {
        panic!(
            "golden case {} does not match (set {BLESS_ENV}=1 to accept):\n{outcome}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_apply_like_the_cli_flags() {
        let mut config = ProxyConfig::default();
        let family = apply_args(
            "--node-ip\n192.168.0.2\n--family=ipv6\n--masquerade-mark\n0x4000\n--no-random-fully\n--mode\nnftables\n",
            &mut config,
        )
        .unwrap();
        assert_eq!(family, Some(IpFamily::V6));
        assert_eq!(
            config.node.ips,
            ["192.168.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(config.nftables.masquerade_mark.as_deref(), Some("0x4000"));
        assert!(!config.node.random_fully);
        assert_eq!(config.mode, ProxyMode::Nftables);
    }

    #[test]
    fn bad_args_are_errors() {
        let mut config = ProxyConfig::default();
        for bad in [
            "--format\nsorted\n",
            "--node-ip\n",
            "--node-ip\nnot-an-ip\n",
            "--family\nipv5\n",
        ] {
            assert!(apply_args(bad, &mut config).is_err(), "{bad:?}");
        }
    }
}

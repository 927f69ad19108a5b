//! The `kpinspect` command: a thin layer over kpinspect-core,
//! kpinspect-k8s and kpinspect-node (which alone touches the node, and runs
//! the read → plan → write cycles of `apply` and `cleanup`). It reads
//! input files, prints output and reports, and maps errors to exit statuses
//! (2 for bad input or usage).

/// `eprintln!` unless `--quiet`: warnings, notes and progress.
macro_rules! note {
    ($($t:tt)*) => {
        if !$crate::quiet() {
            eprintln!($($t)*)
        }
    };
}

/// `eprint!` unless `--quiet`.
macro_rules! note_raw {
    ($($t:tt)*) => {
        if !$crate::quiet() {
            eprint!($($t)*)
        }
    };
}

/// The allocator: kpinspect's work is millions of small, short-lived
/// allocations (one per rule argument when a 10 MB save is parsed), where
/// glibc's malloc spends a fifth of a one-endpoint apply consolidating and
/// freeing; mimalloc halves parsing and rendering and makes freeing a
/// ruleset 3–4× cheaper (measured in the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod dot;
mod dump;
mod facts;
mod fmt;
mod golden;
mod live;
mod nft_sync;
mod report;
mod rules;
mod sniff;
mod sync;
mod trace;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Parser;
use kpinspect_core::config::ProxyMode;
use kpinspect_core::mode::{iptables, ipvs, nftables};
use kpinspect_core::net::IpFamily;
use kpinspect_core::proxy::ProxyState;

use args::{Cli, Command, CompileArgs, FormatArg};

/// Bad input or usage: exit status 2, one line on stderr.
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    fn msg(m: impl Into<String>) -> UsageError {
        UsageError(m.into())
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<kpinspect_k8s::LoadError> for UsageError {
    fn from(e: kpinspect_k8s::LoadError) -> Self {
        UsageError(e.to_string())
    }
}

impl From<kpinspect_node::SyncError> for UsageError {
    fn from(e: kpinspect_node::SyncError) -> Self {
        UsageError(e.to_string())
    }
}

/// `--quiet`: set once, before any command runs.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `--quiet` was given: stderr gets errors only.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    QUIET.store(cli.quiet, Ordering::Relaxed);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Every error is one line of printable text, however garbled
            // the input it quotes.
            let msg = kpinspect_core::excerpt::one_line(&format!("{err:#}"), 400);
            eprintln!("kpinspect: error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Compile(args) => compile(args),
        Command::Dump(args) => dump::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Diff(args) => sync::diff(args),
        Command::Apply(args) => sync::apply(args),
        Command::Cleanup(args) => sync::cleanup(args),
        Command::Golden(cmd) => golden::run(cmd, cli.quiet),
        Command::Completions(args) => {
            write_stdout(&completions(args.shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            write_stdout(&man_page()?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The completion script for `shell`, from the same clap definitions as
/// the parser.
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kpinspect", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The manual page (roff): the command's page with its subcommands, then
/// one section per subcommand with its options, all from the clap
/// definitions.
fn man_page() -> Result<String> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands() {
        man_subcommand(&mut out, sub, "kpinspect")?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One subcommand's section (and its own subcommands'), as clap_mangen
/// renders a page's description and options.
fn man_subcommand(out: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
    let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    for s in sub.get_subcommands() {
        man_subcommand(out, s, &name)?;
    }
    Ok(())
}

/// `-o svg`: the DOT text rendered by Graphviz's `dot` (exit 2 when it is
/// not installed).
pub fn svg(dot: &str) -> Result<String> {
    kpinspect_node::render_svg(dot).map_err(|e| UsageError::msg(e.to_string()).into())
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<String> {
    let name = path.display();
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| UsageError::msg(format!("-: cannot read standard input: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::msg(format!("{name}: cannot read: {e}")))?;
    }
    Ok(text)
}

/// Reads kubectl output files into a cluster, printing warnings. A file
/// with no object at all (empty, or only comments and `---`) is read as a
/// cluster without Services (kube-proxy's golden cases have such files),
/// with a warning naming it: it is often a failed `kubectl get > file`.
pub fn load_cluster(files: &[std::path::PathBuf]) -> Result<kpinspect_core::model::Cluster> {
    load_cluster_from(files, true)
}

/// [`load_cluster`]; with `warn_empty` false, an empty file passes without
/// a warning (apply and diff, whose guard already refuses an input without
/// Services unless `--force`).
pub fn load_cluster_from(
    files: &[std::path::PathBuf],
    warn_empty: bool,
) -> Result<kpinspect_core::model::Cluster> {
    let mut loaded = kpinspect_k8s::Loaded::default();
    for path in files {
        let text = read_input(path)?;
        let name = path.display().to_string();
        if let Some(m) = sniff::misplaced(&name, &text, "a cluster file") {
            anyhow::bail!(UsageError::msg(m));
        }
        if warn_empty && no_documents(&text) {
            eprintln!(
                "kpinspect: warning: {}: no Kubernetes objects (the file is empty): read as a cluster without Services",
                kpinspect_core::excerpt::one_line(&name, 200)
            );
        }
        loaded
            .try_extend(kpinspect_k8s::load_objects(&text, &name).map_err(UsageError::from)?)
            .map_err(UsageError::from)?;
    }
    let (cluster, warnings) = loaded.finish();
    for w in warnings {
        note!("kpinspect: warning: {w}");
    }
    Ok(cluster)
}

/// Whether `text` holds no YAML or JSON document: only blank lines,
/// comments and document markers.
fn no_documents(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn compile(args: CompileArgs) -> Result<ExitCode> {
    let node = args.cluster.node.resolve()?;
    let cluster = load_cluster(&args.cluster.files)?;
    // A dual-stack cluster (Services with cluster IPs of both families)
    // compiles for both, as kube-proxy's two proxiers do.
    let families = match args.cluster.node.family {
        Some(f) => vec![f.into()],
        None if dual_stack(&cluster) => vec![IpFamily::V4, IpFamily::V6],
        None => vec![node.family],
    };
    let out = match node.config.mode {
        ProxyMode::Iptables => compile_iptables(&cluster, &node.config, &families, args.format)?,
        ProxyMode::Ipvs => vec![Piece::Text(compile_ipvs(
            &cluster,
            &node.config,
            &families,
            args.format,
        )?)],
        ProxyMode::Nftables => compile_nftables(&cluster, &node.config, &families, args.format)?,
    };
    // The cluster is not needed for writing: give its memory back first.
    drop(cluster);
    write_pieces(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// A piece of a compile's output: text, a restore input written from its
/// buffers (a 10k-service restore is tens of megabytes: not copied), or an
/// nftables transaction written line by line (not rendered into one string).
enum Piece {
    Text(String),
    Restore(Box<kpinspect_core::netfilter::Restore>),
    Nft(Box<nftables::Compiled>),
}

/// Writes the pieces to stdout, a transaction's lines in chunks of about
/// 64 KB; a closed pipe is not an error.
fn write_pieces(pieces: &[Piece]) -> Result<()> {
    const CHUNK: usize = 64 * 1024;
    let write = || -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let mut buf = String::with_capacity(CHUNK + 4096);
        for piece in pieces {
            match piece {
                Piece::Text(text) => stdout.write_all(text.as_bytes())?,
                Piece::Restore(restore) => {
                    for part in restore.parts() {
                        stdout.write_all(part.as_bytes())?;
                    }
                }
                Piece::Nft(compiled) => {
                    let tx = &compiled.transaction;
                    for op in &tx.ops {
                        tx.render_op(&mut buf, op);
                        buf.push('\n');
                        if buf.len() >= CHUNK {
                            stdout.write_all(buf.as_bytes())?;
                            buf.clear();
                        }
                    }
                    stdout.write_all(buf.as_bytes())?;
                    buf.clear();
                }
            }
        }
        stdout.flush()
    };
    match write() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The line naming the restore tool of `family`, above each family's text
/// when a compile writes both.
fn restore_tool_line(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "# iptables-restore\n",
        IpFamily::V6 => "# ip6tables-restore\n",
    }
}

fn compile_iptables(
    cluster: &kpinspect_core::model::Cluster,
    config: &kpinspect_core::config::ProxyConfig,
    families: &[IpFamily],
    format: FormatArg,
) -> Result<Vec<Piece>> {
    if !matches!(format, FormatArg::Restore | FormatArg::Sorted) {
        anyhow::bail!(UsageError::msg(format!(
            "-o {}: iptables mode has restore and sorted",
            format_name(format)
        )));
    }
    let mut out = Vec::new();
    for family in families {
        let state = ProxyState::build(cluster, config, *family);
        for n in &state.notices {
            note!("kpinspect: warning: {}: {}", n.object, n.message);
        }
        let restore = iptables::compile(&state, config);
        if families.len() > 1 {
            out.push(Piece::Text(restore_tool_line(*family).to_string()));
        }
        match format {
            FormatArg::Sorted => out.push(Piece::Text(iptables::sort_iptables_rules(
                &restore.render(),
            )?)),
            _ => out.push(Piece::Restore(Box::new(restore))),
        }
    }
    Ok(out)
}

/// IPVS mode: one compile per family. The IPVS table is one for both
/// families (one `ipvsadm` listing); the ipsets and addresses of both are
/// listed one family after the other; each family has its own restore.
fn compile_ipvs(
    cluster: &kpinspect_core::model::Cluster,
    config: &kpinspect_core::config::ProxyConfig,
    families: &[IpFamily],
    format: FormatArg,
) -> Result<String> {
    if matches!(format, FormatArg::Sorted | FormatArg::Nft) {
        anyhow::bail!(UsageError::msg(format!(
            "-o {}: IPVS mode has restore, ipvsadm, ipset, addresses and json",
            format_name(format)
        )));
    }
    let compiled: Vec<ipvs::Compiled> = families
        .iter()
        .map(|family| {
            let state = ProxyState::build(cluster, config, *family);
            let c = ipvs::compile(&state, config);
            for n in &c.notices {
                note!("kpinspect: warning: {}: {}", n.object, n.message);
            }
            c
        })
        .collect();
    Ok(match format {
        FormatArg::Restore | FormatArg::Sorted | FormatArg::Nft => {
            let mut out = String::new();
            for c in &compiled {
                if compiled.len() > 1 {
                    out.push_str(restore_tool_line(c.family));
                }
                out.push_str(&c.restore.render());
            }
            out
        }
        FormatArg::Ipvsadm => ipvs::ipvsadm_save(compiled.iter().flat_map(|c| &c.virtual_servers)),
        FormatArg::Ipset => ipvs::ipset_save(compiled.iter().flat_map(|c| &c.ipsets)),
        FormatArg::Addresses => compiled
            .iter()
            .map(|c| ipvs::address_lines(&c.addresses))
            .collect(),
        FormatArg::Json => {
            let mut text = serde_json::to_string_pretty(&compiled)?;
            text.push('\n');
            text
        }
    })
}

/// nftables mode: one transaction per family (`ip`, then `ip6`), each
/// under a line naming its table when both are written.
fn compile_nftables(
    cluster: &kpinspect_core::model::Cluster,
    config: &kpinspect_core::config::ProxyConfig,
    families: &[IpFamily],
    format: FormatArg,
) -> Result<Vec<Piece>> {
    if !matches!(
        format,
        FormatArg::Restore | FormatArg::Nft | FormatArg::Sorted | FormatArg::Json
    ) {
        anyhow::bail!(UsageError::msg(format!(
            "-o {}: nftables mode has nft, sorted and json",
            format_name(format)
        )));
    }
    let compiled: Vec<nftables::Compiled> = families
        .iter()
        .map(|family| {
            let state = ProxyState::build(cluster, config, *family);
            let c = nftables::compile(&state, config);
            for n in &c.notices {
                note!("kpinspect: warning: {}: {}", n.object, n.message);
            }
            c
        })
        .collect();
    if format == FormatArg::Json {
        let mut text = serde_json::to_string_pretty(&compiled)?;
        text.push('\n');
        return Ok(vec![Piece::Text(text)]);
    }
    let several = compiled.len() > 1;
    let mut out = Vec::new();
    for c in compiled {
        if several {
            out.push(Piece::Text(format!(
                "# table {} {}\n",
                c.transaction.family, c.transaction.table
            )));
        }
        match format {
            FormatArg::Sorted => out.push(Piece::Text(c.sorted()?)),
            _ => out.push(Piece::Nft(Box::new(c))),
        }
    }
    Ok(out)
}

/// `--format`'s spelling of `f`.
fn format_name(f: FormatArg) -> String {
    use clap::ValueEnum;
    f.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Whether the cluster's Services have cluster IPs of both families.
fn dual_stack(cluster: &kpinspect_core::model::Cluster) -> bool {
    let has = |f: IpFamily| {
        cluster
            .services
            .iter()
            .any(|s| s.cluster_ips.iter().any(|ip| IpFamily::of(ip) == f))
    };
    has(IpFamily::V4) && has(IpFamily::V6)
}

/// Writes `out` to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(out: &str) -> Result<()> {
    write_stdout_parts(&[out])
}

/// Writes `parts` one after the other to stdout; a closed pipe is not an
/// error.
pub fn write_stdout_parts(parts: &[&str]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = parts
        .iter()
        .try_for_each(|part| stdout.write_all(part.as_bytes()))
        .and_then(|_| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(())
}

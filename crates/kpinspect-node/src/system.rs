//! The real node: `iptables-*-save` / `-restore` and `ipset`, run with
//! [`std::process::Command`] (an argument vector, never a shell).

use std::io::{ErrorKind, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kpinspect_core::net::IpFamily;

use crate::error::{NodeError, classify_failure};
use crate::{IpSets, Iptables, family_prefix};

/// Which kernel interface the iptables tools drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `iptables-legacy`: the kernel's x_tables (`ip_tables`) API.
    Legacy,
    /// `iptables-nft`: the iptables command line over nf_tables.
    Nft,
}

impl Backend {
    /// `legacy` or `nft`, as the tools' names spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    /// The other backend.
    pub fn other(self) -> Backend {
        match self {
            Backend::Legacy => Backend::Nft,
            Backend::Nft => Backend::Legacy,
        }
    }

    /// The save program for `family`, e.g. `ip6tables-nft-save`.
    pub fn save_program(self, family: IpFamily) -> String {
        format!("{}-{}-save", family_prefix(family), self.as_str())
    }

    /// The restore program for `family`, e.g. `iptables-legacy-restore`.
    pub fn restore_program(self, family: IpFamily) -> String {
        format!("{}-{}-restore", family_prefix(family), self.as_str())
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The node's iptables through one backend's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemIptables {
    /// The backend whose tools are run.
    pub backend: Backend,
    /// Seconds `-restore` waits for the xtables lock (`-w`), as kube-proxy
    /// does with 5.
    pub wait_seconds: u32,
}

impl SystemIptables {
    /// The tools of `backend`, waiting 5 seconds for the xtables lock.
    pub fn new(backend: Backend) -> SystemIptables {
        SystemIptables {
            backend,
            wait_seconds: 5,
        }
    }
}

impl Iptables for SystemIptables {
    /// Runs `iptables-<backend>-save` (or `ip6tables-...`) and returns its
    /// output.
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        run(&self.backend.save_program(family), &[], None)
    }

    /// Runs `iptables-<backend>-restore -w N --noflush` with `payload` on
    /// stdin.
    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        let wait = self.wait_seconds.to_string();
        run(
            &self.backend.restore_program(family),
            &["-w", &wait, "--noflush"],
            Some(payload),
        )
        .map(|_| ())
    }

    /// `iptables-<backend>-save` or `ip6tables-<backend>-save`.
    fn save_program(&self, family: IpFamily) -> String {
        self.backend.save_program(family)
    }

    /// `iptables-<backend>-restore` or `ip6tables-<backend>-restore`.
    fn restore_program(&self, family: IpFamily) -> String {
        self.backend.restore_program(family)
    }

    /// [`RESTORE_BATCH_LINES`](crate::RESTORE_BATCH_LINES) if set to a
    /// number (`0`: none; anything else is ignored); otherwise [`DEFAULT_RESTORE_BATCH_LINES`](crate::DEFAULT_RESTORE_BATCH_LINES)
    /// for the nft backend, whose restore is quadratic in one
    /// transaction's size, and none for legacy, whose every restore
    /// replaces the whole table.
    fn restore_batch_lines(&self) -> Option<usize> {
        match std::env::var(crate::RESTORE_BATCH_LINES)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            Some(0) => None,
            Some(n) => Some(n),
            None => (self.backend == Backend::Nft).then_some(crate::DEFAULT_RESTORE_BATCH_LINES),
        }
    }
}

/// The node's ipsets through the `ipset` tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemIpSets;

impl IpSets for SystemIpSets {
    /// Runs `ipset save`.
    fn save(&self) -> Result<String, NodeError> {
        run("ipset", &["save"], None)
    }

    /// Runs `ipset restore` with `payload` on stdin.
    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        run("ipset", &["restore"], Some(payload)).map(|_| ())
    }

    /// Runs `ipset restore` on a thread of its own.
    fn start_restore(&self, payload: &str) -> crate::PendingRestore {
        let payload = payload.to_string();
        crate::PendingRestore::spawn(move || SystemIpSets.restore(&payload))
    }
}

/// The node's own addresses (every interface, both families), from
/// `ip -o addr show`.
pub fn local_addresses() -> Result<Vec<IpAddr>, NodeError> {
    Ok(parse_ip_addr_show(&run(
        "ip",
        &["-o", "addr", "show"],
        None,
    )?))
}

/// The addresses in `ip -o addr show` output
/// (`2: eth0    inet 192.168.0.2/24 brd ...`).
pub fn parse_ip_addr_show(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if (pair[0] == "inet" || pair[0] == "inet6")
                && let Some(ip) = pair[1].split('/').next().and_then(|a| a.parse().ok())
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
    }
    out
}

/// Directories searched after `PATH`: the tools live in sbin, which a
/// non-root `PATH` often lacks.
const SBIN: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// The executable called `program` on `PATH` or in an sbin directory.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `data` in an anonymous in-memory file (`memfd_create`), rewound, for a
/// child's standard input.
///
/// A pipe fed by a thread of ours would end early if kpinspect were killed
/// mid-write (`kill -9`, the OOM killer): the child would see end of file
/// and, where the input is cut at the end of a statement, act on the part
/// it read — `nft -f` would commit half a transaction. A child reading a
/// complete file sees the whole transaction or, if it is killed itself,
/// commits nothing (`nft -f` and `iptables-restore` commit at the end).
fn input_file(data: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::{Seek as _, SeekFrom};
    let fd = rustix::fs::memfd_create("kpinspect-input", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Runs `program args...`, feeding `stdin` if given, with `LC_ALL=C` so that
/// messages are the ones [`classify_failure`] knows. Returns stdout.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NodeError> {
    let path = find_program(program).ok_or_else(|| NodeError::Missing {
        program: program.into(),
    })?;
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::NotFound => NodeError::Missing {
            program: program.into(),
        },
        ErrorKind::PermissionDenied => NodeError::Permission {
            program: program.into(),
            message: e.to_string(),
        },
        _ => NodeError::Io {
            program: program.into(),
            message: e.to_string(),
        },
    };
    // The input is written whole before the child starts: a kpinspect
    // killed at any point cannot leave a restore or `nft -f` with a cut
    // transaction that still parses (see [`input_file`]).
    let input = match stdin {
        Some(text) => Stdio::from(input_file(text.as_bytes()).map_err(io)?),
        None => Stdio::null(),
    };
    let output = Command::new(&path)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(io)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(classify_failure(
            program,
            output.status.code(),
            &stderr,
            stdin.is_some(),
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| NodeError::Io {
        program: program.into(),
        message: "output is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_ip_addr_show() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                    2: eth0    inet 192.168.0.2/24 brd 192.168.0.255 scope global eth0\\       valid_lft forever\n\
                    2: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever\n";
        let got: Vec<String> = parse_ip_addr_show(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["127.0.0.1", "192.168.0.2", "fd00::2"]);
    }

    #[test]
    fn program_names() {
        assert_eq!(
            Backend::Legacy.save_program(IpFamily::V4),
            "iptables-legacy-save"
        );
        assert_eq!(
            Backend::Nft.save_program(IpFamily::V6),
            "ip6tables-nft-save"
        );
        assert_eq!(
            Backend::Nft.restore_program(IpFamily::V4),
            "iptables-nft-restore"
        );
        assert_eq!(
            Backend::Legacy.restore_program(IpFamily::V6),
            "ip6tables-legacy-restore"
        );
        assert_eq!(Backend::Nft.other(), Backend::Legacy);
    }

    #[test]
    fn a_missing_program_is_missing() {
        let e = run("kpinspect-no-such-program", &[], None).unwrap_err();
        assert_eq!(
            e,
            NodeError::Missing {
                program: "kpinspect-no-such-program".into()
            }
        );
    }

    #[test]
    fn runs_argv_with_stdin_and_maps_failures() {
        // `cat` and `sh` are everywhere the tests run; no shell is involved
        // in `run` itself.
        if find_program("cat").is_none() || find_program("sh").is_none() {
            return;
        }
        assert_eq!(run("cat", &[], Some("a b\n")).expect("cat"), "a b\n");
        let e = run(
            "sh",
            &[
                "-c",
                "cat >/dev/null; echo 'x-restore: line 7 failed' >&2; exit 1",
            ],
            Some("*filter\nCOMMIT\n"),
        )
        .unwrap_err();
        assert_eq!(
            e,
            NodeError::Restore {
                line: Some(7),
                message: "x-restore: line 7 failed".into()
            }
        );
        let e = run("sh", &["-c", "echo 'oops' >&2; exit 3"], None).unwrap_err();
        assert_eq!(e.to_string(), "sh exited with status 3: oops");
        // A child that exits without reading its input is not an I/O error.
        let big = "x".repeat(1 << 20);
        let e = run("sh", &["-c", "exit 2"], Some(&big)).unwrap_err();
        assert!(matches!(e, NodeError::Restore { line: None, .. }), "{e:?}");
        // An input larger than a pipe holds arrives whole.
        assert_eq!(
            run("wc", &["-c"], Some(&big)).expect("wc").trim(),
            "1048576"
        );
    }

    #[test]
    fn input_is_a_complete_file_not_a_pipe() {
        // What the child's standard input is: a pipe (`pipe:[N]`) would end
        // early if kpinspect were killed while writing it.
        if find_program("readlink").is_none() {
            return;
        }
        let target =
            run("readlink", &["/proc/self/fd/0"], Some("*filter\nCOMMIT\n")).expect("readlink");
        assert!(target.starts_with("/memfd:kpinspect-input"), "{target}");
    }
}

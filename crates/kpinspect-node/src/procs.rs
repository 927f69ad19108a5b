//! What `/proc` says about this node: whether kube-proxy runs, and the
//! hostname kube-proxy would take for the node's name.

use std::path::Path;

/// The process name (`/proc/PID/comm`) of kube-proxy.
pub const KUBE_PROXY_COMM: &str = "kube-proxy";

/// The lowest PID whose name is `kube-proxy`, among `(pid, comm)` pairs
/// (`comm` as read from `/proc/PID/comm`, trailing newline allowed).
pub fn find_kube_proxy<S: AsRef<str>>(procs: impl IntoIterator<Item = (u32, S)>) -> Option<u32> {
    procs
        .into_iter()
        .filter(|(_, comm)| comm.as_ref().trim_end_matches('\n') == KUBE_PROXY_COMM)
        .map(|(pid, _)| pid)
        .min()
}

/// The `(pid, comm)` of every process under `proc_root` (normally
/// `/proc`). Processes that exit while being read, or whose `comm` cannot
/// be read, are skipped.
pub fn process_names(proc_root: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((pid, comm))
        })
        .collect()
}

/// The PID of a running kube-proxy that programs this network namespace
/// (a kube-proxy of another network namespace on the same host, e.g. a
/// kind node, does not count), if any.
pub fn kube_proxy_running() -> Option<u32> {
    kube_proxy_running_in(Path::new("/proc"))
}

/// [`kube_proxy_running`] over the proc file system at `proc_root`.
pub fn kube_proxy_running_in(proc_root: &Path) -> Option<u32> {
    let netns = |pid: &str| std::fs::read_link(proc_root.join(pid).join("ns/net")).ok();
    let ours = netns("self");
    find_kube_proxy(
        process_names(proc_root)
            .into_iter()
            .filter(|(pid, _)| ours.is_none() || netns(&pid.to_string()) == ours),
    )
}

/// This machine's hostname as kube-proxy takes it for the node's name when
/// nothing overrides it (`nodeutil.GetHostname`): trimmed and lowercased.
/// `None` when it cannot be read or is empty.
pub fn hostname() -> Option<String> {
    hostname_in(Path::new("/proc"))
}

/// [`hostname`] from the proc file system at `proc_root`
/// (`PROC/sys/kernel/hostname`).
pub fn hostname_in(proc_root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/hostname")).ok()?;
    let name = text.trim().to_lowercase();
    (!name.is_empty()).then_some(name)
}

/// `CAP_NET_ADMIN`'s bit in the capability sets of `/proc/<pid>/status`.
const CAP_NET_ADMIN: u32 = 12;

/// Whether `status` (the text of `/proc/<pid>/status`) shows
/// `CAP_NET_ADMIN` in the effective set; `None` when it has no `CapEff`.
///
/// ```
/// assert_eq!(kpinspect_node::status_has_net_admin("Name:\tx\nCapEff:\t000001ffffffffff\n"), Some(true));
/// assert_eq!(kpinspect_node::status_has_net_admin("CapEff:\t0000000000000000\n"), Some(false));
/// assert_eq!(kpinspect_node::status_has_net_admin("Name:\tx\n"), None);
/// ```
pub fn status_has_net_admin(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Fails with [`NodeError::Permission`](crate::NodeError::Permission) naming `program` (the tool that
/// would be refused) unless this process has `CAP_NET_ADMIN`: a command
/// that changes the node says so before it takes locks or reads anything.
/// When the capabilities cannot be read, the tools will tell.
pub fn require_net_admin(program: &str) -> Result<(), crate::NodeError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match status_has_net_admin(&status) {
        Some(false) => Err(crate::NodeError::Permission {
            program: program.into(),
            message: "this process lacks CAP_NET_ADMIN".into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lowest_kube_proxy_pid() {
        let procs = [
            (1, "systemd\n"),
            (812, "kube-proxy\n"),
            (77, "kube-proxy\n"),
            (90, "kube-proxy-x\n"),
            (91, "kubelet\n"),
        ];
        assert_eq!(find_kube_proxy(procs), Some(77));
        assert_eq!(find_kube_proxy([(1, "systemd")]), None);
        assert_eq!(find_kube_proxy(Vec::<(u32, String)>::new()), None);
    }

    #[test]
    fn scans_a_proc_tree() {
        let root = std::env::temp_dir().join(format!("kpinspect-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, comm) in [("1", "init\n"), ("42", "kube-proxy\n")] {
            std::fs::create_dir_all(root.join(pid)).expect("mkdir");
            std::fs::write(root.join(pid).join("comm"), comm).expect("write");
        }
        // Not processes: a non-numeric entry and a PID without comm.
        std::fs::create_dir_all(root.join("net")).expect("mkdir");
        std::fs::create_dir_all(root.join("7")).expect("mkdir");
        let mut names = process_names(&root);
        names.sort();
        assert_eq!(
            names,
            [(1, "init\n".to_string()), (42, "kube-proxy\n".to_string())]
        );
        assert_eq!(kube_proxy_running_in(&root), Some(42));
        assert_eq!(kube_proxy_running_in(&root.join("absent")), None);
        assert_eq!(hostname_in(&root), None);
        std::fs::create_dir_all(root.join("sys/kernel")).expect("mkdir");
        std::fs::write(root.join("sys/kernel/hostname"), " Node-1.Example\n").expect("write");
        assert_eq!(hostname_in(&root).as_deref(), Some("node-1.example"));
        std::fs::write(root.join("sys/kernel/hostname"), "\n").expect("write");
        assert_eq!(hostname_in(&root), None);
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn the_real_proc_can_be_scanned() {
        // This test process is in /proc; it is not kube-proxy.
        let me = std::process::id();
        assert!(
            process_names(Path::new("/proc"))
                .iter()
                .any(|(pid, _)| *pid == me)
        );
        if let Ok(raw) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(
                hostname(),
                Some(raw.trim().to_lowercase()).filter(|h| !h.is_empty())
            );
        }
    }
}

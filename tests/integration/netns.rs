//! Real-kernel checks: compiled restore inputs are loaded with
//! `iptables-restore --noflush` (nft and legacy backends) inside network
//! namespaces created by the test (`unshare -n`), never the machine's own.
//!
//! These need root, `unshare`, iptables and nfacct (`.ci/run` installs
//! them). Without root they fail, unless `KPINSPECT_SKIP_NETNS=1` says to
//! skip them.

use std::io::Write;
use std::process::Command;

use crate::util::{assert_saved_matches, compile_fixtures, kpinspect, stderr, stdout};

/// Whether the namespace tests can run here (root and the tools, see
/// `node::available`); panics when they should but cannot.
fn netns_available() -> bool {
    if !crate::node::available() {
        return false;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v unshare"])
        .output()
        .expect("sh");
    assert!(found.status.success(), "unshare is missing (see .ci/run)");
    true
}

/// Loads `restore` into a fresh network namespace with `backend` and returns
/// what `iptables-save` shows afterwards.
fn load_in_netns(restore: &str, ipv6: bool, backend: &str) -> Result<String, String> {
    let mut file = tempfile();
    file.1
        .write_all(restore.as_bytes())
        .expect("write restore input");
    let bin = if ipv6 { "ip6tables" } else { "iptables" };
    // The nfacct counters kube-proxy creates at start-up, then the restore
    // kube-proxy runs, then a save to read back.
    let script = format!(
        "set -e; nfacct add ct_state_invalid_dropped_pkts; nfacct add localhost_nps_accepted_pkts; \
         {bin}-{backend}-restore --noflush < {path}; {bin}-{backend}-save",
        path = file.0.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let _ = std::fs::remove_file(&file.0);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path =
        std::env::temp_dir().join(format!("kpinspect-test-{}-{n}.restore", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    (path, file)
}

#[test]
fn compiled_fixtures_load_into_the_kernel() {
    if !netns_available() {
        return;
    }
    let mut loaded = 0;
    for fx in compile_fixtures() {
        let restore = fx.compile();
        let ipv6 = fx.args().iter().any(|a| a == "ipv6");
        for backend in ["nft", "legacy"] {
            match load_in_netns(&restore, ipv6, backend) {
                Ok(saved) => {
                    assert_saved_matches(&format!("{} ({backend})", fx.name), &restore, &saved);
                }
                Err(e) => panic!(
                    "{} ({backend}): iptables-restore rejected the compiled rules: {e}",
                    fx.name
                ),
            }
            loaded += 1;
        }
    }
    assert!(loaded > 100);
}

#[test]
fn shipped_example_loads_into_the_kernel() {
    if !netns_available() {
        return;
    }
    let out = kpinspect()
        .args([
            "compile",
            "--config",
            "examples/kube-proxy-config.yaml",
            "--node-ip",
            "192.168.49.2",
        ])
        .arg("examples/cluster.yaml")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let restore = stdout(&out);
    for backend in ["nft", "legacy"] {
        let saved =
            load_in_netns(&restore, false, backend).unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_saved_matches(backend, &restore, &saved);
    }
}

/// A broken input is refused by the kernel: the check above can fail.
#[test]
fn the_kernel_refuses_a_broken_restore() {
    if !netns_available() {
        return;
    }
    let broken =
        "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-DOESNOTEXIST000\nCOMMIT\n";
    for backend in ["nft", "legacy"] {
        assert!(
            load_in_netns(broken, false, backend).is_err(),
            "{backend} accepted a jump to a missing chain"
        );
    }
}

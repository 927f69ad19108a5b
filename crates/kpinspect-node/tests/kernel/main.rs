//! kpinspect-node against the real kernel: nfacct counters, conntrack
//! cleanup and host facts, each test in network namespaces of its own.
//!
//! **Needs root.** A test re-runs itself (this binary, filtered to that
//! one test) inside `unshare -n` or `ip netns exec NS`, so the code under
//! test talks netlink to a namespace the test made and the machine's own
//! namespace is never touched. Without root these tests fail, unless
//! `KPINSPECT_SKIP_NETNS=1` says to skip them. The `nfacct` and `conntrack`
//! tools, when installed (`.ci/run` installs them), cross-check what the
//! library reads.

mod conntrack;
mod host;
mod link;
mod nfacct;
mod nft;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Set in a re-run child to the name of the test it is to run for real.
const CHILD: &str = "KPINSPECT_NETNS_CHILD";

/// Whether this process is the re-run child of test `name`.
pub fn in_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Whether the namespace tests can run here; panics when they should but
/// cannot.
pub fn available() -> bool {
    if std::env::var_os("KPINSPECT_SKIP_NETNS").is_some() {
        eprintln!("KPINSPECT_SKIP_NETNS is set: skipping network-namespace tests");
        return false;
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "network-namespace tests need root (set KPINSPECT_SKIP_NETNS=1 to skip them)"
    );
    for tool in [
        "ip",
        "unshare",
        "iptables-nft",
        "iptables-legacy",
        "ip6tables",
    ] {
        assert!(has_tool(tool), "{tool} is missing (see .ci/run)");
    }
    true
}

/// Whether `tool` is installed.
pub fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .expect("sh")
        .status
        .success()
}

/// Runs test `name` of this binary again under `wrapper` (`unshare -n --`,
/// `ip netns exec NS`, ...); panics with the child's output unless that one
/// test ran and passed.
pub fn rerun_in(wrapper: &[&str], name: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("re-run the test binary");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in {wrapper:?} failed:\n{stdout}\n{stderr}"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `argv`, panics unless it succeeds; its stdout.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `argv`.
pub fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Two named network namespaces joined by a veth pair (`eth0` on both
/// sides, both up, loopbacks up); deleted on drop.
pub struct Pair {
    /// The namespace the test runs in.
    pub a: String,
    /// Its peer.
    pub b: String,
}

impl Pair {
    /// Creates the namespaces and the link.
    pub fn create() -> Pair {
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "kpn-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let pair = Pair {
            a: format!("{prefix}-a"),
            b: format!("{prefix}-b"),
        };
        for ns in [&pair.a, &pair.b] {
            run_ok(&["ip", "netns", "add", ns]);
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run_ok(&[
            "ip", "-n", &pair.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &pair.b,
        ]);
        for ns in [&pair.a, &pair.b] {
            run_ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        }
        pair
    }

    /// A routed pair: `a` is 10.0.0.1 and fd00::1, `b` 10.0.0.2 and
    /// fd00::2, and `a`'s default routes (both families) go via `b`.
    pub fn routed() -> Pair {
        let pair = Pair::create();
        let (a, b) = (pair.a.clone(), pair.b.clone());
        pair.ip(&a, &["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
        pair.ip(&a, &["addr", "add", "fd00::1/64", "dev", "eth0", "nodad"]);
        pair.ip(&a, &["route", "add", "default", "via", "10.0.0.2"]);
        pair.ip(&a, &["-6", "route", "add", "default", "via", "fd00::2"]);
        pair.ip(&b, &["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
        pair.ip(&b, &["addr", "add", "fd00::2/64", "dev", "eth0", "nodad"]);
        pair
    }

    /// Runs `ip -n NS args...` in namespace `ns`.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut argv = vec!["ip", "-n", ns];
        argv.extend_from_slice(args);
        run_ok(&argv);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

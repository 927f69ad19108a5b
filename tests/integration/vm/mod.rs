//! Real-kernel checks in a virtual machine, for what this machine's kernel
//! may lack (IPVS, dummy links such as `kube-ipvs0`).
//!
//! [`vm_checks`] boots Debian's stock kernel (`linux-image-amd64`) once under
//! `qemu-system-x86_64 -accel tcg -cpu max` (software emulation, no KVM).
//! The initramfs is a static busybox that loads the virtio and 9p modules,
//! mounts the host's root file system read-only over 9p (`-virtfs`), tmpfs
//! where programs write (`/tmp`, `/run`, `/var/...`, `/root`) and an
//! exchange directory (read-write, `/run/kpinspect-vm`), and `switch_root`s
//! into the host's root: the test binaries and Debian's `ip`, `ipvsadm`,
//! `ipset` and `iptables` are there, and kernel modules load on demand from
//! the host's `/lib/modules`. The VM has no network card (`-nic none`).
//!
//! Every check of [`checks::CHECKS`] then runs in turn, each in a fresh
//! network namespace (`unshare --net`, loopback up), from the repository
//! root, under `timeout`; its output and exit status come back through the
//! exchange directory and [`vm_checks`] fails naming every check that
//! failed, with its output. Two checks of the harness itself must fail (a
//! shell one and a Rust one), proving failures propagate.
//!
//! A check is a bash snippet ([`Check::shell`], run with `-euo pipefail`) or
//! a function of this test binary ([`Check::rust`]), which the VM runs by
//! re-executing the binary (`vm::in_vm_check`, with the check's name in
//! `KPINSPECT_VM_CHECK`). Both get `KPINSPECT` (the `kpinspect` binary) and
//! `KPINSPECT_VM_CHECK_DIR`, a directory of their own in the exchange
//! directory; [`Check::prepare`] runs on the host before the boot and may
//! leave files there (e.g. what the host computed, for comparison).
//!
//! Environment: `KPINSPECT_SKIP_VM=1` skips the VM tests; without qemu, the
//! kernel or busybox they are skipped with a message, unless `CI` is set
//! (then they fail). `KPINSPECT_VM_CHECKS=TEXT` runs only the checks whose
//! name contains TEXT; `KPINSPECT_VM_TIMEOUT=SECONDS` (default 1200) bounds
//! the whole boot; `KPINSPECT_VM_KEEP=1` keeps the work directory (it is
//! always kept when a check fails).

mod checks;
mod converge_ipvs;
mod cpio;
mod faults_ipvs;
mod host;
mod ipvs_change;
mod ipvs_e2e;
mod nft_switch;
mod reports_ipvs;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use host::{BootParams, GUEST_HOST_ROOT, GUEST_XFER, Machine};

/// Skips the VM tests when set (and not `0`).
const SKIP_ENV: &str = "KPINSPECT_SKIP_VM";
/// Set in the VM: the Rust check [`in_vm_check`] runs.
const CHECK_ENV: &str = "KPINSPECT_VM_CHECK";
/// Set in the VM: the check's own directory in the exchange directory.
const DIR_ENV: &str = "KPINSPECT_VM_CHECK_DIR";
/// Set in the VM (no VM is booted from inside it).
const IN_VM_ENV: &str = "KPINSPECT_IN_VM";
/// Only the checks whose name contains this.
const FILTER_ENV: &str = "KPINSPECT_VM_CHECKS";
/// The deadline of the whole boot, in seconds.
const TIMEOUT_ENV: &str = "KPINSPECT_VM_TIMEOUT";
/// Keeps the work directory.
const KEEP_ENV: &str = "KPINSPECT_VM_KEEP";
/// The default deadline of a boot: the checks take several minutes under
/// TCG on an idle 2-core machine, and several times that on a busy one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1200);
/// The default time limit of one check.
const CHECK_TIMEOUT_SECS: u32 = 120;

/// One check run inside the VM.
pub struct Check {
    /// What the check shows; named in the report. Unique.
    pub name: &'static str,
    /// What runs in the VM.
    pub run: Run,
    /// Runs on the host before the boot, with the check's directory.
    pub prepare: Option<fn(&Path)>,
    /// Killed after this many seconds (then it fails).
    pub timeout_secs: u32,
}

/// What a check runs in the VM.
#[derive(Clone, Copy)]
pub enum Run {
    /// A bash script (`bash -euo pipefail`): exit status 0 passes.
    Shell(&'static str),
    /// A function of this test binary, given the check's directory: it
    /// passes unless it panics.
    Rust(fn(&Path)),
}

impl Check {
    /// A bash snippet.
    pub const fn shell(name: &'static str, script: &'static str) -> Check {
        Check {
            name,
            run: Run::Shell(script),
            prepare: None,
            timeout_secs: CHECK_TIMEOUT_SECS,
        }
    }

    /// A Rust function, run in the VM by this test binary.
    pub const fn rust(name: &'static str, f: fn(&Path)) -> Check {
        Check {
            name,
            run: Run::Rust(f),
            prepare: None,
            timeout_secs: CHECK_TIMEOUT_SECS,
        }
    }

    /// With `f` run on the host before the boot, given the check's directory
    /// (the same files are in `KPINSPECT_VM_CHECK_DIR` in the VM).
    pub const fn prepare(mut self, f: fn(&Path)) -> Check {
        self.prepare = Some(f);
        self
    }

    /// With another time limit.
    #[allow(dead_code, reason = "for checks that need longer")]
    pub const fn timeout(mut self, secs: u32) -> Check {
        self.timeout_secs = secs;
        self
    }
}

/// A harness self-test: a check that must fail this way.
struct MustFail {
    check: Check,
    /// Its exit status in the VM.
    status: i32,
    /// What its output must contain.
    output: &'static str,
}

fn self_test_panics(_: &Path) {
    // No backtrace: reading the debug info over 9p takes seconds.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    panic!("vm self-test: this Rust check panics");
}

/// Run with every boot: if these pass, a failing check could go unnoticed.
static SELF_TESTS: [MustFail; 2] = [
    MustFail {
        check: Check::shell(
            "harness self-test: a failing shell check",
            "echo 'vm self-test: this shell check fails'\nfalse\necho not reached",
        ),
        status: 1,
        output: "line 2 of the check failed (exit 1): false",
    },
    MustFail {
        // libtest exits with 101 when a test fails.
        check: Check::rust(
            "harness self-test: a panicking Rust check",
            self_test_panics,
        ),
        status: 101,
        output: "vm self-test: this Rust check panics",
    },
];

/// Every check the VM knows, the registry's and the self-tests.
fn all_checks() -> impl Iterator<Item = (&'static Check, Option<&'static MustFail>)> {
    checks::CHECKS
        .iter()
        .map(|c| (c, None))
        .chain(SELF_TESTS.iter().map(|m| (&m.check, Some(m))))
}

/// Writes past the test harness's output capture: a skipped or timed VM
/// test says so in a plain `cargo test`.
fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether this runs in CI (`CI` set, as CI services and `.ci/run` do).
fn in_ci() -> bool {
    env_flag("CI") && std::env::var("CI").is_ok_and(|v| v != "false")
}

/// Boots the VM once and runs every check in it.
#[test]
fn vm_checks() {
    if env_flag(IN_VM_ENV) {
        return;
    }
    if env_flag(SKIP_ENV) {
        note(&format!("vm: SKIPPED the VM tests: {SKIP_ENV} is set"));
        return;
    }
    let machine = match Machine::find() {
        Ok(m) => m,
        Err(why) => {
            assert!(
                !in_ci(),
                "the VM tests cannot run: {why}. .ci/run installs these; \
                 {SKIP_ENV}=1 skips the VM tests explicitly"
            );
            note(&format!(
                "vm: SKIPPED the VM tests (IPVS, kube-ipvs0, ipset in a real kernel): {why}. \
                 With CI set this fails; {SKIP_ENV}=1 skips them on purpose"
            ));
            return;
        }
    };
    let filter = std::env::var(FILTER_ENV).unwrap_or_default();
    let checks: Vec<_> = all_checks()
        .filter(|(c, must_fail)| must_fail.is_some() || c.name.contains(&filter))
        .collect();
    let deadline = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let vm = boot_with(&machine, &checks, deadline);
    let (work, image, built, outcomes) = (&vm.work, &vm.image, vm.built, &vm.outcomes);
    let run = vm.booted(&machine);
    match report(&run, outcomes) {
        Ok(summary) => {
            note(&format!(
                "{summary}\n  initramfs {:.1} MB built in {:.2} s",
                *image as f64 / 1e6,
                built.as_secs_f64()
            ));
            if !env_flag(KEEP_ENV) {
                let _ = fs::remove_dir_all(work);
            }
        }
        Err(failure) => panic!(
            "{failure}\n(the work directory is kept: {})",
            work.display()
        ),
    }
}

/// One boot: its work directory, the initramfs's size and build time, the
/// checks' outcomes and how qemu went.
struct Vm {
    work: PathBuf,
    image: usize,
    built: Duration,
    outcomes: Vec<Outcome>,
    boot: host::Boot,
    uname: Option<String>,
    finished: bool,
    guest_started: Option<f64>,
    deadline: Duration,
    console_tail: String,
    qemu_log: String,
}

impl Vm {
    fn booted<'a>(&'a self, machine: &'a Machine) -> Booted<'a> {
        Booted {
            release: &machine.release,
            uname: self.uname.clone(),
            finished: self.finished,
            boot: &self.boot,
            guest_started: self.guest_started,
            deadline: self.deadline,
            console_tail: self.console_tail.clone(),
            qemu_log: self.qemu_log.clone(),
        }
    }
}

/// Boots the VM once, runs `checks` in it (each prepared on the host
/// first) and reads how each went.
fn boot_with(
    machine: &Machine,
    checks: &[(&'static Check, Option<&'static MustFail>)],
    deadline: Duration,
) -> Vm {
    let work = std::env::temp_dir().join(format!(
        "kpinspect-vm-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let xfer = work.join("xfer");
    fs::create_dir_all(xfer.join("checks")).expect("VM work directory");
    let built = Instant::now();
    for (i, (check, _)) in checks.iter().enumerate() {
        let dir = check_dir(&xfer, i);
        fs::create_dir_all(&dir).expect("check directory");
        fs::write(dir.join("name"), check.name).expect("write");
        fs::write(dir.join("timeout"), check.timeout_secs.to_string()).expect("write");
        fs::write(dir.join("script"), check_script(check)).expect("write");
        if let Some(prepare) = check.prepare {
            let prepared = std::panic::catch_unwind(|| prepare(&dir));
            assert!(
                prepared.is_ok(),
                "VM check {:?}: preparing it failed",
                check.name
            );
        }
    }
    fs::write(xfer.join("run.sh"), guest_script()).expect("write run.sh");
    let initrd = work.join("initrd.cpio");
    let image = machine
        .initramfs(&format!("{GUEST_XFER}/run.sh"))
        .unwrap_or_else(|e| panic!("building the initramfs: {e}"));
    fs::write(&initrd, &image).expect("write initramfs");
    let built = built.elapsed();

    let console = work.join("console.log");
    let boot = machine
        .boot(&BootParams {
            initrd: &initrd,
            xfer: &xfer,
            console: &console,
            qemu_log: &work.join("qemu.log"),
            started: &xfer.join("started"),
            deadline,
        })
        .unwrap_or_else(|e| panic!("running qemu: {e}"));

    let outcomes = checks
        .iter()
        .enumerate()
        .map(|(i, (c, must_fail))| Outcome::read(c, *must_fail, &check_dir(&xfer, i)))
        .collect();
    Vm {
        image: image.len(),
        built,
        outcomes,
        boot,
        uname: read_trimmed(&xfer.join("uname")),
        finished: xfer.join("done").exists(),
        guest_started: read_trimmed(&xfer.join("started"))
            .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        deadline,
        console_tail: tail(&fs::read_to_string(&console).unwrap_or_default(), 30),
        qemu_log: fs::read_to_string(work.join("qemu.log")).unwrap_or_default(),
        work,
    }
}

/// The script [`vm_script`] runs.
const SCRIPT_ENV: &str = "KPINSPECT_VM_SCRIPT";
/// Its time limit in seconds.
const SCRIPT_TIMEOUT_ENV: &str = "KPINSPECT_VM_SCRIPT_TIMEOUT";
/// The default time limit of a script.
const SCRIPT_TIMEOUT_SECS: u32 = 3000;

/// Runs the bash script `KPINSPECT_VM_SCRIPT` names in the VM (as a check:
/// its own network namespace, from the repository root, `bash -euo
/// pipefail`) and prints its output; fails if the script fails. Not a
/// check: the entry of scripts that need IPVS, e.g. `scripts/perf-ipvs.sh`.
/// `KPINSPECT_VM_SCRIPT_TIMEOUT` (default 3000 s) bounds the script.
#[test]
#[ignore = "runs the script KPINSPECT_VM_SCRIPT names in the VM (scripts/perf-ipvs.sh)"]
fn vm_script() {
    if env_flag(IN_VM_ENV) {
        return;
    }
    let path = std::env::var_os(SCRIPT_ENV)
        .unwrap_or_else(|| panic!("{SCRIPT_ENV}: the script to run in the VM"));
    let script = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{SCRIPT_ENV}={}: {e}", Path::new(&path).display()));
    let machine = Machine::find().unwrap_or_else(|why| panic!("cannot boot the VM: {why}"));
    let timeout_secs = std::env::var(SCRIPT_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCRIPT_TIMEOUT_SECS);
    // One boot per test run: leaking the check's script is harmless.
    let check: &'static Check = Box::leak(Box::new(
        Check::shell("script", Box::leak(script.into_boxed_str())).timeout(timeout_secs),
    ));
    let deadline = Duration::from_secs(u64::from(timeout_secs) + 300);
    let vm = boot_with(&machine, &[(check, None)], deadline);
    let outcome = &vm.outcomes[0];
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.log.as_bytes());
    let _ = out.flush();
    match report(&vm.booted(&machine), &vm.outcomes) {
        Ok(_) => {
            if !env_flag(KEEP_ENV) {
                let _ = fs::remove_dir_all(&vm.work);
            }
        }
        Err(failure) => panic!(
            "{failure}\n(the work directory is kept: {})",
            vm.work.display()
        ),
    }
}

/// Runs one Rust check inside the VM (`KPINSPECT_VM_CHECK` names it);
/// [`vm_checks`] starts it there.
#[test]
#[ignore = "runs inside the VM only (vm::vm_checks boots it)"]
fn in_vm_check() {
    let Ok(name) = std::env::var(CHECK_ENV) else {
        eprintln!("{CHECK_ENV} is not set: not in the VM, nothing to do");
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect(DIR_ENV));
    let (check, _) = all_checks()
        .find(|(c, _)| c.name == name)
        .unwrap_or_else(|| panic!("no VM check named {name:?}"));
    let Run::Rust(f) = check.run else {
        panic!("VM check {name:?} is not a Rust check");
    };
    fs::write(dir.join("ran"), "").expect("write ran");
    f(&dir);
}

fn check_dir(xfer: &Path, i: usize) -> PathBuf {
    xfer.join("checks").join(format!("{i:03}"))
}

/// A check's script in the VM.
fn check_script(check: &Check) -> String {
    match check.run {
        // Says which command failed; `grep -q` and friends fail silently.
        Run::Shell(script) => format!(
            "trap 'echo \"line $((LINENO - 1)) of the check failed (exit $?): $BASH_COMMAND\" >&2' ERR\n{script}\n"
        ),
        Run::Rust(_) => format!(
            "export {CHECK_ENV}=\"$(cat \"${DIR_ENV}/name\")\"\n\
             exec \"$KPINSPECT_TEST_BIN\" vm::in_vm_check --exact --ignored --nocapture --test-threads=1\n"
        ),
    }
}

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// PID 1 after `switch_root`: runs the checks, records how each went in
/// its directory, powers the VM off.
fn guest_script() -> String {
    let test_bin = std::env::current_exe().expect("test binary");
    format!(
        r#"#!/bin/sh
# kpinspect's VM checks (tests/integration/vm): PID 1 in the VM.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export {IN_VM_ENV}=1 RUST_BACKTRACE=1
export KPINSPECT={kpinspect} KPINSPECT_TEST_BIN={test_bin}
D={GUEST_XFER}
cat /proc/uptime > $D/started
uname -r > $D/uname
# What the checks need from the host, if a tmpfs hides it (e.g. under /tmp).
for p in {root} {test_dir} {kpinspect_dir}; do
  [ -e "$p" ] || {{ mkdir -p "$p" && mount --bind "{GUEST_HOST_ROOT}$p" "$p"; }}
done
for c in $D/checks/*; do
  read -r limit < $c/timeout
  read -r start _ < /proc/uptime
  (cd {root} && {DIR_ENV}=$c exec timeout -k 5 $limit unshare --net -- \
    /bin/bash -c 'ip link set lo up && exec /bin/bash -euo pipefail "$1"' check $c/script) \
    > $c/log 2>&1 < /dev/null
  echo $? > $c/status
  read -r end _ < /proc/uptime
  echo $start $end > $c/uptime
done
sync
: > $D/done
sync
echo o > /proc/sysrq-trigger
sleep 60
"#,
        kpinspect = sh_quote(env!("CARGO_BIN_EXE_kpinspect")),
        kpinspect_dir = sh_quote(&parent(Path::new(env!("CARGO_BIN_EXE_kpinspect")))),
        test_bin = sh_quote(&test_bin.to_string_lossy()),
        test_dir = sh_quote(&parent(&test_bin)),
        root = sh_quote(&crate::util::root().to_string_lossy()),
    )
}

fn parent(path: &Path) -> String {
    path.parent()
        .unwrap_or(Path::new("/"))
        .to_string_lossy()
        .into_owned()
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How one check went.
struct Outcome {
    name: &'static str,
    rust: bool,
    must_fail: Option<&'static MustFail>,
    /// Its exit status; none if it never finished.
    status: Option<i32>,
    /// Whether the Rust check's function was reached.
    ran: bool,
    /// Its seconds, by the VM's clock.
    secs: Option<f64>,
    timeout_secs: u32,
    log: String,
}

impl Outcome {
    fn read(check: &'static Check, must_fail: Option<&'static MustFail>, dir: &Path) -> Outcome {
        let secs = read_trimmed(&dir.join("uptime")).and_then(|s| {
            let (a, b) = s.split_once(' ')?;
            Some(b.parse::<f64>().ok()? - a.parse::<f64>().ok()?)
        });
        Outcome {
            name: check.name,
            rust: matches!(check.run, Run::Rust(_)),
            must_fail,
            status: read_trimmed(&dir.join("status")).and_then(|s| s.parse().ok()),
            ran: dir.join("ran").exists(),
            secs,
            timeout_secs: check.timeout_secs,
            log: fs::read_to_string(dir.join("log")).unwrap_or_default(),
        }
    }

    /// Why this outcome is wrong, if it is.
    fn problem(&self) -> Option<String> {
        let Some(status) = self.status else {
            return Some("never finished (the VM stopped first)".into());
        };
        if let Some(m) = self.must_fail {
            return if status == m.status && self.log.contains(m.output) {
                None
            } else {
                Some(format!(
                    "a failure does not propagate: expected exit {} with {:?}, got exit {status}",
                    m.status, m.output
                ))
            };
        }
        match status {
            0 if self.rust && !self.ran => Some(
                "the test binary ran no check (is the entry test vm::in_vm_check still there?)"
                    .into(),
            ),
            0 => None,
            124 | 137 => Some(format!("timed out after {} s", self.timeout_secs)),
            n => Some(format!("exit status {n}")),
        }
    }
}

/// What a boot gave, besides the checks' outcomes.
struct Booted<'a> {
    release: &'a str,
    uname: Option<String>,
    finished: bool,
    boot: &'a host::Boot,
    /// The guest's uptime when the checks began.
    guest_started: Option<f64>,
    deadline: Duration,
    console_tail: String,
    qemu_log: String,
}

/// A summary when every check passed (and every self-test failed as it
/// must), else what went wrong, naming each failing check with its output.
fn report(run: &Booted<'_>, outcomes: &[Outcome]) -> Result<String, String> {
    let mut problems = String::new();
    if !run.finished {
        let _ = writeln!(
            problems,
            "the VM did not finish its checks: {} (qemu: {}{})\n--- serial console, last lines:\n{}",
            if run.boot.timed_out {
                format!("killed after {} s", run.deadline.as_secs())
            } else {
                format!("qemu stopped after {:.1} s", run.boot.total.as_secs_f64())
            },
            run.boot.status,
            if run.qemu_log.trim().is_empty() {
                String::new()
            } else {
                format!("; {}", run.qemu_log.trim())
            },
            run.console_tail
        );
    }
    if run.finished && run.uname.as_deref() != Some(run.release) {
        let _ = writeln!(
            problems,
            "the checks ran under kernel {:?}, not the VM's {}",
            run.uname, run.release
        );
    }
    let mut failed = Vec::new();
    for o in outcomes {
        if let Some(why) = o.problem() {
            failed.push(o.name);
            let _ = writeln!(
                problems,
                "--- FAILED: {} ({why})\n{}",
                o.name,
                tail(&o.log, 60)
            );
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "VM checks failed (kernel {}): {}\n{problems}",
            run.release,
            if failed.is_empty() {
                "see below".to_string()
            } else {
                failed.join(", ")
            }
        ));
    }
    let checks: Vec<_> = outcomes.iter().filter(|o| o.must_fail.is_none()).collect();
    let secs: f64 = outcomes.iter().filter_map(|o| o.secs).sum();
    let mut summary = format!(
        "vm: {} checks passed in a VM (kernel {}, qemu TCG) and {} harness self-tests failed as they must; \
         qemu start to first check {}{}, checks {secs:.1} s, qemu done after {:.1} s",
        checks.len(),
        run.release,
        outcomes.len() - checks.len(),
        run.boot
            .started
            .map_or("?".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        run.guest_started
            .map_or(String::new(), |s| format!(" (guest uptime {s:.1} s)")),
        run.boot.total.as_secs_f64()
    );
    for o in outcomes {
        let _ = write!(
            summary,
            "\n  {:>5.1} s  {}",
            o.secs.unwrap_or(f64::NAN),
            o.name
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(check: &'static Check, status: i32, ran: bool, log: &str) -> Outcome {
        Outcome {
            name: check.name,
            rust: matches!(check.run, Run::Rust(_)),
            must_fail: all_checks()
                .find(|(c, _)| std::ptr::eq(*c, check))
                .and_then(|(_, m)| m),
            status: Some(status),
            ran,
            secs: Some(0.5),
            timeout_secs: check.timeout_secs,
            log: log.into(),
        }
    }

    fn boot() -> host::Boot {
        host::Boot {
            started: Some(Duration::from_secs(12)),
            total: Duration::from_secs(20),
            timed_out: false,
            status: "exit status: 0".into(),
        }
    }

    fn run<'a>(boot: &'a host::Boot, finished: bool) -> Booted<'a> {
        Booted {
            release: "6.1.0-57-amd64",
            uname: Some("6.1.0-57-amd64".into()),
            finished,
            boot,
            guest_started: Some(8.0),
            deadline: DEFAULT_TIMEOUT,
            console_tail: "[ 1.0] last console line".into(),
            qemu_log: String::new(),
        }
    }

    /// The self-tests' outcomes as a working harness gives them.
    fn self_tests_failing() -> Vec<Outcome> {
        SELF_TESTS
            .iter()
            .map(|m| outcome(&m.check, m.status, true, m.output))
            .collect()
    }

    static PASSES: Check = Check::shell("a passing check", "true");
    static FAILS: Check = Check::shell("ipvs: a failing check", "false");
    static RUST: Check = Check::rust("a rust check", |_| {});

    #[test]
    fn a_failing_check_is_named_with_its_output() {
        let b = boot();
        let mut outcomes = vec![
            outcome(&PASSES, 0, false, ""),
            outcome(&FAILS, 3, false, "ipvsadm: no such thing\n"),
        ];
        outcomes.extend(self_tests_failing());
        let err = report(&run(&b, true), &outcomes).unwrap_err();
        assert!(err.contains("VM checks failed (kernel 6.1.0-57-amd64): ipvs: a failing check\n"));
        assert!(
            err.contains(
                "--- FAILED: ipvs: a failing check (exit status 3)\nipvsadm: no such thing"
            )
        );
        assert!(!err.contains("a passing check"), "{err}");
    }

    #[test]
    fn all_passing_gives_a_summary() {
        let b = boot();
        let mut outcomes = vec![outcome(&PASSES, 0, false, ""), outcome(&RUST, 0, true, "")];
        outcomes.extend(self_tests_failing());
        let summary = report(&run(&b, true), &outcomes).unwrap();
        assert!(summary.starts_with("vm: 2 checks passed"), "{summary}");
        assert!(summary.contains("qemu start to first check 12.0 s (guest uptime 8.0 s)"));
    }

    #[test]
    fn a_self_test_that_passes_fails_the_run() {
        let b = boot();
        let outcomes: Vec<_> = SELF_TESTS
            .iter()
            .map(|m| outcome(&m.check, 0, true, ""))
            .collect();
        let err = report(&run(&b, true), &outcomes).unwrap_err();
        assert!(err.contains("a failure does not propagate"), "{err}");
        for m in &SELF_TESTS {
            assert!(err.contains(m.check.name));
        }
    }

    #[test]
    fn a_rust_check_the_binary_did_not_run_fails() {
        let b = boot();
        let mut outcomes = vec![outcome(&RUST, 0, false, "running 0 tests")];
        outcomes.extend(self_tests_failing());
        let err = report(&run(&b, true), &outcomes).unwrap_err();
        assert!(
            err.contains("FAILED: a rust check (the test binary ran no check"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_and_unfinished_boots_are_told() {
        let mut b = boot();
        let mut timed_out = outcome(&FAILS, 124, false, "");
        let mut outcomes = self_tests_failing();
        outcomes.push(outcome(&PASSES, 0, false, ""));
        outcomes.push(outcome(&RUST, 0, true, ""));
        outcomes[3].status = None;
        timed_out.timeout_secs = 7;
        outcomes.push(timed_out);
        b.timed_out = true;
        b.status = "killed".into();
        let err = report(&run(&b, false), &outcomes).unwrap_err();
        assert!(
            err.contains("the VM did not finish its checks: killed after 1200 s"),
            "{err}"
        );
        assert!(err.contains("last console line"));
        assert!(err.contains("FAILED: a rust check (never finished"));
        assert!(err.contains("FAILED: ipvs: a failing check (timed out after 7 s)"));
    }

    #[test]
    fn a_run_under_another_kernel_fails() {
        let b = boot();
        let mut r = run(&b, true);
        r.uname = Some("6.18.44".into());
        let err = report(&r, &self_tests_failing()).unwrap_err();
        assert!(err.contains("not the VM's 6.1.0-57-amd64"), "{err}");
    }

    #[test]
    fn check_names_are_unique() {
        let mut names: Vec<_> = all_checks().map(|(c, _)| c.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}

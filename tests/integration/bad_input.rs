//! The catalogue of malformed inputs in `fixtures/bad/`: each case (a line
//! of `fixtures/bad/CASES`) runs the binary and must exit 2 with one line on
//! stderr naming the file and the object, field or line — or, where
//! kube-proxy would skip the object, exit 0 with one warning naming it —
//! never panic, never hang, never need more than [`MEMORY_BOUND`] of
//! address space, and quote input only as a short escaped excerpt. Its
//! stderr is compared with `fixtures/bad/snapshots/`.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::root;

/// Generous: a guard against a hang, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The address space every case runs in (`prlimit --as`, util-linux): a
/// parser that balloons on a bomb or a deep nesting fails to allocate and
/// aborts, which the test reports. A good compile of the example needs
/// under 32 MiB of it.
const MEMORY_BOUND: u64 = 256 << 20;

/// `kpinspect` under `prlimit --as=BYTES`, from the repository root.
fn kpinspect_bounded(bytes: u64) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_kpinspect"))
        .current_dir(root());
    cmd
}

/// One case: its name and the arguments.
struct Case {
    name: String,
    args: Vec<String>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("fixtures/bad/CASES")).expect("CASES");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace().map(String::from);
            let name = words.next().expect("a case name");
            Case {
                name,
                args: words.collect(),
            }
        })
        .collect()
}

/// Waits for `child`, killing it after [`HANG_GUARD`]; its status code
/// (`None` when killed) and stderr.
fn wait_bounded(mut child: Child) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait") {
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    e.read_to_string(&mut err).expect("utf-8 stderr");
                }
                return (status.code(), err);
            }
            None if start.elapsed() > HANG_GUARD => {
                child.kill().expect("kill");
                let _ = child.wait();
                return (None, String::from("(killed: hang guard)"));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn every_bad_input_is_one_clear_line() {
    let cases = cases();
    assert!(cases.len() >= 40, "the catalogue has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let child = kpinspect_bounded(MEMORY_BOUND)
            .args(&case.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kpinspect");
        let (code, err) = wait_bounded(child);
        let lines: Vec<&str> = err.lines().collect();
        let file = case
            .args
            .iter()
            .find(|a| a.starts_with("fixtures/bad/"))
            .map(|a| a.trim_start_matches("fixtures/bad/"))
            .unwrap_or_default();
        let problem = if err.contains("panicked") {
            Some("panicked")
        } else if lines.len() != 1 {
            Some("not one line on stderr")
        } else if !err.contains("fixtures/bad/") {
            Some("the message does not name the file")
        } else if err.chars().any(|c| c.is_control() && c != '\n') {
            Some("control characters on stderr")
        } else if err.len() > 600 {
            Some("the message is too long")
        } else {
            match code {
                Some(2) if err.starts_with("kpinspect: error: ") => None,
                Some(0) if err.starts_with("kpinspect: warning: ") => None,
                _ => Some("want exit 2 and an error, or exit 0 and a warning"),
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{} ({file}): {p}: {code:?}: {err}", case.name));
            continue;
        }
        let code = code.unwrap_or(-1);
        insta::with_settings!({
            snapshot_path => root().join("fixtures/bad/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(case.name.as_str(), format!("exit {code}\n{err}"));
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bound bites: the example compiles under it, and the alias bomb,
/// which needs about 50 MB before the parser stops it, fails to allocate
/// within 40 MiB (the program itself starts in about 30) — so a case that
/// needed more than [`MEMORY_BOUND`] would fail above.
#[test]
fn the_memory_bound_is_enforced() {
    let args = [
        "compile",
        "--config",
        "examples/kube-proxy-config.yaml",
        "examples/cluster.yaml",
    ];
    let within = kpinspect_bounded(MEMORY_BOUND)
        .args(args)
        .output()
        .expect("run prlimit");
    assert!(within.status.success(), "{within:?}");
    let bomb = [
        "compile",
        "--hostname",
        "node1",
        "fixtures/bad/k8s-yaml-bomb-aliases.yaml",
    ];
    let starved = kpinspect_bounded(40 << 20)
        .args(bomb)
        .output()
        .expect("run prlimit");
    let err = String::from_utf8_lossy(&starved.stderr);
    assert!(
        !starved.status.success() && err.contains("memory allocation of"),
        "the bomb within 40 MiB: {starved:?}"
    );
    // Within the bound it is refused as usual.
    let bounded = kpinspect_bounded(MEMORY_BOUND)
        .args(bomb)
        .output()
        .expect("run prlimit");
    assert_eq!(bounded.status.code(), Some(2), "{bounded:?}");
}

//! `kpinspect golden check|bless`: the project's own fixtures pass, a
//! changed expectation fails with its diff, bless pins a new case, CI
//! refuses bless, bad input is exit status 2.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{kpinspect, root, stderr, stdout};

/// A fresh scratch directory for one test.
fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpinspect-golden-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Copies the fixture `rel` (from the repository root) into `into/name`,
/// without its expected files unless `with_expected`.
fn copy_case(rel: &str, into: &Path, name: &str, with_expected: bool) -> PathBuf {
    let to = into.join(name);
    std::fs::create_dir_all(&to).expect("case dir");
    for file in ["cluster.yaml", "config.yaml", "args", "expected.txt"] {
        let from = root().join(rel).join(file);
        if from.exists() && (with_expected || !file.starts_with("expected")) {
            std::fs::copy(&from, to.join(file)).expect("copy");
        }
    }
    to
}

/// `kpinspect golden ARGS`, without CI in the environment.
fn golden(args: &[&str]) -> Output {
    kpinspect()
        .arg("golden")
        .args(args)
        .env_remove("CI")
        .output()
        .expect("run kpinspect")
}

#[test]
fn the_projects_fixtures_pass() {
    for (dir, min_passed) in [
        ("fixtures/iptables", 10),
        ("fixtures/ipvs", 40),
        ("fixtures/nftables", 10),
    ] {
        let out = golden(&["check", "--quiet", dir]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{dir}: {text}{}", stderr(&out));
        let summary = text.lines().last().unwrap_or_default();
        let passed: usize = summary
            .strip_prefix("golden: ")
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{dir}: no summary in {text}"));
        assert!(passed >= min_passed, "{dir}: {summary}");
        assert!(summary.contains(" 0 failed"), "{dir}: {summary}");
    }
}

#[test]
fn a_changed_expectation_fails_with_a_unified_diff() {
    let dir = scratch("fail");
    let case = copy_case("fixtures/iptables/overall", &dir, "overall", true);
    copy_case("fixtures/nftables/overall", &dir, "nft-overall", true);
    let expected = std::fs::read_to_string(case.join("expected.txt")).expect("expected");
    // Pin a different endpoint for one service.
    let changed = expected.replace("10.180.0.1:80", "10.180.0.9:80");
    assert_ne!(changed, expected);
    std::fs::write(case.join("expected.txt"), &changed).expect("write");

    let out = golden(&["check", dir.to_str().expect("utf-8")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("FAIL  {}\n", case.display())),
        "{text}"
    );
    assert!(
        text.contains("ok    ") && text.contains("nft-overall"),
        "{text}"
    );
    assert!(text.contains("--- expected\n+++ actual\n@@ "), "{text}");
    let minus: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("-") && !l.starts_with("---"))
        .collect();
    let plus: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("+") && !l.starts_with("+++"))
        .collect();
    assert!(
        !minus.is_empty() && minus.iter().all(|l| l.contains("10.180.0.9:80")),
        "{text}"
    );
    assert_eq!(minus.len(), plus.len(), "{text}");
    assert!(plus.iter().all(|l| l.contains("10.180.0.1:80")), "{text}");
    assert!(
        text.ends_with("golden: 1 passed, 1 failed, 0 skipped\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bless_pins_new_cases_and_check_then_passes() {
    let dir = scratch("bless");
    let ipt = copy_case("fixtures/iptables/bad_ips", &dir, "ipt", false);
    let ipvs = copy_case("fixtures/ipvs/external_ips", &dir, "ipvs", false);
    let d = dir.to_str().expect("utf-8");

    let out = golden(&["check", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("expected.txt missing"),
        "{}",
        stdout(&out)
    );

    let out = golden(&["bless", d]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let blessed = std::fs::read_to_string(ipt.join("expected.txt")).expect("blessed");
    // The same as kube-proxy's own golden dump of that case.
    let upstream = std::fs::read_to_string(root().join("fixtures/iptables/bad_ips/expected.txt"))
        .expect("upstream");
    assert_eq!(blessed, upstream);
    let ipvsadm = std::fs::read_to_string(ipvs.join("expected-ipvsadm.txt")).expect("ipvsadm");
    assert!(
        ipvsadm.contains("-A -t 50.60.70.81:80 -s rr\n"),
        "{ipvsadm}"
    );
    assert!(ipvs.join("expected-ipset.txt").exists());

    let out = golden(&["check", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("golden: 2 passed, 0 failed, 0 skipped\n"),
        "{}",
        stdout(&out)
    );

    // A second bless writes nothing.
    let out = golden(&["bless", d]);
    assert!(!stdout(&out).contains("wrote "), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bless_is_refused_under_ci_unless_forced() {
    let dir = scratch("ci");
    let case = copy_case("fixtures/iptables/bad_ips", &dir, "case", false);
    let run = |force: bool| {
        let mut cmd = kpinspect();
        cmd.args(["golden", "bless"]);
        if force {
            cmd.arg("--force");
        }
        cmd.arg(&case)
            .env("CI", "1")
            .output()
            .expect("run kpinspect")
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("CI is set"), "{}", stderr(&out));
    assert!(!case.join("expected.txt").exists());
    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(case.join("expected.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_exit_status_2() {
    let dir = scratch("bad");
    let missing = dir.join("missing");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("empty dir");
    let bad_yaml = copy_case("fixtures/iptables/bad_ips", &dir.join("yaml"), "case", true);
    std::fs::write(bad_yaml.join("cluster.yaml"), "kind: Service\nspec: [\n").expect("write");
    let bad_args = copy_case("fixtures/iptables/bad_ips", &dir.join("args"), "case", true);
    std::fs::write(bad_args.join("args"), "--format\nsorted\n").expect("write");
    for (path, says) in [
        (missing, "missing"),
        (empty, "no golden case here"),
        (bad_yaml.clone(), "cluster.yaml"),
        (bad_args.clone(), "unknown flag \"--format\""),
    ] {
        let out = golden(&["check", path.to_str().expect("utf-8")]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            stdout(&out)
        );
        assert!(
            stderr(&out).contains(says),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! `assert_golden` as a user's test suite would use it: one test per case
//! directory (here kpinspect's own fixtures, one per proxy mode), and what
//! a mismatch looks like.

use std::path::{Path, PathBuf};

use kpinspect_k8s::golden::{Case, Outcome, assert_golden};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

#[test]
fn iptables_overall_matches_kube_proxys_golden_dump() {
    assert_golden(fixture("iptables/overall"));
}

#[test]
fn nftables_overall_matches_kube_proxys_golden_state() {
    assert_golden(fixture("nftables/overall"));
}

#[test]
fn ipvs_external_ips_matches_its_pinned_ipvsadm_and_ipset_texts() {
    assert_golden(fixture("ipvs/external_ips"));
}

/// A copy of `rel` in a scratch directory, its expected file edited.
fn edited_copy(rel: &str, what: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kpinspect-k8s-golden-{what}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    for entry in std::fs::read_dir(fixture(rel)).expect("fixture") {
        let path = entry.expect("entry").path();
        let to = dir.join(path.file_name().expect("name"));
        let text = std::fs::read_to_string(&path).expect("read");
        let text = if to.ends_with("expected.txt") {
            edit(&text)
        } else {
            text
        };
        std::fs::write(to, text).expect("write");
    }
    dir
}

#[test]
#[should_panic(expected = "does not match (set KPINSPECT_BLESS=1 to accept)")]
fn a_mismatch_panics_with_the_diff() {
    let dir = edited_copy("iptables/overall", "panic", |t| {
        t.replace("10.180.0.1:80", "10.180.0.9:80")
    });
    assert_golden(dir);
}

#[test]
fn a_mismatch_names_each_changed_line_and_bless_repairs_it() {
    let dir = edited_copy("nftables/overall", "repair", |t| {
        t.replace("172.30.0.41", "172.30.0.49")
    });
    let case = Case::load(&dir).expect("load");
    let Outcome::Fail { diffs, failures } = case.check().expect("check") else {
        panic!("edited case passed");
    };
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(diffs.len(), 1);
    let (file, diff) = &diffs[0];
    assert_eq!(file, "expected.txt");
    let removed = diff
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"));
    assert!(
        removed.clone().count() > 0 && removed.clone().all(|l| l.contains("172.30.0.49")),
        "{diff}"
    );
    let added = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"));
    assert!(added.clone().all(|l| l.contains("172.30.0.41")), "{diff}");
    assert_eq!(case.bless().expect("bless").len(), 1);
    assert!(matches!(case.check().expect("check"), Outcome::Pass { .. }));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run only by [`bless_goes_through_kpinspect_bless`] in a child process:
/// `assert_golden` of the case named by `KPINSPECT_TEST_CASE`.
#[test]
#[ignore = "a child of bless_goes_through_kpinspect_bless"]
fn assert_golden_child() {
    if let Some(dir) = std::env::var_os("KPINSPECT_TEST_CASE") {
        assert_golden(PathBuf::from(dir));
    }
}

/// `assert_golden` in this test binary again, with `env` set.
fn child(case: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--ignored", "--exact", "assert_golden_child"])
        .env("KPINSPECT_TEST_CASE", case)
        .env_remove("CI")
        .env_remove("KPINSPECT_BLESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run test binary")
}

#[test]
fn bless_goes_through_kpinspect_bless() {
    let dir = edited_copy("iptables/bad_ips", "env", |t| {
        t.replace("10.180.0.1:80", "10.180.0.7:80")
    });
    let edited = std::fs::read_to_string(dir.join("expected.txt")).expect("read");
    // Without KPINSPECT_BLESS the edited case fails.
    assert!(!child(&dir, &[]).status.success());
    // Under CI, blessing is refused and nothing is written.
    let out = child(&dir, &[("KPINSPECT_BLESS", "1"), ("CI", "true")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("refusing to rewrite"));
    assert_eq!(
        std::fs::read_to_string(dir.join("expected.txt")).expect("read"),
        edited
    );
    // KPINSPECT_BLESS=1 writes the expected file: kube-proxy's golden dump again.
    assert!(child(&dir, &[("KPINSPECT_BLESS", "1")]).status.success());
    let blessed = std::fs::read_to_string(dir.join("expected.txt")).expect("read");
    assert_eq!(
        blessed,
        std::fs::read_to_string(fixture("iptables/bad_ips/expected.txt")).expect("upstream")
    );
    assert!(child(&dir, &[]).status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

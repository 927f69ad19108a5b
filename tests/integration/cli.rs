//! The command line: errors, exit statuses, formats.

use crate::util::{run, stderr, stdout};

#[test]
fn compiles_the_shipped_example() {
    let out = run(&[
        "compile",
        "--config",
        "examples/kube-proxy-config.yaml",
        "examples/cluster.yaml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("*filter\n"));
    assert!(
        text.contains("-A KUBE-SERVICES -m comment --comment \"default/web-svc-cip cluster IP\"")
    );
    assert!(kpinspect_core::iptables::check_rule_jumps(&text).is_empty());
}

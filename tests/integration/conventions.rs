//! Command-line conventions shared by every command: `-o/--output`
//! (`--format` kept as a hidden alias), `--quiet`, colour in `diff` only on
//! a terminal, `diff --help` describing diff's own text, and node tools'
//! texts named when passed where a cluster file is expected.

use std::process::{Command, Output};

use crate::util::{kpinspect, root, run, stderr, stdout};

const CONFIG: &str = "examples/kube-proxy-config.yaml";
const CLUSTER: &str = "fixtures/routed/cluster.yaml";
const SAVE: &str = "fixtures/iptables-save/example.nft.txt";

/// Runs with `spelling` for the output flag, `format` as its value.
fn with_output(argv: &[&str], spelling: &str, format: &str) -> String {
    let mut a = argv.to_vec();
    a.extend([spelling, format]);
    let out = run(&a);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{a:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn every_command_takes_dash_o_and_the_old_format_spelling() {
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["compile", "--config", CONFIG, CLUSTER],
            "sorted",
            "*filter",
        ),
        (
            vec!["dump", "--iptables-save", SAVE],
            "json",
            "\"services\"",
        ),
        (
            vec![
                "trace",
                "--src",
                "10.0.0.5",
                "--dst",
                "10.96.0.1:443/tcp",
                "--iptables-save",
                SAVE,
            ],
            "json",
            "\"outcomes\"",
        ),
        (
            vec!["diff", "--iptables-save", SAVE, "--config", CONFIG, CLUSTER],
            "json",
            "\"in_sync\"",
        ),
    ];
    for (argv, format, needle) in cases {
        let short = with_output(&argv, "-o", format);
        assert!(short.contains(needle), "{argv:?} -o {format}: {short}");
        assert_eq!(short, with_output(&argv, "--output", format), "{argv:?}");
        assert_eq!(short, with_output(&argv, "--format", format), "{argv:?}");
        let help = stdout(&run(&[argv[0], "--help"]));
        assert!(
            help.contains("-o, --output <FORMAT>"),
            "{}: {help}",
            argv[0]
        );
        assert!(
            !help.contains("--format"),
            "{}: alias shown: {help}",
            argv[0]
        );
    }
    for verb in ["apply", "cleanup"] {
        let help = stdout(&run(&[verb, "--help"]));
        assert!(help.contains("-o, --output <FORMAT>"), "{verb}: {help}");
        assert!(help.contains("json"), "{verb}: {help}");
    }
    // One vocabulary: dump's table is also `text`.
    let table = with_output(&["dump", "--iptables-save", SAVE], "-o", "table");
    assert!(table.contains("default/kubernetes"), "{table}");
    assert_eq!(
        table,
        with_output(&["dump", "--iptables-save", SAVE], "-o", "text")
    );
}

#[test]
fn quiet_leaves_only_the_output_and_errors() {
    let dir = std::env::temp_dir().join(format!("kpinspect-quiet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cluster = std::fs::read_to_string(root().join(CLUSTER)).expect("cluster");
    let mixed = dir.join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!("{cluster}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: x}}\n"),
    )
    .expect("write");
    let mixed = mixed.to_str().expect("path");
    let loud = run(&["compile", "--config", CONFIG, mixed]);
    assert!(loud.status.success(), "{}", stderr(&loud));
    assert!(stderr(&loud).contains("warning"), "{}", stderr(&loud));
    for q in ["-q", "--quiet"] {
        // Global: before or after the command.
        for argv in [
            vec![q, "compile", "--config", CONFIG, mixed],
            vec!["compile", q, "--config", CONFIG, mixed],
        ] {
            let quiet = run(&argv);
            assert!(quiet.status.success(), "{argv:?}");
            assert_eq!(stderr(&quiet), "", "{argv:?}");
            assert_eq!(stdout(&quiet), stdout(&loud), "{argv:?}");
        }
    }
    // Errors still say why.
    let bad = run(&["-q", "compile", "/nonexistent.yaml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("cannot read"), "{}", stderr(&bad));
}

/// `diff`'s text through a pseudo-terminal (`script`), with `env`.
fn diff_on_a_terminal(env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1) for a pseudo-terminal");
        return None;
    }
    let bin = env!("CARGO_BIN_EXE_kpinspect");
    let cmd = format!("{bin} diff --iptables-save {SAVE} --config {CONFIG} {CLUSTER}");
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .current_dir(root())
        .env_remove("NO_COLOR");
    for (k, v) in env {
        c.env(k, v);
    }
    let out: Output = c.output().expect("script");
    Some(stdout(&out))
}

#[test]
fn diff_is_coloured_only_on_a_terminal_without_no_color() {
    let piped = run(&["diff", "--iptables-save", SAVE, "--config", CONFIG, CLUSTER]);
    assert_eq!(piped.status.code(), Some(1));
    let text = stdout(&piped);
    assert!(text.contains("\n+ -A KUBE-SERVICES"), "{text}");
    assert!(text.contains("\n- -A KUBE-SERVICES"), "{text}");
    assert!(!text.contains('\x1b'), "colour in a pipe");
    let Some(tty) = diff_on_a_terminal(&[]) else {
        return;
    };
    assert!(tty.contains("\x1b[32m+ -A KUBE-SERVICES"), "{tty}");
    assert!(tty.contains("\x1b[31m- -A KUBE-SERVICES"), "{tty}");
    // Only + and - lines.
    assert!(!tty.contains("\x1b[32mIPv4"), "{tty}");
    let no_color = diff_on_a_terminal(&[("NO_COLOR", "1")]).expect("script");
    assert!(!no_color.contains('\x1b'), "{no_color}");
    assert!(no_color.contains("+ -A KUBE-SERVICES"), "{no_color}");
}

#[test]
fn diff_help_describes_diffs_own_text() {
    let help = stdout(&run(&["diff", "--help"]));
    for needle in [
        "compared with",
        "endpoints differ",
        "+ RULE",
        "- RULE",
        "NO_COLOR",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    // Not trace's text.
    assert!(!help.contains("rule path"), "{help}");
}

#[test]
fn node_tool_texts_passed_as_cluster_files_are_named() {
    for (file, what, flag) in [
        (SAVE, "iptables-save output", "--iptables-save"),
        (
            "fixtures/nftables-save/overall.nft",
            "nft list output",
            "--nft",
        ),
        (
            "fixtures/nftables-save/overall.json",
            "nft list output",
            "--nft",
        ),
        (
            "fixtures/ipvs-save/e2e.ipvsadm-sn.txt",
            "ipvsadm output",
            "--ipvsadm",
        ),
        (
            "fixtures/ipvs-save/e2e.ipvsadm-ln.txt",
            "ipvsadm output",
            "--ipvsadm",
        ),
        (
            "fixtures/ipvs-save/e2e.ipset-list.txt",
            "ipset output",
            "--ipset",
        ),
    ] {
        for argv in [
            vec!["compile", file],
            vec!["dump", "--iptables-save", SAVE, "--cluster", file],
            vec!["compile", "--config", file, CLUSTER],
        ] {
            let out = run(&argv);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
            assert!(
                err.contains(&format!(
                    "{file}: this looks like {what}; pass it with {flag}"
                )),
                "{argv:?}: {err}"
            );
            assert!(!err.contains("anchor"), "{argv:?}: {err}");
        }
    }
    // Real kubectl output is not mistaken.
    let mut c = kpinspect();
    c.args(["compile", "--config", CONFIG, CLUSTER]);
    let out = c.output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `doc/kpinspect.1` is what `kpinspect man` generates from the clap
/// definitions; a changed flag or help text without regenerating it fails
/// here (and so in CI).
#[test]
fn the_checked_in_man_page_is_the_generated_one() {
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = stdout(&out);
    let checked_in =
        std::fs::read_to_string(root().join("doc/kpinspect.1")).expect("doc/kpinspect.1");
    assert!(
        generated == checked_in,
        "doc/kpinspect.1 is out of date: regenerate it with\n  cargo run -p kpinspect -- man > doc/kpinspect.1"
    );
    assert!(generated.starts_with(".ie "), "not roff: {generated}");
    for needle in [
        ".SH \"KPINSPECT DUMP\"",
        ".SH \"KPINSPECT GOLDEN CHECK\"",
        "\\-\\-output",
        "\\-\\-quiet",
    ] {
        assert!(generated.contains(needle), "{needle}");
    }
    // The hidden alias stays hidden.
    assert!(
        !generated.contains("\\-\\-format"),
        "--format in the man page"
    );
}

#[test]
fn completions_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for needle in [
            "kpinspect",
            "compile",
            "cleanup",
            "golden",
            "output",
            "iptables-save",
        ] {
            assert!(script.contains(needle), "{shell}: {needle} missing");
        }
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    // Bash's script completes subcommands and formats.
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("skipped: no bash");
        return;
    }
    let script = stdout(&run(&["completions", "bash"]));
    let path =
        std::env::temp_dir().join(format!("kpinspect-completion-{}.bash", std::process::id()));
    std::fs::write(&path, script).expect("write");
    let complete = |words: &str, cword: usize| -> String {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _kpinspect kpinspect \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = Command::new("bash")
            .args(["-c", &probe])
            .output()
            .expect("bash");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(complete("kpinspect com", 1), "compile completions");
    assert_eq!(complete("kpinspect dump -o ''", 3), "table json dot svg");
    assert_eq!(complete("kpinspect diff --output ''", 3), "text json");
    let _ = std::fs::remove_file(&path);
}

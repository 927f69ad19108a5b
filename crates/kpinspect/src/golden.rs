//! `kpinspect golden check|bless DIR...`: golden case directories
//! (`kpinspect_k8s::golden`) checked against, or written from, what they
//! compile to.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_k8s::golden::{Case, Outcome, cases};

use crate::UsageError;
use crate::args::{GoldenArgs, GoldenBlessArgs, GoldenCommand};

/// Runs `golden check|bless`; `quiet` (the global `--quiet`) prints only
/// failures, written files and the summary.
pub fn run(cmd: GoldenCommand, quiet: bool) -> Result<ExitCode> {
    match cmd {
        GoldenCommand::Check(args) => check(args, quiet),
        GoldenCommand::Bless(args) => bless(args, quiet),
    }
}

/// Every case of every directory given, each with whether it was named
/// directly (a case directory rather than a directory of cases).
fn load(dirs: &[PathBuf]) -> Result<Vec<(Case, bool)>> {
    let mut out = Vec::new();
    for dir in dirs {
        let direct = dir.join("cluster.yaml").is_file();
        let loaded = cases(dir).map_err(|e| UsageError(format!("{e:#}")))?;
        for case in &loaded {
            for w in &case.warnings {
                note!("kpinspect: warning: {w}");
            }
        }
        out.extend(loaded.into_iter().map(|c| (c, direct)));
    }
    Ok(out)
}

fn label(case: &Case) -> String {
    case.dir.display().to_string()
}

fn check(args: GoldenArgs, quiet: bool) -> Result<ExitCode> {
    let cases = load(&args.dirs)?;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (case, _) in &cases {
        let outcome = case.check().map_err(|e| UsageError(format!("{e:#}")))?;
        match &outcome {
            Outcome::Pass { .. } => {
                passed += 1;
                if !quiet {
                    println!("ok    {}", label(case));
                }
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                if !quiet {
                    println!("skip  {}: {why}", label(case));
                }
            }
            _ => {
                failed += 1;
                println!("FAIL  {}", label(case));
                print!("{outcome}");
            }
        }
    }
    println!("golden: {passed} passed, {failed} failed, {skipped} skipped");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn bless(args: GoldenBlessArgs, quiet: bool) -> Result<ExitCode> {
    if std::env::var_os("CI").is_some() && !args.force {
        anyhow::bail!(UsageError(
            "golden bless: CI is set; refusing to rewrite expected files (--force to do it anyway)"
                .into()
        ));
    }
    let cases = load(&args.golden.dirs)?;
    let (mut written, mut left) = (0, 0);
    for (case, direct) in &cases {
        if !direct && !case.blessable() {
            left += 1;
            if !quiet {
                println!(
                    "skip  {}: its expectations are assertions, not golden files (bless the case directory itself to pin it)",
                    label(case)
                );
            }
            continue;
        }
        let files = case.bless().map_err(|e| UsageError(format!("{e:#}")))?;
        for f in &files {
            println!("wrote {}", f.display());
        }
        written += files.len();
    }
    println!(
        "golden: {written} files written, {} cases up to date or blessed, {left} left alone",
        cases.len() - left
    );
    Ok(ExitCode::SUCCESS)
}

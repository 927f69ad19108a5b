//! Where the node's rules come from: `--iptables-save` files, or the live
//! node through kpinspect-node.

use std::path::PathBuf;

use anyhow::Result;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_node::LiveNode;

use crate::UsageError;

/// A parsed save and where it came from.
pub struct Source {
    /// File name or live command.
    pub name: String,
    /// The rules.
    pub rules: Ruleset,
}

/// Reads and parses `--iptables-save` files.
pub fn read_saves(paths: &[PathBuf]) -> Result<Vec<Source>> {
    paths
        .iter()
        .map(|path| {
            let text = crate::read_input(path)?;
            // Parsed as iptables-restore reads it: the syntax, then every
            // rule's chain declared (or built in).
            let rules = Ruleset::parse(&text)
                .and_then(|r| r.check_chains_declared().map(|()| r))
                .map_err(|e| UsageError::msg(format!("{}: {e}", path.display())))?;
            Ok(Source {
                name: path.display().to_string(),
                rules,
            })
        })
        .collect()
}

/// Reads the live node's rules of `family`, or with `None` of both
/// families whose tools are installed.
pub fn read_live(node: &LiveNode, family: Option<IpFamily>) -> Result<Vec<Source>> {
    Ok(kpinspect_node::read_families(node, family)
        .map_err(UsageError::from)?
        .into_iter()
        .map(|r| Source {
            name: r.from,
            rules: r.rules,
        })
        .collect())
}

/// The one ruleset of `family`: from the files, or the live node when none
/// are given.
pub fn ruleset_for(paths: &[PathBuf], family: IpFamily) -> Result<(String, Ruleset)> {
    if paths.is_empty() {
        let node = crate::live::node()?;
        let s = read_live(&node, Some(family))?.remove(0);
        return Ok((s.name, s.rules));
    }
    let mut sources = read_saves(paths)?;
    if sources.len() == 1 {
        let s = sources.remove(0);
        return Ok((s.name, s.rules));
    }
    let mut matching: Vec<Source> = sources
        .into_iter()
        .filter(|s| s.rules.family().is_none_or(|f| f == family))
        .collect();
    match matching.len() {
        1 => {
            let s = matching.remove(0);
            Ok((s.name, s.rules))
        }
        0 => anyhow::bail!(UsageError::msg(format!(
            "none of the --iptables-save files is for {family:?}"
        ))),
        _ => anyhow::bail!(UsageError::msg(format!(
            "several --iptables-save files are for {family:?}; give one"
        ))),
    }
}

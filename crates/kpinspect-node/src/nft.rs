//! A node's nftables: list a table or the ruleset, apply an `nft -f`
//! script atomically. [`SystemNftables`] runs the `nft` binary by argument
//! vector (never a shell); [`MemoryNode`] keeps tables in memory as
//! knftables' fake does ([`kpinspect_core::nft::Fake`]), so that apply and
//! cleanup are tested without root.

use std::collections::BTreeMap;

use kpinspect_core::nft::{Fake, FakeError, Family, parse_script};

use crate::error::NodeError;
use crate::memory::MemoryNode;
use crate::system::run;

/// The `nft` binary.
pub const NFT: &str = "nft";

/// A failure to list or change the node's nftables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// `nft` is not installed.
    #[error("nft not found (is the nftables package installed?)")]
    Missing,
    /// Not root, or without `CAP_NET_ADMIN`.
    #[error("nft: permission denied (run as root or with CAP_NET_ADMIN): {message}")]
    Permission {
        /// nft's explanation.
        message: String,
    },
    /// A script was refused; nothing of it was applied.
    #[error("nft -f refused the script{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Refused {
        /// The 1-based script line nft blamed, when it said.
        line: Option<usize>,
        /// nft's message.
        message: String,
    },
    /// nft failed for another reason (or could not be run).
    #[error("nft: {0}")]
    Other(String),
}

/// A node's nftables, as text.
pub trait Nftables {
    /// `nft list table FAMILY TABLE` (a listing
    /// [`kpinspect_core::nft::Ruleset::parse`] reads); `None` when there is
    /// no such table. The text listing, not `nft -j`: for a 1,000-service
    /// table nft prints the JSON with about 3 times the CPU, and parsing it
    /// takes about 5 times the text's.
    fn list_table(&self, family: Family, table: &str) -> Result<Option<String>, NftError>;

    /// `nft -j list ruleset`: every table.
    fn list_ruleset(&self) -> Result<String, NftError>;

    /// `nft -f -` with `script` on stdin: all of it or nothing.
    fn apply(&self, script: &str) -> Result<(), NftError>;
}

/// The node's `nft` binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemNftables;

impl SystemNftables {
    /// The real node.
    pub fn new() -> SystemNftables {
        SystemNftables
    }
}

/// `/dev/stdin:3:22-25: Error: ...` → 3.
fn script_line(stderr: &str) -> Option<usize> {
    stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("/dev/stdin:")?;
        rest.split(':').next()?.parse().ok()
    })
}

fn nft_error(e: NodeError, script: bool) -> NftError {
    match e {
        NodeError::Missing { .. } => NftError::Missing,
        NodeError::Permission { message, .. } => NftError::Permission { message },
        NodeError::Restore { message, .. } if script => NftError::Refused {
            line: script_line(&message.replace(" / ", "\n")),
            message,
        },
        NodeError::Command { stderr, .. } if script => NftError::Refused {
            line: script_line(&stderr),
            message: stderr.trim().to_string(),
        },
        other => NftError::Other(other.to_string()),
    }
}

impl Nftables for SystemNftables {
    fn list_table(&self, family: Family, table: &str) -> Result<Option<String>, NftError> {
        match run(NFT, &["list", "table", family.as_str(), table], None) {
            Ok(out) => Ok(Some(out)),
            Err(NodeError::Command { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(nft_error(e, false)),
        }
    }

    fn list_ruleset(&self) -> Result<String, NftError> {
        run(NFT, &["-j", "list", "ruleset"], None).map_err(|e| nft_error(e, false))
    }

    fn apply(&self, script: &str) -> Result<(), NftError> {
        run(NFT, &["-f", "-"], Some(script))
            .map(drop)
            .map_err(|e| nft_error(e, true))
    }
}

/// nftables tables in memory, per (family, name).
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryNft {
    tables: BTreeMap<(String, String), Fake>,
    scripts: Vec<String>,
    fail_next: Option<NftError>,
}

impl MemoryNft {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.scripts.push(script.to_string());
        if let Some(e) = self.fail_next.take() {
            return Err(e);
        }
        let txs = parse_script(script).map_err(|e| NftError::Refused {
            line: Some(e.line),
            message: e.message,
        })?;
        // The script's operation lines, to name a refused operation's line.
        let lines: Vec<usize> = script
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#'))
            .map(|(i, _)| i + 1)
            .collect();
        let mut next = self.tables.clone();
        let mut before = 0;
        for tx in &txs {
            let key = (tx.family.as_str().to_string(), tx.table.clone());
            let fake = next
                .entry(key.clone())
                .or_insert_with(|| Fake::new(tx.family, &tx.table, true));
            // `delete table` of a missing table fails in nft as in the fake;
            // `add table` creates it.
            fake.apply(tx).map_err(|e| match e {
                FakeError::NotFound {
                    index,
                    kind,
                    name,
                    line,
                } => NftError::Refused {
                    line: lines.get(before + index).copied(),
                    message: format!("{line}: no such {kind} {name:?}"),
                },
                other => NftError::Other(other.to_string()),
            })?;
            if !fake.has_table() {
                next.remove(&key);
            }
            before += tx.len();
        }
        self.tables = next;
        Ok(())
    }

    fn list_table(&self, family: Family, table: &str) -> Option<String> {
        self.tables
            .get(&(family.as_str().to_string(), table.to_string()))
            .and_then(Fake::listing)
    }

    fn list_ruleset(&self) -> String {
        self.tables.values().filter_map(Fake::listing).collect()
    }
}

impl MemoryNode {
    /// The `nft -f` scripts this node received, in order.
    pub fn nft_scripts(&self) -> Vec<String> {
        self.lock().nft.scripts.clone()
    }

    /// Makes the next [`Nftables::apply`] fail with `error`, changing
    /// nothing.
    pub fn fail_next_nft(&self, error: NftError) {
        self.lock().nft.fail_next = Some(error);
    }
}

/// In memory, a listing is `nft list table` text (rules as they were
/// added; the readers accept both nft's and knftables' spelling), not
/// JSON.
impl Nftables for MemoryNode {
    fn list_table(&self, family: Family, table: &str) -> Result<Option<String>, NftError> {
        Ok(self.lock().nft.list_table(family, table))
    }

    fn list_ruleset(&self) -> Result<String, NftError> {
        Ok(self.lock().nft.list_ruleset())
    }

    fn apply(&self, script: &str) -> Result<(), NftError> {
        self.lock().nft.apply(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpinspect_core::mode::nftables::{read_listing, sort_nftables_transaction};

    #[test]
    fn nft_error_lines() {
        assert_eq!(
            script_line(
                "/dev/stdin:3:22-25: Error: Could not process rule: No such file or directory\n"
            ),
            Some(3)
        );
        assert_eq!(script_line("Error: syntax error"), None);
    }

    #[test]
    fn memory_applies_atomically_and_lists_what_it_holds() {
        let node = MemoryNode::new();
        assert_eq!(node.list_table(Family::Ip, "t"), Ok(None));
        let script = "add table ip t\nadd chain ip t c\nadd rule ip t c jump d\n";
        let e = node.apply(script).expect_err("d is missing");
        assert!(matches!(e, NftError::Refused { line: Some(3), .. }), "{e}");
        assert_eq!(node.list_ruleset(), Ok(String::new()), "nothing applied");
        node.apply("add table ip t\nadd chain ip t d\nadd table inet other\n")
            .expect("applies");
        node.apply(script).expect("applies now");
        let listed = node
            .list_table(Family::Ip, "t")
            .expect("lists")
            .expect("exists");
        assert!(
            listed.contains("\tchain c {\n\t\tjump d\n\t}\n"),
            "{listed}"
        );
        assert_eq!(
            node.list_ruleset()
                .expect("lists")
                .matches("table ")
                .count(),
            2
        );
        node.apply("delete table ip t\n").expect("deletes");
        assert_eq!(node.list_table(Family::Ip, "t"), Ok(None));
        let e = node.apply("delete table ip t\n").expect_err("gone");
        assert!(matches!(e, NftError::Refused { line: Some(1), .. }), "{e}");
        node.fail_next_nft(NftError::Other("boom".into()));
        assert!(node.apply("add table ip t\n").is_err());
        assert_eq!(node.list_table(Family::Ip, "t"), Ok(None));
        assert_eq!(node.nft_scripts().len(), 6);
        assert!(matches!(
            node.apply("insert rule ip t c accept\n"),
            Err(NftError::Refused { line: Some(1), .. })
        ));
    }

    /// kube-proxy's first sync for TestOverallNFTablesRules, applied to the
    /// memory node and listed, reads back into the state knftables' fake
    /// holds after the same transaction.
    #[test]
    fn a_kube_proxy_table_round_trips() {
        let tx = include_str!("../../../fixtures/nftables/overall/transaction.txt");
        let node = MemoryNode::new();
        node.apply(tx).expect("applies");
        let listed = node
            .list_table(Family::Ip, "kube-proxy")
            .expect("lists")
            .expect("exists");
        let read = read_listing(&listed).expect("reads");
        assert_eq!(read.tables.len(), 1);
        assert!(
            read.tables[0].unrecognised.is_empty(),
            "{:?}",
            read.tables[0].unrecognised
        );
        let mut fake = Fake::new(Family::Ip, "kube-proxy", true);
        for t in parse_script(tx).expect("parses") {
            fake.apply(&t).expect("fake applies");
        }
        // The fixture writes the test's literal mark; a reader gives nft's.
        let want = sort_nftables_transaction(&fake.dump()).replace("0x4000", "0x00004000") + "\n";
        assert_eq!(read.tables[0].sorted(), want);
        assert!(want.contains("mark set mark or 0x00004000"));
    }
}

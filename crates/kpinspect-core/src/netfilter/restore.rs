//! The text kube-proxy feeds `iptables-restore`, kept in the four buffers
//! kube-proxy itself writes (filter chains and rules, nat chains and rules)
//! so that it renders byte for byte in kube-proxy's layout.

use std::fmt::Write as _;

use crate::net::IpFamily;

/// Lines of restore input, counted as they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineBuffer {
    buf: String,
    lines: usize,
}

impl LineBuffer {
    /// Writes one line built from `args` (a newline is added).
    pub fn write_fmt_line(&mut self, args: std::fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = self.buf.write_fmt(args);
        self.buf.push('\n');
        self.lines += 1;
    }

    /// Writes `line` (without its newline).
    pub fn write_str_line(&mut self, line: &str) {
        self.buf.push_str(line);
        self.buf.push('\n');
        self.lines += 1;
    }

    /// The number of lines written.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The text, one `\n`-terminated line after another.
    pub fn as_str(&self) -> &str {
        &self.buf
    }
}

/// Writes one line to a [`LineBuffer`] with `format!` syntax.
macro_rules! wln {
    ($buf:expr, $($arg:tt)*) => {
        $buf.write_fmt_line(format_args!($($arg)*))
    };
}
pub(crate) use wln;

/// One table of a restore input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreTable {
    /// Chain declarations (`:NAME - [0:0]`).
    pub chains: LineBuffer,
    /// Rules (`-A ...`) and deletions (`-X ...`).
    pub rules: LineBuffer,
}

/// Which table a [`Restore`] writes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TableOrder {
    /// `*filter`, then `*nat` (kube-proxy's iptables mode).
    #[default]
    FilterFirst,
    /// `*nat`, then `*filter` (kube-proxy's IPVS mode).
    NatFirst,
}

/// A complete `iptables-restore` / `ip6tables-restore` input: the filter
/// and nat tables, in the order the program writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The family (`iptables-restore` or `ip6tables-restore`).
    pub family: IpFamily,
    /// Which table comes first in the text.
    pub order: TableOrder,
    /// `*filter`.
    pub filter: RestoreTable,
    /// `*nat`.
    pub nat: RestoreTable,
}

impl Restore {
    /// Number of `-A` rules in the filter table.
    pub fn filter_rule_count(&self) -> usize {
        count_rules(self.filter.rules.as_str())
    }

    /// Number of `-A` rules in the nat table.
    pub fn nat_rule_count(&self) -> usize {
        count_rules(self.nat.rules.as_str())
    }

    /// Number of chains declared in the nat table.
    pub fn nat_chain_count(&self) -> usize {
        self.nat.chains.lines()
    }

    /// The restore text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(
            self.filter.chains.as_str().len()
                + self.filter.rules.as_str().len()
                + self.nat.chains.as_str().len()
                + self.nat.rules.as_str().len()
                + 32,
        );
        let tables = match self.order {
            TableOrder::FilterFirst => [("filter", &self.filter), ("nat", &self.nat)],
            TableOrder::NatFirst => [("nat", &self.nat), ("filter", &self.filter)],
        };
        for (name, table) in tables {
            out.push('*');
            out.push_str(name);
            out.push('\n');
            out.push_str(table.chains.as_str());
            out.push_str(table.rules.as_str());
            out.push_str("COMMIT\n");
        }
        out
    }
}

impl std::fmt::Display for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

fn count_rules(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("-A ")).count()
}

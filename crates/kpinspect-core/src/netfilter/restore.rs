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

    /// Reserves room for `additional` more bytes. Room never written costs
    /// no memory (the kernel backs pages only when they are touched), and
    /// a buffer that never grows is never copied.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
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
        let parts = self.parts();
        let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            out.push_str(part);
        }
        out
    }

    /// The text of [`Restore::render`] as the pieces it is kept in, in
    /// order, without copying them into one string: a caller writing a large
    /// restore input (tens of megabytes) writes these one after the other.
    ///
    /// ```
    /// use kpinspect_core::net::IpFamily;
    /// use kpinspect_core::netfilter::{Restore, TableOrder};
    /// let mut r = Restore {
    ///     family: IpFamily::V4,
    ///     order: TableOrder::NatFirst,
    ///     filter: Default::default(),
    ///     nat: Default::default(),
    /// };
    /// r.nat.chains.write_str_line(":KUBE-SERVICES - [0:0]");
    /// assert!(r.render().starts_with("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*filter\n"));
    /// assert_eq!(r.parts().concat(), r.render());
    /// ```
    pub fn parts(&self) -> [&str; 8] {
        let tables = match self.order {
            TableOrder::FilterFirst => [("*filter\n", &self.filter), ("*nat\n", &self.nat)],
            TableOrder::NatFirst => [("*nat\n", &self.nat), ("*filter\n", &self.filter)],
        };
        let [(first, a), (second, b)] = tables;
        [
            first,
            a.chains.as_str(),
            a.rules.as_str(),
            "COMMIT\n",
            second,
            b.chains.as_str(),
            b.rules.as_str(),
            "COMMIT\n",
        ]
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

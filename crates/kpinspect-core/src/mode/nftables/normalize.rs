//! kube-proxy's nftables test normaliser (`sortNFTablesTransaction` in
//! `pkg/proxy/nftables/helpers_test.go`): kube-proxy writes service ports in
//! random order, so its golden tests compare the fake table's dump and the
//! expected text after this sort.

use std::cmp::Ordering;

/// Normalises `text` (a transaction or a dump) as kube-proxy's
/// `sortNFTablesTransaction` does: drops empty lines and lines starting
/// with `#`, then sorts stably — tables, chains, rules, sets, maps,
/// elements; within a kind by object name (the fifth word); rules of one
/// chain keep their order, other lines sort whole. The lines are joined
/// with `\n`, without a final newline.
///
/// ```
/// use kpinspect_core::mode::nftables::sort_nftables_transaction;
/// let raw = "add element ip kube-proxy s { 2 }\n# comment\n\nadd rule ip kube-proxy b x\n\
///            add rule ip kube-proxy a z\nadd rule ip kube-proxy a y\nadd element ip kube-proxy s { 1 }\n";
/// assert_eq!(
///     sort_nftables_transaction(raw),
///     "add rule ip kube-proxy a z\nadd rule ip kube-proxy a y\nadd rule ip kube-proxy b x\n\
///      add element ip kube-proxy s { 1 }\nadd element ip kube-proxy s { 2 }"
/// );
/// ```
pub fn sort_nftables_transaction(text: &str) -> String {
    let mut lines: Vec<(&str, Vec<&str>)> = text
        .split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (l, l.splitn(6, ' ').take(5).collect()))
        .collect();
    lines.sort_by(|(li, wi), (lj, wj)| compare(li, wi, lj, wj));
    let mut out = String::with_capacity(text.len());
    for (i, (line, _)) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

fn rank(kind: &str) -> u8 {
    match kind {
        "table" => 10,
        "chain" => 9,
        "rule" => 8,
        "set" => 7,
        "map" => 6,
        "element" => 5,
        _ => 0,
    }
}

/// The order of kube-proxy's `less` on lines `li`, `lj` with their first
/// five words, made total where its `less` is silent (equal ranks of
/// unknown kinds compare equal).
fn compare(li: &str, wi: &[&str], lj: &str, wj: &[&str]) -> Ordering {
    if wi.len() < 5 || wj.len() < 5 {
        return Ordering::Equal;
    }
    if wi[1] != wj[1] {
        return rank(wj[1]).cmp(&rank(wi[1]));
    }
    if wi[4] != wj[4] {
        return wi[4].cmp(wj[4]);
    }
    if wi[1] == "rule" {
        return Ordering::Equal;
    }
    li.cmp(lj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_then_names_then_lines() {
        let raw = "add element ip kube-proxy m { b }\n\
                   add map ip kube-proxy m { type x : verdict ; }\n\
                   add set ip kube-proxy s { type y ; }\n\
                   add rule ip kube-proxy c2 r1\n\
                   add chain ip kube-proxy c2\n\
                   add chain ip kube-proxy c1\n\
                   add element ip kube-proxy m { a }\n\
                   add table ip kube-proxy { comment \"x\" ; }\n\
                   add rule ip kube-proxy c1 r2\n\
                   add rule ip kube-proxy c1 r1";
        assert_eq!(
            sort_nftables_transaction(raw),
            "add table ip kube-proxy { comment \"x\" ; }\n\
             add chain ip kube-proxy c1\n\
             add chain ip kube-proxy c2\n\
             add rule ip kube-proxy c1 r2\n\
             add rule ip kube-proxy c1 r1\n\
             add rule ip kube-proxy c2 r1\n\
             add set ip kube-proxy s { type y ; }\n\
             add map ip kube-proxy m { type x : verdict ; }\n\
             add element ip kube-proxy m { a }\n\
             add element ip kube-proxy m { b }"
        );
    }

    #[test]
    fn comments_and_blank_lines_go() {
        assert_eq!(
            sort_nftables_transaction("# svc1\nadd chain ip t b\n\nadd chain ip t a\n"),
            "add chain ip t a\nadd chain ip t b"
        );
    }
}

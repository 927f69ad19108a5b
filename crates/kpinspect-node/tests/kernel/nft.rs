//! `SystemNftables` against the kernel's nf_tables, in a fresh network
//! namespace, and the in-memory node against it: the same scripts give the
//! same tables.

use kpinspect_core::mode::nftables::read_listing;
use kpinspect_core::nft::Family;
use kpinspect_node::{MemoryNode, NftError, Nftables, SystemNftables};

use crate::{available, has_tool, in_child, rerun_in};

const TEST: &str = "nft::system_and_memory_nftables_agree";

#[test]
fn system_and_memory_nftables_agree() {
    if in_child(TEST) {
        return in_namespace();
    }
    if available() {
        assert!(has_tool("nft"), "nft is missing (see .ci/run)");
        rerun_in(&["unshare", "-n", "--"], TEST);
    }
}

fn in_namespace() {
    let sys = SystemNftables::new();
    let mem = MemoryNode::new();
    assert_eq!(sys.list_table(Family::Ip, "kube-proxy"), Ok(None));
    let tx = include_str!("../../../../fixtures/nftables/overall/transaction.txt");
    sys.apply(tx).expect("nft -f takes kube-proxy's first sync");
    mem.apply(tx).expect("the memory node too");
    let read = |n: &dyn Nftables| {
        let listing = n
            .list_table(Family::Ip, "kube-proxy")
            .expect("lists")
            .expect("the table exists");
        let node = read_listing(&listing).expect("reads");
        assert!(node.tables[0].unrecognised.is_empty());
        node.tables[0].sorted()
    };
    let kernel = read(&sys);
    assert_eq!(kernel, read(&mem), "the kernel and the memory node agree");
    assert!(kernel.contains("add rule ip kube-proxy masquerading masquerade fully-random\n"));
    // A refused script names its line and changes nothing, in both.
    let bad = "add table ip kube-proxy\nadd chain ip kube-proxy extra\n\
               add rule ip kube-proxy extra jump nowhere\n";
    for n in [&sys as &dyn Nftables, &mem] {
        let e = n.apply(bad).expect_err("jump to a missing chain");
        assert!(matches!(e, NftError::Refused { line: Some(3), .. }), "{e}");
        assert_eq!(read(n), kernel);
    }
    let ruleset = sys.list_ruleset().expect("lists the ruleset");
    assert_eq!(read_listing(&ruleset).expect("reads").tables.len(), 1);
    sys.apply("delete table ip kube-proxy\n").expect("deletes");
    mem.apply("delete table ip kube-proxy\n").expect("deletes");
    assert_eq!(sys.list_table(Family::Ip, "kube-proxy"), Ok(None));
    assert_eq!(mem.list_table(Family::Ip, "kube-proxy"), Ok(None));
    assert!(matches!(
        sys.apply("delete table ip kube-proxy\n"),
        Err(NftError::Refused { line: Some(1), .. })
    ));
}

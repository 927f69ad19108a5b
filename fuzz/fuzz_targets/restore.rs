//! The restore simulation: any payload on a node holding kube-proxy-like
//! rules fails or gives a node whose iptables-save layout parses back to
//! itself; never a panic.
#![no_main]
use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
use libfuzzer_sys::fuzz_target;

const NODE: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n-A KUBE-SVC-A -j DNAT --to-destination 10.244.0.5:8080\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 1.2.3.4/32 -j DROP\nCOMMIT\n";

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = std::str::from_utf8(data) else {
        return;
    };
    let base = Ruleset::parse(NODE).expect("the node parses");
    for flush in [RestoreFlush::NoFlush, RestoreFlush::Flush] {
        let mut node = base.clone();
        match node.restore(payload, flush) {
            // Like iptables-restore (legacy), tables before the failing
            // one's COMMIT stay committed: a failure leaves no half table.
            Err(_) => {}
            Ok(()) => {
                let saved = node.render();
                // The saved layout parses back to the same text (rules in
                // iptables-save's option order, not the value's).
                let again = Ruleset::parse(&saved).expect("the saved layout parses");
                assert_eq!(again.render(), saved);
                assert_eq!(again.tables().len(), node.tables().len());
            }
        }
    }
});

//! The node this process runs on: its iptables through the backend that
//! holds kube-proxy's rules, and its ipsets.

use kpinspect_core::net::IpFamily;

use crate::detect::{Detection, detect_backend};
use crate::error::NodeError;
use crate::system::{Backend, SystemIpSets, SystemIptables};
use crate::{IpSets, Iptables};

/// The live node: [`SystemIptables`] of the backend [`detect_backend`]
/// chose, and [`SystemIpSets`]. The backend is detected once, when the
/// node is made: a cleanup that empties one backend must not switch to the
/// other halfway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// How the backend was chosen, and whether both hold kube-proxy's
    /// chains.
    pub detection: Detection,
    iptables: SystemIptables,
}

impl LiveNode {
    /// Detects the backend with the real tools.
    pub fn detect() -> Result<LiveNode, NodeError> {
        Ok(LiveNode::with_detection(detect_backend()?))
    }

    /// The live node through the backend `detection` chose.
    pub fn with_detection(detection: Detection) -> LiveNode {
        LiveNode {
            iptables: SystemIptables::new(detection.backend),
            detection,
        }
    }

    /// The backend whose tools are run.
    pub fn backend(&self) -> Backend {
        self.detection.backend
    }

    /// Whether both backends hold kube-proxy's chains (the ones in the
    /// backend not in use are stale; see [`Detection::warning`]).
    pub fn both_backends(&self) -> bool {
        self.detection.legacy_has_kube && self.detection.nft_has_kube
    }
}

impl Iptables for LiveNode {
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        self.iptables.save(family)
    }

    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        self.iptables.restore(family, payload)
    }

    fn save_program(&self, family: IpFamily) -> String {
        self.iptables.save_program(family)
    }

    fn restore_program(&self, family: IpFamily) -> String {
        self.iptables.restore_program(family)
    }
}

impl IpSets for LiveNode {
    fn save(&self) -> Result<String, NodeError> {
        SystemIpSets.save()
    }

    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        SystemIpSets.restore(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::decide_backend;

    #[test]
    fn names_the_detected_backends_programs() {
        let node = LiveNode::with_detection(decide_backend(
            "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n",
            "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n",
        ));
        assert_eq!(node.backend(), Backend::Legacy);
        assert!(node.both_backends());
        assert_eq!(node.save_program(IpFamily::V6), "ip6tables-legacy-save");
        assert_eq!(
            node.restore_program(IpFamily::V4),
            "iptables-legacy-restore"
        );
    }
}

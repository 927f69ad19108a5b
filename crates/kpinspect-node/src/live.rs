//! The node this process runs on: its iptables through the backend that
//! holds kube-proxy's rules, and its ipsets.

use kpinspect_core::net::IpFamily;

use std::cell::RefCell;

use crate::detect::{Detection, DetectionSaves, detect_backend, detect_backend_keeping_saves};
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
    /// The chosen backend's full saves detection ran, each answering the
    /// first [`Iptables::save`] of its family; dropped by any restore.
    kept: RefCell<DetectionSaves>,
}

impl LiveNode {
    /// Detects the backend with the real tools.
    pub fn detect() -> Result<LiveNode, NodeError> {
        Ok(LiveNode::with_detection(detect_backend()?))
    }

    /// Detects the backend with the real tools, keeping the full saves of
    /// the chosen backend that detection ran (iptables-legacy's always;
    /// iptables-nft's unless kubelet's hint decided): the first
    /// [`Iptables::save`] of each family returns that text instead of
    /// running the save program again, and any [`Iptables::restore`] drops
    /// what is left. Only for a caller that holds its rules lock
    /// ([`lock_rules`](crate::lock_rules)) before calling this and writes
    /// nothing before its read: the read is then as current as a save
    /// run at that point.
    pub fn detect_keeping_saves() -> Result<LiveNode, NodeError> {
        let (detection, saves) = detect_backend_keeping_saves()?;
        Ok(LiveNode::with_detection_and_saves(detection, saves))
    }

    /// [`LiveNode::with_detection`] with the saves detection ran (see
    /// [`LiveNode::detect_keeping_saves`]); those of the other backend are
    /// dropped.
    pub fn with_detection_and_saves(detection: Detection, mut saves: DetectionSaves) -> LiveNode {
        let backend = detection.backend;
        let mut kept = DetectionSaves::default();
        for (i, family) in [IpFamily::V4, IpFamily::V6].into_iter().enumerate() {
            let text = saves.take(backend, family);
            match backend {
                Backend::Legacy => kept.legacy[i] = text,
                Backend::Nft => kept.nft[i] = text,
            }
        }
        LiveNode {
            iptables: SystemIptables::new(backend),
            detection,
            kept: RefCell::new(kept),
        }
    }

    /// The live node through the backend `detection` chose.
    pub fn with_detection(detection: Detection) -> LiveNode {
        LiveNode {
            iptables: SystemIptables::new(detection.backend),
            detection,
            kept: RefCell::new(DetectionSaves::default()),
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
        let backend = self.detection.backend;
        if let Some(text) = self.kept.borrow_mut().take(backend, family) {
            return Ok(text);
        }
        self.iptables.save(family)
    }

    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        *self.kept.borrow_mut() = DetectionSaves::default();
        self.iptables.restore(family, payload)
    }

    fn save_program(&self, family: IpFamily) -> String {
        self.iptables.save_program(family)
    }

    fn restore_program(&self, family: IpFamily) -> String {
        self.iptables.restore_program(family)
    }

    fn restore_batch_lines(&self) -> Option<usize> {
        self.iptables.restore_batch_lines()
    }
}

impl IpSets for LiveNode {
    fn save(&self) -> Result<String, NodeError> {
        SystemIpSets.save()
    }

    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        SystemIpSets.restore(payload)
    }

    fn start_restore(&self, payload: &str) -> crate::PendingRestore {
        SystemIpSets.start_restore(payload)
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

    #[test]
    fn a_kept_save_answers_the_first_read_of_its_family_only() {
        let detection = decide_backend(
            "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n",
            "",
        );
        let saves = DetectionSaves {
            legacy: [Some("legacy v4\n".into()), None],
            nft: [Some("nft v4\n".into()), Some("nft v6\n".into())],
        };
        let node = LiveNode::with_detection_and_saves(detection, saves);
        assert_eq!(node.backend(), Backend::Legacy);
        // The other backend's saves are not kept.
        assert_eq!(node.kept.borrow().nft, [None, None]);
        assert_eq!(
            Iptables::save(&node, IpFamily::V4).expect("kept"),
            "legacy v4\n"
        );
        assert_eq!(node.kept.borrow().legacy, [None, None]);
    }
}

//! Which iptables backend the node uses, decided the way Kubernetes'
//! `iptables-wrapper` (kubernetes-sigs/iptables-wrappers, used by the
//! kube-proxy image) decides it.
//!
//! (The rule is documented on [`decide_backend`].)

use kpinspect_core::net::IpFamily;

use crate::Iptables as _;
use crate::error::NodeError;
use crate::system::{Backend, SystemIptables, run};

/// The chains kubelet creates in the `mangle` table of the backend it uses.
pub const KUBELET_HINT_CHAINS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// The backend decision and what it was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The backend kube-proxy (through iptables-wrapper) would use.
    pub backend: Backend,
    /// Whether the legacy backend holds any `KUBE-*` chain.
    pub legacy_has_kube: bool,
    /// Whether the nft backend holds any `KUBE-*` chain.
    pub nft_has_kube: bool,
    /// Why `backend` was chosen, in one line.
    pub reason: String,
}

impl Detection {
    /// A warning when both backends hold `KUBE-*` chains: the ones in the
    /// backend not in use are stale (left by a kube-proxy or kubelet that
    /// used the other backend) and still filter and rewrite packets — a
    /// known cause of "no route to host".
    pub fn warning(&self) -> Option<String> {
        (self.legacy_has_kube && self.nft_has_kube).then(|| {
            let other = self.backend.other();
            format!(
                "both iptables-legacy and iptables-nft hold KUBE-* chains; the node uses {}, \
                 so the ones in iptables-{other} are probably stale and can still drop or \
                 rewrite traffic (\"no route to host\"); inspect them with iptables-{other}-save, \
                 remove them with kpinspect cleanup --backend {other} --mode all",
                self.backend
            )
        })
    }
}

/// What one backend's saves (IPv4 and IPv6 concatenated) contain.
#[derive(Debug, Default)]
struct Facts {
    hint: Option<String>,
    kube_chains: bool,
    rules: usize,
}

fn facts(save: &str) -> Facts {
    let mut f = Facts::default();
    let mut table = "";
    for line in save.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            f.kube_chains |= name.starts_with("KUBE-");
            if table == "mangle" && f.hint.is_none() && KUBELET_HINT_CHAINS.contains(&name) {
                f.hint = Some(name.to_string());
            }
        } else if line.starts_with("-A ") || (line.starts_with('[') && line.contains("] -A ")) {
            f.rules += 1;
        }
    }
    f
}

/// Decides the backend from the output of `iptables-legacy-save` plus
/// `ip6tables-legacy-save` (`legacy`) and of `iptables-nft-save` plus
/// `ip6tables-nft-save` (`nft`). Pure: no process is run.
///
/// The rule, applied to the saves of both backends (IPv4 and IPv6 each):
///
/// 1. kubelet (1.17 and later) creates `KUBE-IPTABLES-HINT` and/or
///    `KUBE-KUBELET-CANARY` in the `mangle` table of the backend the host
///    uses: if the nft saves declare one of them, the backend is nft;
/// 2. otherwise, if the legacy saves declare one, it is legacy;
/// 3. otherwise (no kubelet hint), the backend with more rules (`-A` lines)
///    wins, and nft on a tie (both empty included), as the wrapper's
///    fallback and its newer Go version's default do.
///
/// Legacy is always probed with a full save: `iptables-legacy-save -t mangle`
/// would load the mangle table into a kernel that did not have it.
pub fn decide_backend(legacy: &str, nft: &str) -> Detection {
    let (l, n) = (facts(legacy), facts(nft));
    let (backend, reason) = if let Some(chain) = &n.hint {
        (
            Backend::Nft,
            format!("kubelet's {chain} chain is in iptables-nft's mangle table"),
        )
    } else if let Some(chain) = &l.hint {
        (
            Backend::Legacy,
            format!("kubelet's {chain} chain is in iptables-legacy's mangle table"),
        )
    } else if l.rules > n.rules {
        (
            Backend::Legacy,
            format!(
                "no kubelet hint chain; iptables-legacy has more rules ({} against {})",
                l.rules, n.rules
            ),
        )
    } else if n.rules > 0 {
        (
            Backend::Nft,
            format!(
                "no kubelet hint chain; iptables-nft has at least as many rules ({} against {})",
                n.rules, l.rules
            ),
        )
    } else {
        (
            Backend::Nft,
            "no kubelet hint chain and no rules in either backend; nft is the default".into(),
        )
    };
    Detection {
        backend,
        legacy_has_kube: l.kube_chains,
        nft_has_kube: n.kube_chains,
        reason,
    }
}

/// Probes the node with the real tools and [`decide_backend`]s.
///
/// Where kubelet's hint chain is in iptables-nft's `mangle` table (a node
/// whose kubelet uses nft), the decision is nft whatever the nft backend's
/// other tables hold, so only that table is saved from nft
/// (`iptables-nft-save -t mangle`, which creates nothing): the full nft
/// save — the node's whole ruleset, seconds on a large node — is left to
/// the caller's read. The legacy backend is still saved in full (see
/// [`decide_backend`]). The result is the same as with full saves
/// ([`detect_backend_hinted`]). The saves run up to four at a time (both
/// families' `mangle` tables and legacy saves, then, unless the hint
/// decided, both full nft saves).
pub fn detect_backend() -> Result<Detection, NodeError> {
    detect_system(|_, _, _| {})
}

/// Runs `a` and `b` at once (`b` on a thread of its own).
fn both<T: Send>(a: impl FnOnce() -> T + Send, b: impl FnOnce() -> T + Send) -> (T, T) {
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        (a, b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// [`detect_backend_hinted`] with the real tools, which are run several
/// at a time rather than one after the other (each is a process; on a
/// slow machine they add up): first both families' nft `mangle` tables
/// and legacy saves (the decision always needs those), then, only if the
/// hint does not decide, both full nft saves. The decision is the same as
/// running them in turn. `keep` is given each full save the decision used.
fn detect_system(keep: impl Fn(Backend, IpFamily, &str)) -> Result<Detection, NodeError> {
    let index = |family: IpFamily| usize::from(family == IpFamily::V6);
    let mangle =
        |family: IpFamily| run(&Backend::Nft.save_program(family), &["-t", "mangle"], None);
    let full = |backend: Backend, family: IpFamily| SystemIptables::new(backend).save(family);
    let ((m4, m6), (l4, l6)) = both(
        || both(|| mangle(IpFamily::V4), || mangle(IpFamily::V6)),
        || {
            both(
                || full(Backend::Legacy, IpFamily::V4),
                || full(Backend::Legacy, IpFamily::V6),
            )
        },
    );
    let (mangle, legacy) = ([m4, m6], [l4, l6]);
    let nft = std::sync::OnceLock::new();
    detect_backend_hinted(
        |family| mangle[index(family)].clone(),
        |backend, family| {
            let text = match backend {
                Backend::Legacy => legacy[index(family)].clone(),
                Backend::Nft => nft.get_or_init(|| {
                    let (v4, v6) = both(
                        || full(Backend::Nft, IpFamily::V4),
                        || full(Backend::Nft, IpFamily::V6),
                    );
                    [v4, v6]
                })[index(family)]
                .clone(),
            };
            if let Ok(text) = &text {
                keep(backend, family, text);
            }
            text
        },
    )
}

/// The full saves a detection ran, by backend and family (IPv4, IPv6): a
/// caller that reads the chosen backend right after detecting it can use
/// them instead of saving again ([`LiveNode::detect_keeping_saves`]).
///
/// [`LiveNode::detect_keeping_saves`]: crate::LiveNode::detect_keeping_saves
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectionSaves {
    /// iptables-legacy's saves, IPv4 then IPv6 (`None`: not run or failed).
    pub legacy: [Option<String>; 2],
    /// iptables-nft's full saves (`None`: not run — e.g. the hint decided —
    /// or failed).
    pub nft: [Option<String>; 2],
}

impl DetectionSaves {
    /// The save of `backend` and `family`, taken out.
    pub fn take(&mut self, backend: Backend, family: IpFamily) -> Option<String> {
        let i = match family {
            IpFamily::V4 => 0,
            IpFamily::V6 => 1,
        };
        match backend {
            Backend::Legacy => self.legacy[i].take(),
            Backend::Nft => self.nft[i].take(),
        }
    }
}

/// [`detect_backend`], keeping the full saves it ran.
pub fn detect_backend_keeping_saves() -> Result<(Detection, DetectionSaves), NodeError> {
    let kept = std::cell::RefCell::new(DetectionSaves::default());
    let detection = detect_system(|backend, family, text| {
        let i = usize::from(family == IpFamily::V6);
        let mut kept = kept.borrow_mut();
        let slot = match backend {
            Backend::Legacy => &mut kept.legacy[i],
            Backend::Nft => &mut kept.nft[i],
        };
        *slot = Some(text.to_string());
    })?;
    Ok((detection, kept.into_inner()))
}

/// [`detect_backend_with`], first looking for kubelet's hint in
/// `nft_mangle` (iptables-nft's `mangle` table of a family): when one of
/// the families has it, nft is decided from that table and the full legacy
/// saves, without the full nft saves.
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::{Backend, detect_backend_hinted};
/// let hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
/// let d = detect_backend_hinted(
///     |family| Ok(if family == IpFamily::V4 { hint.to_string() } else { String::new() }),
///     |backend, _| match backend {
///         Backend::Legacy => Ok(String::new()),
///         Backend::Nft => panic!("the full nft save is not needed"),
///     },
/// )
/// .unwrap();
/// assert_eq!(d.backend, Backend::Nft);
/// assert!(d.nft_has_kube && !d.legacy_has_kube);
/// ```
pub fn detect_backend_hinted(
    nft_mangle: impl Fn(IpFamily) -> Result<String, NodeError>,
    save: impl Fn(Backend, IpFamily) -> Result<String, NodeError>,
) -> Result<Detection, NodeError> {
    let mut mangle = String::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        match nft_mangle(family) {
            Ok(text) => {
                mangle.push_str(&text);
                if !text.ends_with('\n') && !text.is_empty() {
                    mangle.push('\n');
                }
            }
            Err(e @ (NodeError::Permission { .. } | NodeError::Io { .. })) => return Err(e),
            // Missing or failing: the full probe says why.
            Err(_) => return detect_backend_with(save),
        }
    }
    if facts(&mangle).hint.is_none() {
        return detect_backend_with(save);
    }
    // The hint decides nft: the full nft saves would add nothing to the
    // decision (the hint chain is itself a KUBE-* chain).
    detect_backend_with(|backend, family| match backend {
        Backend::Nft if family == IpFamily::V4 => Ok(mangle.clone()),
        Backend::Nft => Ok(String::new()),
        Backend::Legacy => save(backend, family),
    })
}

/// Runs `save` for both backends and both families and
/// [`decide_backend`]s. A save whose program is missing, or that fails for
/// a reason other than privileges (e.g. a kernel without nf_tables), counts
/// as empty and is mentioned in the reason; a privilege error is returned,
/// since nothing could be decided without root.
pub fn detect_backend_with(
    save: impl Fn(Backend, IpFamily) -> Result<String, NodeError>,
) -> Result<Detection, NodeError> {
    let mut notes = Vec::new();
    let mut texts = [String::new(), String::new()];
    for (i, backend) in [Backend::Legacy, Backend::Nft].into_iter().enumerate() {
        for family in [IpFamily::V4, IpFamily::V6] {
            match save(backend, family) {
                Ok(text) => {
                    texts[i].push_str(&text);
                    if !text.ends_with('\n') && !text.is_empty() {
                        texts[i].push('\n');
                    }
                }
                Err(e @ (NodeError::Permission { .. } | NodeError::Io { .. })) => return Err(e),
                Err(NodeError::Missing { program }) => {
                    notes.push(format!("{program} is not installed"));
                }
                Err(e) => notes.push(format!("{} failed ({e})", backend.save_program(family))),
            }
        }
    }
    let mut d = decide_backend(&texts[0], &texts[1]);
    if !notes.is_empty() {
        d.reason = format!("{} ({})", d.reason, notes.join("; "));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";
    const CANARY_ONLY: &str = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";
    const KUBE_PROXY: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
    const FIREWALL: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n";

    /// The mangle table of a save, as `-t mangle` prints it.
    fn mangle_of(save: &str) -> String {
        let mut out = String::new();
        let mut keep = false;
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                keep = t == "mangle";
            }
            if keep {
                out.push_str(line);
                out.push('\n');
            }
            if line == "COMMIT" {
                keep = false;
            }
        }
        out
    }

    #[test]
    fn hinted_detection_decides_as_the_full_saves_do() {
        let with_rules = format!("{KUBE_PROXY}{FIREWALL}");
        let texts = [
            "",
            HINT,
            CANARY_ONLY,
            KUBE_PROXY,
            FIREWALL,
            with_rules.as_str(),
        ];
        for legacy in texts {
            for nft in texts {
                let save = |backend: Backend, family: IpFamily| -> Result<String, NodeError> {
                    Ok(match (backend, family) {
                        (Backend::Legacy, IpFamily::V4) => legacy.to_string(),
                        (Backend::Nft, IpFamily::V6) => nft.to_string(),
                        _ => String::new(),
                    })
                };
                let full = detect_backend_with(save).expect("decides");
                let full_nft_saves = std::cell::Cell::new(0);
                let hinted = detect_backend_hinted(
                    |family| {
                        Ok(if family == IpFamily::V6 {
                            mangle_of(nft)
                        } else {
                            String::new()
                        })
                    },
                    |backend, family| {
                        if backend == Backend::Nft {
                            full_nft_saves.set(full_nft_saves.get() + 1);
                        }
                        save(backend, family)
                    },
                )
                .expect("decides");
                assert_eq!(hinted, full, "legacy {legacy:?}, nft {nft:?}");
                let hint = nft.contains("HINT") || nft.contains("CANARY");
                assert_eq!(full_nft_saves.get() == 0, hint, "nft {nft:?}");
            }
        }
    }

    #[test]
    fn kubelet_hint_decides_nft_first() {
        let both = format!("{HINT}{KUBE_PROXY}");
        let d = decide_backend(&both, &both);
        assert_eq!(d.backend, Backend::Nft);
        assert!(d.reason.contains("KUBE-IPTABLES-HINT"), "{}", d.reason);
        assert!(d.warning().is_some_and(|w| w.contains("iptables-legacy")));

        let d = decide_backend(&format!("{FIREWALL}{FIREWALL}"), CANARY_ONLY);
        assert_eq!(d.backend, Backend::Nft);
        assert!(d.reason.contains("KUBE-KUBELET-CANARY"));
        assert!(d.nft_has_kube && !d.legacy_has_kube);
        assert_eq!(d.warning(), None);
    }

    #[test]
    fn legacy_hint_beats_rule_counts() {
        let d = decide_backend(HINT, &format!("{FIREWALL}{KUBE_PROXY}"));
        assert_eq!(d.backend, Backend::Legacy);
        assert!(d.legacy_has_kube && d.nft_has_kube);
        assert!(d.warning().is_some_and(|w| w.contains("iptables-nft-save")));
    }

    #[test]
    fn hints_count_only_in_mangle() {
        let in_nat = "*nat\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";
        let d = decide_backend(FIREWALL, in_nat);
        assert_eq!(d.backend, Backend::Legacy);
        assert!(d.nft_has_kube);
    }

    #[test]
    fn without_hints_more_rules_win_and_ties_go_to_nft() {
        assert_eq!(
            decide_backend(FIREWALL, KUBE_PROXY).backend,
            Backend::Legacy
        );
        assert_eq!(decide_backend(KUBE_PROXY, FIREWALL).backend, Backend::Nft);
        let d = decide_backend(KUBE_PROXY, KUBE_PROXY);
        assert_eq!(d.backend, Backend::Nft);
        let d = decide_backend("", "");
        assert_eq!(d.backend, Backend::Nft);
        assert!(d.reason.contains("default"));
        assert!(!d.legacy_has_kube && !d.nft_has_kube);
        // Counters in front of rules (`-c` saves) still count.
        let counted = "*filter\n[3:180] -A INPUT -j ACCEPT\nCOMMIT\n";
        assert_eq!(decide_backend(counted, "").backend, Backend::Legacy);
    }

    #[test]
    fn probing_treats_missing_tools_as_empty() {
        let d = detect_backend_with(|backend, family| match (backend, family) {
            (Backend::Legacy, IpFamily::V4) => Ok(FIREWALL.into()),
            (Backend::Legacy, IpFamily::V6) => Err(NodeError::Missing {
                program: "ip6tables-legacy-save".into(),
            }),
            (Backend::Nft, _) => Err(NodeError::Command {
                program: backend.save_program(family),
                status: Some(1),
                stderr: "Failed to initialize nft: Protocol not supported".into(),
            }),
        })
        .expect("detect");
        assert_eq!(d.backend, Backend::Legacy);
        assert!(
            d.reason.contains("ip6tables-legacy-save is not installed"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("iptables-nft-save failed"),
            "{}",
            d.reason
        );
        assert!(!d.reason.contains('\n'));

        // Saves without a final newline are not glued together.
        let d = detect_backend_with(|backend, _| {
            Ok(match backend {
                Backend::Legacy => "*mangle\n:X - [0:0]\nCOMMIT".into(),
                Backend::Nft => String::new(),
            })
        })
        .expect("detect");
        assert_eq!(d.backend, Backend::Nft);

        let e = detect_backend_with(|_, _| {
            Err(NodeError::Permission {
                program: "iptables-legacy-save".into(),
                message: "Permission denied".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, NodeError::Permission { .. }));
    }
}

//! An in-memory node: iptables [`Ruleset`]s per family and an
//! [`IpSetState`], changed by restores exactly as the kernel would be
//! ([`Ruleset::restore`] with `--noflush`), recording every payload it
//! receives and able to fail on demand.

use std::sync::{Mutex, MutexGuard};

use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{RestoreFlush, Ruleset, SaveParseError};

use crate::conntrack::{Conntrack, ConntrackEntry, ConntrackError, ConntrackFilter};
use crate::error::NodeError;
use crate::host::{DefaultRoute, HostFactsError, HostInputs, HostProbe, Interface};
use crate::ipset::{IpSetError, IpSetState};
use crate::ipvs::{Ipvs, IpvsError, MemoryIpvs};
use crate::nfacct::{Ensured, NfAcct, NfAcctCounter, NfAcctError, validate_nfacct_name};
use crate::{IpSets, Iptables};
use kpinspect_ipvs::{Destination, Service, Timeouts};

/// What a restore payload was fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteTarget {
    /// `iptables-restore` (IPv4) or `ip6tables-restore` (IPv6).
    Iptables(IpFamily),
    /// `ipset restore`.
    IpSets,
}

/// One restore a [`MemoryNode`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Where it went.
    pub target: WriteTarget,
    /// The restore input, as given.
    pub payload: String,
    /// What the restore returned.
    pub result: Result<(), NodeError>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    v4: Ruleset,
    v6: Ruleset,
    sets: IpSetState,
    writes: Vec<Write>,
    fail_next: Option<NodeError>,
    refuse_next: Option<String>,
    restore_batch_lines: Option<usize>,
    kernel: KernelState,
    /// nftables tables.
    pub(crate) nft: crate::nft::MemoryNft,
}

impl State {
    fn ruleset_mut(&mut self, family: IpFamily) -> &mut Ruleset {
        match family {
            IpFamily::V4 => &mut self.v4,
            IpFamily::V6 => &mut self.v6,
        }
    }

    /// Whether an iptables rule of either family uses set `name`
    /// (`-m set --match-set NAME ...` or `-j SET --add-set/--del-set NAME`).
    fn set_in_use(&self, name: &str) -> bool {
        [&self.v4, &self.v6].iter().any(|rs| {
            rs.tables().iter().flat_map(|t| &t.rules).any(|r| {
                let by_match = r
                    .matches
                    .iter()
                    .filter(|m| m.module == "set")
                    .any(|m| m.value("--match-set") == Some(name));
                let by_target = r.target.as_ref().is_some_and(|t| {
                    t.name == "SET"
                        && (t.value("--add-set") == Some(name)
                            || t.value("--del-set") == Some(name))
                });
                by_match || by_target
            })
        })
    }
}

/// A node in memory, for tests and dry runs. Safe to share between threads.
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::{Iptables, MemoryNode, NodeError};
///
/// let node = MemoryNode::new();
/// node.fail_next_restore(NodeError::Restore { line: None, message: "injected".into() });
/// assert!(node.restore(IpFamily::V4, "*nat\nCOMMIT\n").is_err());
/// assert!(node.restore(IpFamily::V4, "*nat\nCOMMIT\n").is_ok());
/// assert_eq!(node.writes().len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct MemoryNode {
    state: Mutex<State>,
}

impl MemoryNode {
    /// A node with no tables and no sets (a fresh network namespace).
    pub fn new() -> MemoryNode {
        MemoryNode::default()
    }

    /// This node with `family`'s tables set to `save` (`iptables-save`
    /// output).
    pub fn with_iptables(self, family: IpFamily, save: &str) -> Result<MemoryNode, SaveParseError> {
        let rs = Ruleset::parse(save)?;
        *self.lock().ruleset_mut(family) = rs;
        Ok(self)
    }

    /// This node answering [`Iptables::restore_batch_lines`] with `lines`,
    /// as the nft backend's tools do: an apply of many new chains then
    /// writes them in pieces, each recorded as a write of its own.
    pub fn with_restore_batch_lines(self, lines: usize) -> MemoryNode {
        self.lock().restore_batch_lines = Some(lines);
        self
    }

    /// This node with its ipsets set to `save` (`ipset save` output).
    pub fn with_ipsets(self, save: &str) -> Result<MemoryNode, IpSetError> {
        let sets = IpSetState::parse(save)?;
        self.lock().sets = sets;
        Ok(self)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state (every
        // change is a single assignment or an atomic restore), so poisoning
        // is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of `family`'s tables.
    pub fn ruleset(&self, family: IpFamily) -> Ruleset {
        self.lock().ruleset_mut(family).clone()
    }

    /// A copy of the sets.
    pub fn ipsets(&self) -> IpSetState {
        self.lock().sets.clone()
    }

    /// Every restore received so far, in order, failed ones included.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// Returns the restores received so far and forgets them.
    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut self.lock().writes)
    }

    /// Makes the next restore (iptables or ipset) fail with `error` without
    /// changing anything.
    pub fn fail_next_restore(&self, error: NodeError) {
        self.lock().fail_next = Some(error);
    }

    /// Makes the next iptables restore with a payload line that contains
    /// `pattern` refuse that line, as the kernel refuses a rule it cannot
    /// load (a missing nfacct object, say): the tables committed before
    /// that line stay applied, the rest of the payload is not, and the
    /// error names the line. Payloads without such a line are applied as
    /// usual; the refusal is used up by the one it refuses.
    pub fn refuse_next_line_matching(&self, pattern: impl Into<String>) {
        self.lock().refuse_next = Some(pattern.into());
    }

    fn record(
        &self,
        target: WriteTarget,
        payload: &str,
        apply: impl FnOnce(&mut State) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let mut state = self.lock();
        let result = match state.fail_next.take() {
            Some(e) => Err(e),
            None => apply(&mut state),
        };
        state.writes.push(Write {
            target,
            payload: payload.into(),
            result: result.clone(),
        });
        result
    }
}

impl Iptables for MemoryNode {
    /// `family`'s tables as `iptables-save` prints them (as given, until a
    /// restore changes them).
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        Ok(self.lock().ruleset_mut(family).render())
    }

    fn restore_batch_lines(&self) -> Option<usize> {
        self.lock().restore_batch_lines
    }

    /// Applies `payload` as `iptables-restore --noflush` would.
    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        let program = self.restore_program(family);
        self.record(WriteTarget::Iptables(family), payload, |state| {
            let refused = state
                .refuse_next
                .as_deref()
                .and_then(|p| payload.lines().position(|l| l.contains(p)));
            if refused.is_some() {
                state.refuse_next = None;
            }
            // What the kernel gets: everything, or the tables committed
            // before the refused line.
            let applied = match refused {
                Some(i) => {
                    let end = payload
                        .lines()
                        .take(i)
                        .enumerate()
                        .filter(|(_, l)| l.trim() == "COMMIT")
                        .map(|(j, _)| j + 1)
                        .last()
                        .unwrap_or(0);
                    payload
                        .lines()
                        .take(end)
                        .map(|l| format!("{l}\n"))
                        .collect()
                }
                None => payload.to_string(),
            };
            state
                .ruleset_mut(family)
                .restore(&applied, RestoreFlush::NoFlush)
                .map_err(|e| NodeError::Restore {
                    line: Some(e.line),
                    message: format!("{program}: {e}"),
                })?;
            match refused {
                Some(i) => Err(NodeError::Restore {
                    line: Some(i + 1),
                    message: format!("{program}: line {} failed", i + 1),
                }),
                None => Ok(()),
            }
        })
    }
}

impl IpSets for MemoryNode {
    /// The sets as `ipset save` prints them.
    fn save(&self) -> Result<String, NodeError> {
        Ok(self.lock().sets.render())
    }

    /// Applies `payload` as `ipset restore` would (line by line; sets used
    /// by an iptables rule of this node cannot be destroyed).
    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        self.record(WriteTarget::IpSets, payload, |state| {
            let mut sets = std::mem::take(&mut state.sets);
            let result = sets.restore(payload, |name| state.set_in_use(name));
            state.sets = sets;
            result.map_err(|e| NodeError::Restore {
                line: Some(e.line),
                message: format!("ipset: {e}"),
            })
        })
    }
}

/// What a [`MemoryNode`] keeps of the kernel besides rules and sets.
#[derive(Debug, Default)]
struct KernelState {
    /// nfacct counters, in creation order (their reference counts are
    /// derived from the rules).
    nfacct: Vec<NfAcctCounter>,
    /// Conntrack entries, both families, in insertion order.
    conntrack: Vec<ConntrackEntry>,
    /// What the host's kernel and tools would tell.
    host: HostInputs,
    /// IPVS services, destinations and timeouts.
    ipvs: MemoryIpvs,
}

impl State {
    /// How many iptables rules of either family count into nfacct counter
    /// `name` (`-m nfacct --nfacct-name NAME`).
    fn nfacct_users(&self, name: &str) -> u32 {
        let users = [&self.v4, &self.v6]
            .iter()
            .flat_map(|rs| rs.tables())
            .flat_map(|t| &t.rules)
            .flat_map(|r| &r.matches)
            .filter(|m| m.module == "nfacct" && m.value("--nfacct-name") == Some(name))
            .count();
        u32::try_from(users).unwrap_or(u32::MAX)
    }

    fn nfacct_counter(&self, c: &NfAcctCounter) -> NfAcctCounter {
        NfAcctCounter {
            references: Some(1 + self.nfacct_users(&c.name)),
            ..c.clone()
        }
    }
}

impl MemoryNode {
    /// This node with nfacct `counters` (their `references` are ignored:
    /// they follow from the node's rules).
    pub fn with_nfacct_counters(self, counters: Vec<NfAcctCounter>) -> MemoryNode {
        self.lock().kernel.nfacct = counters;
        self
    }

    /// This node with conntrack `entries` (either family).
    pub fn with_conntrack_entries(self, entries: Vec<ConntrackEntry>) -> MemoryNode {
        self.lock().kernel.conntrack = entries;
        self
    }

    /// This node with the host inputs [`HostProbe`] answers with.
    pub fn with_host(self, host: HostInputs) -> MemoryNode {
        self.lock().kernel.host = host;
        self
    }

    /// Adds a conntrack entry, as a new flow through the node would.
    pub fn add_conntrack_entry(&self, entry: ConntrackEntry) {
        self.lock().kernel.conntrack.push(entry);
    }

    /// Sets the active and inactive connection counts of destination
    /// `dest` (address and port) of IPVS service `service`, as traffic
    /// through the node would: [`IpvsError::NoDestination`] (or
    /// `NoService`) if there is no such destination.
    pub fn set_ipvs_connections(
        &self,
        service: &Service,
        dest: &Destination,
        active: u32,
        inactive: u32,
    ) -> Result<(), IpvsError> {
        self.lock()
            .kernel
            .ipvs
            .set_connections(service, dest, active, inactive)
    }
}

impl NfAcct for MemoryNode {
    /// The counters in creation order, with reference counts from the rules.
    fn list(&self) -> Result<Vec<NfAcctCounter>, NfAcctError> {
        let state = self.lock();
        Ok(state
            .kernel
            .nfacct
            .iter()
            .map(|c| state.nfacct_counter(c))
            .collect())
    }

    fn get(&self, name: &str) -> Result<Option<NfAcctCounter>, NfAcctError> {
        validate_nfacct_name(name)?;
        let state = self.lock();
        Ok(state
            .kernel
            .nfacct
            .iter()
            .find(|c| c.name == name)
            .map(|c| state.nfacct_counter(c)))
    }

    fn ensure(&self, name: &str) -> Result<Ensured, NfAcctError> {
        validate_nfacct_name(name)?;
        let mut state = self.lock();
        if state.kernel.nfacct.iter().any(|c| c.name == name) {
            return Ok(Ensured::Existed);
        }
        state.kernel.nfacct.push(NfAcctCounter::new(name));
        Ok(Ensured::Created)
    }

    /// Deletes the counter unless a rule of this node uses it.
    fn delete(&self, name: &str) -> Result<(), NfAcctError> {
        validate_nfacct_name(name)?;
        let mut state = self.lock();
        let Some(at) = state.kernel.nfacct.iter().position(|c| c.name == name) else {
            return Err(NfAcctError::NotFound { name: name.into() });
        };
        if state.nfacct_users(name) > 0 {
            return Err(NfAcctError::InUse { name: name.into() });
        }
        state.kernel.nfacct.remove(at);
        Ok(())
    }
}

/// IPVS as the kernel keeps it: a new service or destination must not
/// exist (`EEXIST`), a changed or deleted one must (`ESRCH`, `ENOENT`);
/// flags are stored under their mask with `HASHED` added, counters are
/// zero, timeouts start at the kernel's 900/120/300 s.
///
/// ```
/// use kpinspect_node::kpinspect_ipvs::{Destination, ForwardingMethod, Service};
/// use kpinspect_node::{Ipvs, IpvsError, MemoryNode};
///
/// let node = MemoryNode::new();
/// let svc = Service::tcp("10.96.0.10:80".parse().unwrap()).scheduler("rr");
/// node.new_service(&svc).unwrap();
/// assert!(matches!(node.new_service(&svc), Err(IpvsError::Exists { .. })));
/// let dest = Destination::new("10.244.0.11:8080".parse().unwrap(), ForwardingMethod::Masquerade, 1);
/// node.new_destination(&svc, &dest).unwrap();
/// assert_eq!(node.destinations(&svc).unwrap()[0].port, Some(8080));
/// node.del_service(&svc).unwrap();
/// assert_eq!(
///     node.del_service(&svc).unwrap_err().to_string(),
///     "IPVS service TCP 10.96.0.10:80 does not exist"
/// );
/// ```
impl Ipvs for MemoryNode {
    fn services(&self) -> Result<Vec<Service>, IpvsError> {
        Ok(self.lock().kernel.ipvs.services())
    }

    fn destinations(&self, service: &Service) -> Result<Vec<Destination>, IpvsError> {
        Ok(self.lock().kernel.ipvs.destinations(service))
    }

    fn new_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.new_service(service)
    }

    fn set_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.set_service(service)
    }

    fn del_service(&self, service: &Service) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.del_service(service)
    }

    fn new_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.new_destination(service, dest)
    }

    fn set_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.set_destination(service, dest)
    }

    fn del_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.del_destination(service, dest)
    }

    fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        Ok(self.lock().kernel.ipvs.timeouts())
    }

    fn set_timeouts(&self, timeouts: Timeouts) -> Result<(), IpvsError> {
        self.lock().kernel.ipvs.set_timeouts(timeouts);
        Ok(())
    }
}

impl HostProbe for MemoryNode {
    fn kernel_hostname(&self) -> Result<String, HostFactsError> {
        self.lock().kernel.host.kernel_hostname()
    }

    fn interfaces(&self) -> Result<Vec<Interface>, HostFactsError> {
        self.lock().kernel.host.interfaces()
    }

    fn default_routes(&self) -> Result<Vec<DefaultRoute>, HostFactsError> {
        self.lock().kernel.host.default_routes()
    }

    fn sysctl(&self, name: &str) -> Result<Option<String>, HostFactsError> {
        self.lock().kernel.host.sysctl(name)
    }

    fn iptables_version(&self) -> Result<Option<String>, HostFactsError> {
        self.lock().kernel.host.iptables_version()
    }
}

impl Conntrack for MemoryNode {
    fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        Ok(self
            .lock()
            .kernel
            .conntrack
            .iter()
            .filter(|e| e.family() == family)
            .cloned()
            .collect())
    }

    fn delete(
        &self,
        family: IpFamily,
        filters: &[ConntrackFilter],
    ) -> Result<usize, ConntrackError> {
        let mut state = self.lock();
        let before = state.kernel.conntrack.len();
        state
            .kernel
            .conntrack
            .retain(|e| e.family() != family || !filters.iter().any(|f| f.matches(e)));
        Ok(before - state.kernel.conntrack.len())
    }
}

/// kube-ipvs0 and the other links live in the host inputs' interfaces
/// (so [`HostProbe::interfaces`] sees them too); a link's index is its
/// position plus one. Interfaces carry no kind: every one but loopback
/// counts as a dummy link.
impl crate::link::DummyLink for MemoryNode {
    fn link(&self, name: &str) -> Result<Option<crate::link::Link>, crate::link::LinkError> {
        crate::link::validate_link_name(name)?;
        let state = self.lock();
        let interfaces = &state.kernel.host.interfaces;
        Ok(interfaces
            .iter()
            .position(|i| i.name == name)
            .map(|at| crate::link::Link {
                name: name.into(),
                index: u32::try_from(at + 1).unwrap_or(u32::MAX),
                kind: (!interfaces[at].loopback).then(|| "dummy".to_string()),
                up: interfaces[at].up,
            }))
    }

    fn ensure_dummy(&self, name: &str) -> Result<crate::link::LinkEnsured, crate::link::LinkError> {
        if let Some(link) = self.link(name)? {
            return match link.kind.as_deref() {
                Some("dummy") => Ok(crate::link::LinkEnsured::Existed),
                _ => Err(crate::link::LinkError::NotDummy {
                    name: name.into(),
                    kind: link.kind,
                }),
            };
        }
        self.lock().kernel.host.interfaces.push(Interface {
            name: name.into(),
            up: false,
            loopback: false,
            addresses: Vec::new(),
        });
        Ok(crate::link::LinkEnsured::Created)
    }

    fn delete_link(&self, name: &str) -> Result<(), crate::link::LinkError> {
        crate::link::validate_link_name(name)?;
        let mut state = self.lock();
        let interfaces = &mut state.kernel.host.interfaces;
        let before = interfaces.len();
        interfaces.retain(|i| i.name != name);
        if interfaces.len() == before {
            return Err(crate::link::LinkError::NoSuchLink { name: name.into() });
        }
        Ok(())
    }

    fn addresses(&self, name: &str) -> Result<Vec<std::net::IpAddr>, crate::link::LinkError> {
        let mut addresses = self.with_interface(name, |i| i.addresses.clone())?;
        // The kernel lists IPv4 addresses before IPv6 ones.
        addresses.sort_by_key(|ip| ip.is_ipv6());
        Ok(addresses)
    }

    fn add_address(
        &self,
        name: &str,
        address: std::net::IpAddr,
    ) -> Result<crate::link::AddressAdded, crate::link::LinkError> {
        self.with_interface(name, |i| {
            if i.addresses.contains(&address) {
                crate::link::AddressAdded::AlreadyBound
            } else {
                i.addresses.push(address);
                crate::link::AddressAdded::Added
            }
        })
    }

    fn del_address(
        &self,
        name: &str,
        address: std::net::IpAddr,
    ) -> Result<bool, crate::link::LinkError> {
        self.with_interface(name, |i| {
            let before = i.addresses.len();
            i.addresses.retain(|a| *a != address);
            i.addresses.len() != before
        })
    }
}

impl MemoryNode {
    /// Runs `f` on interface `name`, or fails as the kernel would.
    fn with_interface<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Interface) -> T,
    ) -> Result<T, crate::link::LinkError> {
        crate::link::validate_link_name(name)?;
        let mut state = self.lock();
        match state
            .kernel
            .host
            .interfaces
            .iter_mut()
            .find(|i| i.name == name)
        {
            Some(i) => Ok(f(i)),
            None => Err(crate::link::LinkError::NoSuchLink { name: name.into() }),
        }
    }
}

/// Sysctls live in the host inputs' sysctls (so [`HostProbe::sysctl`]
/// sees them too); writing one creates it.
impl crate::sysctl::Sysctls for MemoryNode {
    fn read_sysctl(&self, name: &str) -> Result<Option<String>, crate::sysctl::SysctlError> {
        Ok(self
            .lock()
            .kernel
            .host
            .sysctls
            .get(name)
            .map(|v| v.trim().to_string()))
    }

    fn write_sysctl(&self, name: &str, value: &str) -> Result<(), crate::sysctl::SysctlError> {
        self.lock()
            .kernel
            .host
            .sysctls
            .insert(name.into(), value.trim().into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";

    #[test]
    fn restores_like_the_kernel_and_saves_back() {
        let node = MemoryNode::new()
            .with_iptables(IpFamily::V4, NAT)
            .expect("nat");
        assert_eq!(Iptables::save(&node, IpFamily::V4).expect("save"), NAT);
        assert_eq!(Iptables::save(&node, IpFamily::V6).expect("save"), "");
        Iptables::restore(
            &node,
            IpFamily::V4,
            "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n-A KUBE-SERVICES -d 10.96.0.1 -p tcp --dport 443 -j KUBE-SVC-X\nCOMMIT\n",
        )
        .expect("restore");
        let saved = Iptables::save(&node, IpFamily::V4).expect("save");
        assert!(
            saved.contains(
                "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-X\n"
            ),
            "{saved}"
        );
        assert!(saved.contains(":KUBE-SVC-X - [0:0]\n"));
        assert_eq!(Iptables::save(&node, IpFamily::V6).expect("save"), "");
    }

    #[test]
    fn failed_restores_report_their_line_and_change_nothing() {
        let node = MemoryNode::new()
            .with_iptables(IpFamily::V6, NAT)
            .expect("nat");
        let e = Iptables::restore(
            &node,
            IpFamily::V6,
            "*nat\n:KUBE-SERVICES - [0:0]\n-X KUBE-SERVICES\nCOMMIT\n",
        )
        .unwrap_err();
        match &e {
            NodeError::Restore { line, message } => {
                assert_eq!(*line, Some(3));
                assert!(
                    message.starts_with("ip6tables-restore: line 3:"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Iptables::save(&node, IpFamily::V6).expect("save"), NAT);
        let writes = node.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].target, WriteTarget::Iptables(IpFamily::V6));
        assert_eq!(writes[0].result, Err(e));
    }

    #[test]
    fn injected_failures_and_recorded_writes() {
        let node = MemoryNode::new();
        let injected = NodeError::Permission {
            program: "iptables-nft-restore".into(),
            message: "Permission denied (you must be root)".into(),
        };
        node.fail_next_restore(injected.clone());
        let payload = "*filter\n:KUBE-X - [0:0]\nCOMMIT\n";
        assert_eq!(
            Iptables::restore(&node, IpFamily::V4, payload),
            Err(injected)
        );
        assert_eq!(Iptables::save(&node, IpFamily::V4).expect("save"), "");
        Iptables::restore(&node, IpFamily::V4, payload).expect("second try");
        IpSets::restore(&node, "create S hash:ip\n").expect("ipset");
        let writes = node.take_writes();
        let targets: Vec<WriteTarget> = writes.iter().map(|w| w.target).collect();
        assert_eq!(
            targets,
            [
                WriteTarget::Iptables(IpFamily::V4),
                WriteTarget::Iptables(IpFamily::V4),
                WriteTarget::IpSets
            ]
        );
        assert!(writes[0].result.is_err() && writes[1].result.is_ok());
        assert_eq!(writes[2].payload, "create S hash:ip\n");
        assert!(node.writes().is_empty());
    }

    #[test]
    fn refused_lines_keep_the_tables_committed_before_them() {
        let node = MemoryNode::new();
        let payload = "*filter\n:KUBE-A - [0:0]\nCOMMIT\n*nat\n:KUBE-B - [0:0]\n-A KUBE-B -j RETURN\nCOMMIT\n";
        node.refuse_next_line_matching("-A KUBE-B");
        assert_eq!(
            Iptables::restore(&node, IpFamily::V6, payload),
            Err(NodeError::Restore {
                line: Some(6),
                message: "ip6tables-restore: line 6 failed".into()
            })
        );
        let saved = Iptables::save(&node, IpFamily::V6).expect("save");
        assert!(saved.contains(":KUBE-A - [0:0]\n"), "{saved}");
        assert!(!saved.contains("*nat"), "{saved}");
        // Used up: the same payload now goes through.
        Iptables::restore(&node, IpFamily::V6, payload).expect("second try");
        // A refusal of the first table changes nothing.
        node.refuse_next_line_matching(":KUBE-C");
        let e = Iptables::restore(&node, IpFamily::V4, "*nat\n:KUBE-C - [0:0]\nCOMMIT\n");
        assert!(matches!(e, Err(NodeError::Restore { line: Some(2), .. })));
        assert_eq!(Iptables::save(&node, IpFamily::V4).expect("save"), "");
    }

    #[test]
    fn ipsets_in_use_by_rules_cannot_be_destroyed() {
        let node = MemoryNode::new()
            .with_ipsets("create KUBE-LOOP-BACK hash:ip,port,ip family inet\ncreate OLD hash:ip\nadd OLD 1.1.1.1\n")
            .expect("sets");
        Iptables::restore(
            &node,
            IpFamily::V4,
            "*nat\n:KUBE-POSTROUTING - [0:0]\n-A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE\nCOMMIT\n",
        )
        .expect("rules");
        let e = IpSets::restore(&node, "destroy OLD\ndestroy KUBE-LOOP-BACK\n").unwrap_err();
        assert!(
            matches!(e, NodeError::Restore { line: Some(2), .. }),
            "{e:?}"
        );
        // Line 1 was applied, as with the real ipset.
        assert_eq!(
            IpSets::save(&node).expect("save"),
            "create KUBE-LOOP-BACK hash:ip,port,ip family inet\n"
        );
        assert!(matches!(
            IpSets::restore(&node, "destroy NOPE\n"),
            Err(NodeError::Restore { line: Some(1), .. })
        ));
        Iptables::restore(&node, IpFamily::V4, "*nat\n-F KUBE-POSTROUTING\nCOMMIT\n")
            .expect("flush");
        IpSets::restore(&node, "destroy KUBE-LOOP-BACK\n").expect("now unused");
        assert!(node.ipsets().sets.is_empty());
    }

    #[test]
    fn malformed_initial_state_is_refused() {
        assert!(
            MemoryNode::new()
                .with_iptables(IpFamily::V4, "*nat\n")
                .is_err()
        );
        assert!(MemoryNode::new().with_ipsets("add NOPE 1.1.1.1\n").is_err());
    }

    #[test]
    fn nfacct_counters_are_in_use_while_a_rule_counts_into_them() {
        let node = MemoryNode::new();
        let [invalid, localhost] = crate::KUBE_PROXY_NFACCT_COUNTERS;
        assert_eq!(node.ensure(invalid), Ok(Ensured::Created));
        assert_eq!(node.ensure(invalid), Ok(Ensured::Existed));
        assert_eq!(node.ensure(localhost), Ok(Ensured::Created));
        assert_eq!(node.ensure(""), Err(NfAcctError::EmptyName));
        Iptables::restore(
            &node,
            IpFamily::V6,
            "*filter\n:KUBE-FORWARD - [0:0]\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\nCOMMIT\n",
        )
        .expect("rules");
        let listed = NfAcct::list(&node).expect("list");
        let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [invalid, localhost]);
        assert_eq!(listed[0].references, Some(2));
        assert_eq!(listed[1].in_use(), Some(false));
        assert_eq!(
            NfAcct::delete(&node, invalid),
            Err(NfAcctError::InUse {
                name: invalid.into()
            })
        );
        NfAcct::delete(&node, localhost).expect("unused");
        assert_eq!(
            NfAcct::delete(&node, localhost),
            Err(NfAcctError::NotFound {
                name: localhost.into()
            })
        );
        Iptables::restore(&node, IpFamily::V6, "*filter\n-F KUBE-FORWARD\nCOMMIT\n")
            .expect("flush");
        NfAcct::delete(&node, invalid).expect("now unused");
        assert_eq!(NfAcct::get(&node, invalid), Ok(None));
        let preset = MemoryNode::new().with_nfacct_counters(vec![NfAcctCounter {
            packets: 3,
            references: None,
            ..NfAcctCounter::new("x")
        }]);
        let x = NfAcct::get(&preset, "x").expect("get").expect("x");
        assert_eq!((x.packets, x.references), (3, Some(1)));
    }

    #[test]
    fn conntrack_deletes_what_the_filters_match_in_one_family() {
        use kpinspect_core::model::Protocol;

        use crate::conntrack::ConntrackTuple;

        let sa = |s: &str| s.parse().expect("socket address");
        let udp = |from: &str, to: &str, ep: &str| {
            ConntrackEntry::new(
                Protocol::Udp,
                ConntrackTuple::new(sa(from), sa(to)),
                ConntrackTuple::new(sa(ep), sa(from)),
            )
        };
        let node = MemoryNode::new().with_conntrack_entries(vec![
            udp("10.0.0.1:1", "10.96.0.10:53", "10.244.0.5:53"),
            udp("10.0.0.1:2", "10.96.0.10:53", "10.244.0.6:53"),
            udp("[fd00::1]:1", "[fd00:96::10]:53", "[fd00::5]:53"),
        ]);
        node.add_conntrack_entry(udp("10.0.0.1:3", "10.96.0.11:53", "10.244.0.5:53"));
        let svc = "10.96.0.10".parse().expect("ip");
        let gone = "10.244.0.6".parse().expect("ip");
        let filter = ConntrackFilter::frontend_endpoint(Protocol::Udp, svc, 53, gone, None);
        assert_eq!(Conntrack::delete(&node, IpFamily::V6, &[filter]), Ok(0));
        assert_eq!(Conntrack::delete(&node, IpFamily::V4, &[filter]), Ok(1));
        assert_eq!(Conntrack::list(&node, IpFamily::V4).expect("list").len(), 2);
        let all = [ConntrackFilter::frontend(Protocol::Udp, svc, 53)];
        assert_eq!(Conntrack::delete(&node, IpFamily::V4, &all), Ok(1));
        assert_eq!(Conntrack::delete(&node, IpFamily::V4, &[]), Ok(0));
        let left = Conntrack::list(&node, IpFamily::V4).expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].original.src_port, Some(3));
        assert_eq!(Conntrack::list(&node, IpFamily::V6).expect("list").len(), 1);
    }
}

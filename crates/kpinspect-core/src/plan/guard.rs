//! What an apply must not do silently: inputs and plans that would wipe a
//! node. A failed `kubectl get ... | kpinspect apply -` gives an empty
//! input; a partial one gives Services without EndpointSlices (every
//! service would REJECT); a wrong input deletes most service chains. Each
//! is a [`Refusal`], which callers refuse without an explicit override
//! (`--force`).
//!
//! ```
//! use kpinspect_core::model::Cluster;
//! use kpinspect_core::plan::{Refusal, check_input};
//! assert_eq!(check_input(&Cluster::default()), Some(Refusal::NoServices));
//! ```

use crate::mode::Profile;
use crate::model::{Cluster, ServiceType};
use crate::net::IpFamily;
use crate::netfilter::Ruleset;

use super::Plan;

/// Why an apply would do harm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The input holds no Service at all.
    #[error(
        "the input has no Services: applying it would delete every service's rules (an empty or failed kubectl get?)"
    )]
    NoServices,
    /// Services that need endpoints, and no EndpointSlice or Endpoints at
    /// all.
    #[error(
        "the input has {services} Services but no EndpointSlices or Endpoints: every service would reject its traffic (get them with kubectl get svc,endpointslices)"
    )]
    NoEndpoints {
        /// Services with a cluster IP.
        services: usize,
    },
    /// The plan deletes more than half of the node's service-port chains.
    #[error(
        "the plan deletes {deleted} of the node's {total} {} service ports (more than half); --dry-run shows them", family.as_k8s_str()
    )]
    WipesServiceChains {
        /// The family of the rules.
        family: IpFamily,
        /// Service-port chains the plan deletes.
        deleted: usize,
        /// Service-port chains on the node.
        total: usize,
    },
    /// The plan deletes more than half of the node's kube-proxy virtual
    /// servers (IPVS mode).
    #[error(
        "the plan deletes {deleted} of the node's {total} {} kube-proxy virtual servers (more than half); --dry-run shows them", family.as_k8s_str()
    )]
    WipesVirtualServers {
        /// The family of the virtual servers.
        family: IpFamily,
        /// Virtual servers the plan deletes.
        deleted: usize,
        /// kube-proxy's virtual servers on the node.
        total: usize,
    },
}

/// A refusal for `cluster` as an input, if any.
pub fn check_input(cluster: &Cluster) -> Option<Refusal> {
    if cluster.services.is_empty() {
        return Some(Refusal::NoServices);
    }
    let needing = cluster
        .services
        .iter()
        .filter(|s| s.service_type != ServiceType::ExternalName && !s.cluster_ips.is_empty())
        .count();
    (needing > 0 && cluster.endpoint_slices.is_empty())
        .then_some(Refusal::NoEndpoints { services: needing })
}

/// A refusal for `plan` against `actual` (the node's rules of `family`),
/// if it deletes more than half of the service ports `profile`'s mode has
/// there (one chain each, e.g. `KUBE-SVC-`).
pub fn check_plan(
    plan: &Plan,
    actual: &Ruleset,
    family: IpFamily,
    profile: &Profile,
) -> Option<Refusal> {
    let service_chains: Vec<&str> = actual
        .tables()
        .iter()
        .flat_map(|t| {
            t.chains
                .iter()
                .filter(|c| (profile.service_port_chain)(&t.name, &c.name))
                .map(|c| c.name.as_str())
        })
        .collect();
    let deleted = plan
        .chains_deleted
        .iter()
        .filter(|c| service_chains.contains(&c.as_str()))
        .count();
    let total = service_chains.len();
    (deleted * 2 > total).then_some(Refusal::WipesServiceChains {
        family,
        deleted,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ProxyMode;
    use crate::model::*;
    use crate::plan::plan;

    fn service(name: &str, ty: ServiceType, ips: &[&str]) -> Service {
        Service {
            namespace: "ns".into(),
            name: name.into(),
            service_type: ty,
            cluster_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            ports: vec![],
            external_ips: vec![],
            has_external_ips: false,
            load_balancer_ingress: vec![],
            load_balancer_source_ranges: vec![],
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: 0,
            session_affinity_timeout: None,
        }
    }

    #[test]
    fn inputs() {
        let mut c = Cluster::default();
        assert_eq!(check_input(&c), Some(Refusal::NoServices));
        c.services
            .push(service("x", ServiceType::ExternalName, &[]));
        c.services
            .push(service("headless", ServiceType::ClusterIp, &[]));
        assert_eq!(check_input(&c), None, "nothing needs endpoints");
        c.services
            .push(service("a", ServiceType::ClusterIp, &["10.0.0.1"]));
        assert_eq!(check_input(&c), Some(Refusal::NoEndpoints { services: 1 }));
        c.endpoint_slices.push(EndpointSlice {
            namespace: "ns".into(),
            name: "a-1".into(),
            service_name: "a".into(),
            address_type: AddressType::Ipv4,
            ports: vec![],
            endpoints: vec![],
        });
        assert_eq!(check_input(&c), None);
    }

    #[test]
    fn plans_deleting_most_service_ports() {
        let node = |n: usize| {
            let mut text = String::from("*nat\n:KUBE-SERVICES - [0:0]\n");
            for i in 0..n {
                text += &format!(":KUBE-SVC-{i} - [0:0]\n");
            }
            for i in 0..n {
                text += &format!("-A KUBE-SERVICES -d 10.0.0.{i}/32 -j KUBE-SVC-{i}\n");
                text += &format!("-A KUBE-SVC-{i} -j DROP\n");
            }
            Ruleset::parse(&(text + "COMMIT\n")).unwrap()
        };
        let profile = ProxyMode::Iptables.profile();
        let actual = node(4);
        let check = |desired: &Ruleset| {
            check_plan(
                &plan(desired, &actual, profile),
                &actual,
                IpFamily::V4,
                profile,
            )
        };
        assert_eq!(check(&node(2)), None, "half is not more than half");
        assert_eq!(
            check(&node(1)),
            Some(Refusal::WipesServiceChains {
                family: IpFamily::V4,
                deleted: 3,
                total: 4
            })
        );
        assert_eq!(check(&node(0)).map(|r| r.to_string()), Some(
            "the plan deletes 4 of the node's 4 IPv4 service ports (more than half); --dry-run shows them".into()
        ));
        // A fresh node has nothing to lose.
        let empty = Ruleset::default();
        assert_eq!(
            check_plan(
                &plan(&node(0), &empty, profile),
                &empty,
                IpFamily::V4,
                profile
            ),
            None
        );
    }
}

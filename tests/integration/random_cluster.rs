//! Random clusters for the convergence tests: a seeded generator of small
//! clusters of Services and EndpointSlices and of random mutations of them
//! (endpoints added, removed, moved between nodes, not ready or
//! terminating; services added and deleted; ports, protocols and types
//! changed; session affinity on, off or retimed; externalTrafficPolicy
//! switched). The iptables-mode test (`converge.rs`) and the IPVS-mode VM
//! check (`vm/converge_ipvs.rs`) share it. Services are `s{id}` in
//! namespace `rand` with cluster IP 172.30.1.`id`, load-balancer IP
//! 192.0.2.`id` and node ports from 30004; endpoints 10.244.1.`n` on
//! `test-node` or `other-node`.

use std::fmt::Write as _;

/// splitmix64: a tiny deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Ready,
    NotReady,
    /// Terminating but still serving.
    Terminating,
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// 10.244.1.`host`.
    host: u8,
    /// On this node (`test-node`) or another.
    local: bool,
    condition: Condition,
}

#[derive(Debug, Clone)]
struct Port {
    port: u16,
    target: u16,
    protocol: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Clone)]
struct Service {
    /// Name `s{id}`, cluster IP 172.30.1.`id`.
    id: u8,
    kind: Kind,
    /// `externalTrafficPolicy: Local`.
    local: bool,
    /// `sessionAffinity: ClientIP` with this timeout.
    affinity: Option<u32>,
    /// `loadBalancerSourceRanges` (LoadBalancer only).
    source_range: bool,
    ports: Vec<Port>,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    services: Vec<Service>,
    next_id: u8,
    next_host: u8,
}

const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const TIMEOUTS: [u32; 3] = [10800, 300, 60];
const KINDS: [Kind; 3] = [Kind::ClusterIp, Kind::NodePort, Kind::LoadBalancer];

impl Cluster {
    pub fn random(rng: &mut Rng) -> Cluster {
        let mut c = Cluster {
            next_id: 1,
            next_host: 1,
            ..Cluster::default()
        };
        for _ in 0..1 + rng.below(3) {
            c.add_service(rng);
        }
        c
    }

    fn host(&mut self) -> u8 {
        let h = self.next_host;
        self.next_host = if h >= 250 { 1 } else { h + 1 };
        h
    }

    fn endpoint(&mut self, rng: &mut Rng) -> Endpoint {
        Endpoint {
            host: self.host(),
            local: rng.chance(60),
            condition: if rng.chance(80) {
                Condition::Ready
            } else {
                rng.pick(&[Condition::NotReady, Condition::Terminating])
            },
        }
    }

    fn add_service(&mut self, rng: &mut Rng) {
        let id = self.next_id;
        self.next_id = if id >= 60 { 1 } else { id + 1 };
        let ports = (0..1 + rng.below(2))
            .map(|i| Port {
                port: 80 + i as u16,
                target: 8080 + i as u16,
                protocol: if rng.chance(70) {
                    "TCP"
                } else {
                    rng.pick(&PROTOCOLS)
                },
            })
            .collect();
        let endpoints = (0..rng.below(4)).map(|_| self.endpoint(rng)).collect();
        self.services.retain(|s| s.id != id);
        self.services.push(Service {
            id,
            kind: rng.pick(&KINDS),
            local: rng.chance(40),
            affinity: rng.chance(50).then(|| rng.pick(&TIMEOUTS)),
            source_range: rng.chance(30),
            ports,
            endpoints,
        });
    }

    /// Applies one random mutation; what it did.
    pub fn mutate(&mut self, rng: &mut Rng) -> String {
        if self.services.is_empty() {
            self.add_service(rng);
            return "added a service".into();
        }
        let si = rng.below(self.services.len());
        let what = rng.below(12);
        let endpoint = match what {
            0 | 1 if self.services[si].endpoints.len() < 5 => {
                let ep = self.endpoint(rng);
                let s = &mut self.services[si];
                let at = rng.below(s.endpoints.len() + 1);
                s.endpoints.insert(at, ep);
                return format!("s{}: endpoint added", s.id);
            }
            2..=4 if !self.services[si].endpoints.is_empty() => {
                Some(rng.below(self.services[si].endpoints.len()))
            }
            _ => None,
        };
        let count = self.services.len();
        let s = &mut self.services[si];
        let name = format!("s{}", s.id);
        match (what, endpoint) {
            (2, Some(endpoint)) => {
                let ep = s.endpoints.remove(endpoint);
                format!("{name}: endpoint 10.244.1.{} removed", ep.host)
            }
            (3, Some(endpoint)) => {
                let ep = &mut s.endpoints[endpoint];
                ep.local = !ep.local;
                format!("{name}: endpoint 10.244.1.{} moved", ep.host)
            }
            (4, Some(endpoint)) => {
                let ep = &mut s.endpoints[endpoint];
                ep.condition = match ep.condition {
                    Condition::Ready => rng.pick(&[Condition::NotReady, Condition::Terminating]),
                    _ => Condition::Ready,
                };
                format!("{name}: endpoint 10.244.1.{} {:?}", ep.host, ep.condition)
            }
            (5, _) if count > 1 => {
                self.services.remove(si);
                format!("{name} deleted")
            }
            (5 | 6, _) if count < 4 => {
                self.add_service(rng);
                "added a service".into()
            }
            (7, _) => {
                let p = rng.below(s.ports.len());
                let port = &mut s.ports[p];
                match rng.below(3) {
                    0 => port.port += 10,
                    1 => port.target += 10,
                    _ => port.protocol = rng.pick(&PROTOCOLS),
                }
                format!("{name}: port {p} now {port:?}")
            }
            (8 | 9, _) => {
                s.affinity = match s.affinity {
                    None => Some(rng.pick(&TIMEOUTS)),
                    Some(_) if rng.chance(30) => Some(rng.pick(&TIMEOUTS)),
                    Some(_) => None,
                };
                format!("{name}: session affinity {:?}", s.affinity)
            }
            (10, _) => {
                s.local = !s.local;
                format!("{name}: externalTrafficPolicy Local {}", s.local)
            }
            _ => {
                s.kind = rng.pick(&KINDS);
                s.source_range = rng.chance(50);
                format!("{name}: type {:?}", s.kind)
            }
        }
    }

    /// The cluster as Service and EndpointSlice YAML.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        for s in &self.services {
            let id = s.id;
            let kind = match s.kind {
                Kind::ClusterIp => "ClusterIP",
                Kind::NodePort => "NodePort",
                Kind::LoadBalancer => "LoadBalancer",
            };
            let external = s.kind != Kind::ClusterIp;
            let _ = writeln!(
                y,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{id}, namespace: rand}}\nspec:\n  type: {kind}\n  clusterIP: 172.30.1.{id}\n  clusterIPs: [172.30.1.{id}]"
            );
            if external {
                let policy = if s.local { "Local" } else { "Cluster" };
                let _ = writeln!(y, "  externalTrafficPolicy: {policy}");
            }
            if s.kind == Kind::LoadBalancer && s.local {
                let _ = writeln!(y, "  healthCheckNodePort: {}", 32000 + u16::from(id));
            }
            if s.kind == Kind::LoadBalancer && s.source_range {
                let _ = writeln!(y, "  loadBalancerSourceRanges: [203.0.113.0/24]");
            }
            if let Some(t) = s.affinity {
                let _ = writeln!(
                    y,
                    "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {t}}}}}"
                );
            }
            let _ = writeln!(y, "  ports:");
            for (i, p) in s.ports.iter().enumerate() {
                let node_port = if external {
                    format!(", nodePort: {}", 30000 + u16::from(id) * 4 + i as u16)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    y,
                    "  - {{name: p{i}, port: {}, protocol: {}, targetPort: {}{node_port}}}",
                    p.port, p.protocol, p.target
                );
            }
            if s.kind == Kind::LoadBalancer {
                let _ = writeln!(
                    y,
                    "status:\n  loadBalancer: {{ingress: [{{ip: 192.0.2.{id}}}]}}"
                );
            }
            let _ = writeln!(
                y,
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{id}-a, namespace: rand, labels: {{kubernetes.io/service-name: s{id}}}}}\naddressType: IPv4"
            );
            if s.endpoints.is_empty() {
                let _ = writeln!(y, "endpoints: []");
            } else {
                let _ = writeln!(y, "endpoints:");
            }
            for e in &s.endpoints {
                let (ready, serving, terminating) = match e.condition {
                    Condition::Ready => (true, true, false),
                    Condition::NotReady => (false, false, false),
                    Condition::Terminating => (false, true, true),
                };
                let node = if e.local { "test-node" } else { "other-node" };
                let _ = writeln!(
                    y,
                    "- addresses: [10.244.1.{}]\n  conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}\n  nodeName: {node}",
                    e.host
                );
            }
            let _ = writeln!(y, "ports:");
            for (i, p) in s.ports.iter().enumerate() {
                let _ = writeln!(
                    y,
                    "- {{name: p{i}, port: {}, protocol: {}}}",
                    p.target, p.protocol
                );
            }
        }
        y
    }
}

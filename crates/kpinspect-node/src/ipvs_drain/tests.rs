//! The drain wait on a [`MemoryNode`] with a fake clock: "traffic" ends
//! when the fake time passes a given point; nothing sleeps.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use kpinspect_core::mode::ipvs::{Scheduler, ServiceFlags, VirtualServer};
use kpinspect_core::model::Protocol;
use kpinspect_ipvs::{Destination, Service};

use super::*;
use crate::ipvs_sync::kernel_service;
use crate::{MemoryNode, destination_name};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A clock whose sleep moves its time on and then runs the events due
/// (each once, at the first sleep that reaches its time); it records every
/// sleep.
struct FakeClock<'a> {
    now: Cell<Duration>,
    sleeps: RefCell<Vec<Duration>>,
    events: RefCell<Vec<Event<'a>>>,
}

/// What happens at a time.
type Event<'a> = (Duration, Box<dyn Fn() + 'a>);

impl<'a> FakeClock<'a> {
    fn new() -> Self {
        FakeClock {
            now: Cell::new(Duration::from_secs(100)),
            sleeps: RefCell::default(),
            events: RefCell::default(),
        }
    }

    /// Runs `f` once the clock is `at` seconds past its start.
    fn at(&self, at: u64, f: impl Fn() + 'a) {
        let at = Duration::from_secs(100 + at);
        self.events.borrow_mut().push((at, Box::new(f)));
    }
}

impl Clock for FakeClock<'_> {
    fn now(&self) -> Duration {
        self.now.get()
    }

    fn sleep(&self, d: Duration) {
        self.sleeps.borrow_mut().push(d);
        let now = self.now.get() + d;
        self.now.set(now);
        let due: Vec<_> = {
            let mut events = self.events.borrow_mut();
            let (due, later) = events.drain(..).partition(|(at, _)| *at <= now);
            *events = later;
            due
        };
        for (_, f) in due {
            f();
        }
    }
}

/// A TCP virtual server with real servers `reals` at weight 0, each with
/// connections, as an apply leaves them draining; and their [`Draining`].
fn draining_node(reals: &[&str]) -> (MemoryNode, Service, Vec<Draining>) {
    let node = MemoryNode::new();
    let vs = VirtualServer {
        address: ip("10.96.0.10"),
        protocol: Protocol::Tcp,
        port: 80,
        scheduler: Scheduler::default(),
        flags: ServiceFlags::default(),
        timeout: 0,
        kind: None,
        service: None,
        bind: false,
        real_servers: Vec::new(),
    };
    let svc = kernel_service(&vs);
    node.new_service(&svc).expect("service");
    let svc = svc.key();
    let mut draining = Vec::new();
    for r in reals {
        let rs = RealServer {
            weight: 0,
            ..RealServer::new(ip(r), 8080)
        };
        node.new_destination(&svc, &kernel_destination(&rs))
            .expect("dest");
        node.set_ipvs_connections(&svc, &kernel_destination(&rs), 2, 1)
            .expect("conns");
        draining.push(Draining {
            service: ServiceKey::of(&vs),
            server: RealServer {
                active_connections: Some(2),
                inactive_connections: Some(1),
                ..rs
            },
        });
    }
    (node, svc, draining)
}

fn dest(addr: &str) -> Destination {
    kernel_destination(&RealServer::new(ip(addr), 8080))
}

fn left(node: &MemoryNode, svc: &Service) -> Vec<String> {
    node.destinations(svc)
        .expect("destinations")
        .iter()
        .map(destination_name)
        .collect()
}

fn ends(r: &DrainReport) -> Vec<(String, DrainEnd, u64)> {
    r.servers
        .iter()
        .map(|s| (s.server.endpoint(), s.end, s.after.as_secs()))
        .collect()
}

#[test]
fn each_goes_when_its_connections_end_the_rest_at_the_timeout() {
    let (node, svc, draining) = draining_node(&["10.244.1.2", "10.244.2.2", "10.244.3.2"]);
    let clock = FakeClock::new();
    // .1's connections end after 2 s, .2's after 4 s; .3's never.
    clock.at(2, || {
        node.set_ipvs_connections(&svc, &dest("10.244.1.2"), 0, 0)
            .expect("conns")
    });
    clock.at(4, || {
        node.set_ipvs_connections(&svc, &dest("10.244.2.2"), 0, 0)
            .expect("conns");
        // Only .3 is left, still waited for.
    });
    let report = drain_real_servers(
        &node,
        &draining,
        Duration::from_secs(10),
        DRAIN_POLL,
        &clock,
    )
    .expect("drain");
    assert_eq!(
        ends(&report),
        [
            ("10.244.1.2:8080".into(), DrainEnd::Drained, 2),
            ("10.244.2.2:8080".into(), DrainEnd::Drained, 4),
            ("10.244.3.2:8080".into(), DrainEnd::TimedOut, 10),
        ]
    );
    assert!(left(&node, &svc).is_empty(), "all deleted");
    assert_eq!(report.waited, Duration::from_secs(10));
    // Polled every second, never past the timeout.
    assert_eq!(*clock.sleeps.borrow(), vec![DRAIN_POLL; 10]);
    assert_eq!(
        report.to_string(),
        "real server 10.244.1.2:8080 of 10.96.0.10:80/TCP drained, deleted after 2s\n\
         real server 10.244.2.2:8080 of 10.96.0.10:80/TCP drained, deleted after 4s\n\
         real server 10.244.3.2:8080 of 10.96.0.10:80/TCP deleted at the drain timeout (10s) with 2 active, 1 inactive connections left\n"
    );
}

#[test]
fn the_wait_ends_as_soon_as_the_last_one_drains() {
    let (node, svc, draining) = draining_node(&["10.244.1.2"]);
    let clock = FakeClock::new();
    clock.at(3, || {
        node.set_ipvs_connections(&svc, &dest("10.244.1.2"), 0, 0)
            .expect("conns")
    });
    let report = drain_real_servers(
        &node,
        &draining,
        Duration::from_secs(60),
        DRAIN_POLL,
        &clock,
    )
    .expect("drain");
    assert_eq!(
        ends(&report),
        [("10.244.1.2:8080".into(), DrainEnd::Drained, 3)]
    );
    assert_eq!(clock.sleeps.borrow().len(), 3);
    assert!(left(&node, &svc).is_empty());
}

#[test]
fn the_last_poll_is_at_the_timeout() {
    let (node, svc, draining) = draining_node(&["10.244.1.2"]);
    let clock = FakeClock::new();
    let report = drain_real_servers(
        &node,
        &draining,
        Duration::from_millis(2500),
        DRAIN_POLL,
        &clock,
    )
    .expect("drain");
    assert_eq!(
        *clock.sleeps.borrow(),
        [DRAIN_POLL, DRAIN_POLL, Duration::from_millis(500)]
    );
    assert_eq!(report.servers[0].end, DrainEnd::TimedOut);
    assert_eq!(report.waited, Duration::from_millis(2500));
    assert!(left(&node, &svc).is_empty());
    assert!(
        report.to_string().contains("drain timeout (2.500s)"),
        "{report}"
    );
}

#[test]
fn servers_others_delete_or_bring_back_are_not_waited_for() {
    let (node, svc, draining) = draining_node(&["10.244.1.2", "10.244.2.2"]);
    let clock = FakeClock::new();
    clock.at(1, || {
        node.del_destination(&svc, &dest("10.244.1.2").key())
            .expect("del");
        let mut back = dest("10.244.2.2");
        back.weight = Some(1);
        node.set_destination(&svc, &back).expect("weight");
    });
    let report = drain_real_servers(
        &node,
        &draining,
        Duration::from_secs(30),
        DRAIN_POLL,
        &clock,
    )
    .expect("drain");
    assert_eq!(
        ends(&report),
        [
            ("10.244.1.2:8080".into(), DrainEnd::Gone, 1),
            ("10.244.2.2:8080".into(), DrainEnd::Restored, 1),
        ]
    );
    // The one brought back stays.
    assert_eq!(left(&node, &svc), ["10.244.2.2:8080"]);
}

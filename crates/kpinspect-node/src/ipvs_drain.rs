//! Waiting for draining real servers: graceful termination with a bound.
//!
//! An IPVS-mode apply sets a removed TCP real server that still has
//! connections to weight 0 and leaves it ([`Draining`]); kube-proxy deletes
//! it on a later sync once its connections reach 0. [`drain_real_servers`]
//! does that wait in one go: it polls the node's IPVS, deletes each
//! draining real server as its connections reach 0, and deletes the rest
//! when the timeout is reached.
//!
//! The clock is a [`Clock`]: [`SystemClock`] on a live node, a fake one in
//! tests (nothing sleeps).
//!
//! ```
//! use std::time::Duration;
//! use kpinspect_node::{Clock, DrainEnd, MemoryNode, drain_real_servers};
//!
//! /// A clock whose sleep only moves its time on.
//! struct Fake(std::cell::Cell<Duration>);
//! impl Clock for Fake {
//!     fn now(&self) -> Duration { self.0.get() }
//!     fn sleep(&self, d: Duration) { self.0.set(self.0.get() + d) }
//! }
//! // Nothing draining: nothing to wait for.
//! let clock = Fake(Default::default());
//! let report = drain_real_servers(&MemoryNode::new(), &[], Duration::from_secs(30),
//!     Duration::from_secs(1), &clock).unwrap();
//! assert!(report.servers.is_empty());
//! assert_eq!(clock.now(), Duration::ZERO);
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use kpinspect_core::mode::ipvs::{Draining, RealServer, ServiceKey};

use crate::ipvs_sync::{kernel_destination, service_of_key};
use crate::{Ipvs, IpvsError};

/// How often a drain polls the node's IPVS by default.
pub const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Time for a drain: what it is now, and waiting.
pub trait Clock {
    /// The time since some fixed origin (monotonic).
    fn now(&self) -> Duration;
    /// Waits `d`.
    fn sleep(&self, d: Duration);
}

/// The machine's monotonic clock; [`Clock::sleep`] blocks the thread.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// How a draining real server's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Its connections reached 0; deleted.
    Drained,
    /// The timeout was reached with connections left; deleted anyway.
    TimedOut,
    /// It (or its virtual server) was gone when read: another program
    /// deleted it.
    Gone,
    /// Its weight was no longer 0 when read (another program, or a
    /// kube-proxy, brought it back): left alone.
    Restored,
}

impl DrainEnd {
    /// The stable name of the end (JSON): `drained`, `timed_out`, `gone`,
    /// `restored`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Drained => "drained",
            DrainEnd::TimedOut => "timed_out",
            DrainEnd::Gone => "gone",
            DrainEnd::Restored => "restored",
        }
    }
}

/// One draining real server at the end of the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainedServer {
    /// Its virtual server.
    pub service: ServiceKey,
    /// The real server as last read (its connection counts then).
    pub server: RealServer,
    /// How its wait ended.
    pub end: DrainEnd,
    /// When, counted from the start of the wait.
    pub after: Duration,
}

/// What [`drain_real_servers`] did. Its `Display` is one line per real
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// The bound on the wait.
    pub timeout: Duration,
    /// How long the wait took.
    pub waited: Duration,
    /// Each draining real server, in the order their waits ended.
    pub servers: Vec<DrainedServer>,
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

/// A duration as people write it: `3s`, `1.5s`, `250ms`.
pub fn seconds_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.servers {
            let who = format!("real server {} of {}", s.server.endpoint(), s.service);
            let after = seconds_text(s.after);
            match s.end {
                DrainEnd::Drained => {
                    writeln!(f, "{who} drained, deleted after {after}")?;
                }
                DrainEnd::TimedOut => writeln!(
                    f,
                    "{who} deleted at the drain timeout ({}) with {} active, {} inactive connections left",
                    seconds_text(self.timeout),
                    count(s.server.active_connections),
                    count(s.server.inactive_connections)
                )?,
                DrainEnd::Gone => writeln!(f, "{who} was deleted by another program")?,
                DrainEnd::Restored => writeln!(
                    f,
                    "{who} is back at weight {} (another program set it), left alone",
                    s.server.weight
                )?,
            }
        }
        Ok(())
    }
}

/// Whether `rs` has no connection left (both counts read as 0).
fn drained(rs: &RealServer) -> bool {
    matches!(
        (rs.active_connections, rs.inactive_connections),
        (Some(0), Some(0))
    )
}

/// Reads `d`'s real server from `node`: `None` if it (or its virtual
/// server) is gone.
fn read<N: Ipvs + ?Sized>(node: &N, d: &Draining) -> Result<Option<RealServer>, IpvsError> {
    let dests = node.destinations(&service_of_key(&d.service))?;
    Ok(dests
        .iter()
        .find(|x| x.address == Some(d.server.address) && x.port == Some(d.server.port))
        .map(|x| RealServer {
            weight: x.weight.unwrap_or(0),
            active_connections: x.active_conns.map(u64::from),
            inactive_connections: x.inactive_conns.map(u64::from),
            ..d.server.clone()
        }))
}

fn delete<N: Ipvs + ?Sized>(node: &N, d: &Draining) -> Result<(), IpvsError> {
    match node.del_destination(
        &service_of_key(&d.service),
        &kernel_destination(&d.server).key(),
    ) {
        // Deleted meanwhile by another program: as good.
        Err(IpvsError::NoDestination { .. } | IpvsError::NoService { .. }) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for `draining` real servers (an IPVS plan's [`Draining`], already
/// at weight 0): every `poll` it reads their connection counts and deletes
/// each whose counts both reached 0; once `timeout` has passed it deletes
/// the rest. A real server another program deleted, or set to a weight
/// other than 0, is no longer waited for (and the latter not deleted). An
/// empty `draining` returns at once, without sleeping.
pub fn drain_real_servers<N: Ipvs + ?Sized, C: Clock + ?Sized>(
    node: &N,
    draining: &[Draining],
    timeout: Duration,
    poll: Duration,
    clock: &C,
) -> Result<DrainReport, IpvsError> {
    let start = clock.now();
    let mut pending: Vec<Draining> = draining.to_vec();
    let mut servers = Vec::new();
    loop {
        let after = clock.now().saturating_sub(start);
        let mut left = Vec::new();
        for d in pending {
            let end = match read(node, &d)? {
                None => Some((DrainEnd::Gone, d.server.clone())),
                Some(rs) if rs.weight != 0 => Some((DrainEnd::Restored, rs)),
                Some(rs) if drained(&rs) => {
                    delete(node, &d)?;
                    Some((DrainEnd::Drained, rs))
                }
                Some(rs) if after >= timeout => {
                    delete(node, &d)?;
                    Some((DrainEnd::TimedOut, rs))
                }
                Some(rs) => {
                    left.push(Draining {
                        service: d.service,
                        server: rs,
                    });
                    None
                }
            };
            if let Some((end, server)) = end {
                servers.push(DrainedServer {
                    service: d.service,
                    server,
                    end,
                    after,
                });
            }
        }
        if left.is_empty() {
            return Ok(DrainReport {
                timeout,
                waited: after,
                servers,
            });
        }
        pending = left;
        // Never past the timeout: the last poll is at it.
        clock.sleep(poll.min(timeout - after).max(Duration::from_millis(1)));
    }
}

#[cfg(test)]
mod tests;

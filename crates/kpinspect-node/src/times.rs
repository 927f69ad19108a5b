//! Phase times on standard error, for finding where a command's time goes:
//! with `KPINSPECT_TRACE_TIMES=1` in the environment, each
//! [`PhaseTimer::mark`] prints `kpinspect: time: PHASE: N ms` (the time
//! since the previous mark); otherwise it does nothing.

use std::time::Instant;

/// The environment variable that turns the phase times on.
pub const TRACE_TIMES: &str = "KPINSPECT_TRACE_TIMES";

/// Measures consecutive phases of one command.
#[derive(Debug, Clone)]
pub struct PhaseTimer {
    last: Instant,
    on: bool,
}

impl PhaseTimer {
    /// A timer that prints when [`TRACE_TIMES`] is set to anything but
    /// `0` or nothing.
    pub fn from_env() -> PhaseTimer {
        let on = std::env::var_os(TRACE_TIMES).is_some_and(|v| !v.is_empty() && v != "0");
        PhaseTimer::new(on)
    }

    /// A timer that prints (`on`) or not.
    pub fn new(on: bool) -> PhaseTimer {
        PhaseTimer {
            last: Instant::now(),
            on,
        }
    }

    /// Whether marks are printed.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Starts the next phase now, printing nothing: the time since the
    /// previous mark was another timer's to print.
    pub fn reset(&mut self) {
        self.last = Instant::now();
    }

    /// Ends phase `phase`: prints its time when on, and starts the next.
    pub fn mark(&mut self, phase: &str) {
        let now = Instant::now();
        if self.on {
            let ms = now.duration_since(self.last).as_secs_f64() * 1000.0;
            eprintln!("kpinspect: time: {phase}: {ms:.1} ms");
        }
        self.last = now;
    }
}

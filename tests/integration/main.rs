//! kpinspect's integration tests: one test binary (ripgrep style), with
//! shared helpers in `util` and kube-proxy's packet tracer in `tracer`.

mod cli;
mod dump;
mod fixtures;
mod netns;
mod tracer;
mod util;

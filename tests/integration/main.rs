//! kpinspect's integration tests: one test binary (ripgrep style), with
//! shared helpers in `util`.

mod cli;
mod dump;
mod fixtures;
mod netns;
mod trace;
mod util;

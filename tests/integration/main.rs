//! kpinspect's integration tests: one test binary, helpers in `util`.

fn main() {}

//! kpinspect's integration tests: one test binary (ripgrep style), with
//! shared helpers in `util`.

mod apply;
mod apply_traffic;
mod cli;
mod converge;
mod deletes;
mod dump;
mod facts;
mod fixtures;
mod ipvs;
mod ipvs_dump;
mod netns;
mod nft_apply;
mod nftables;
mod node;
mod routed;
mod trace;
mod util;
mod vm;

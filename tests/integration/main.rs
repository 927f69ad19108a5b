//! kpinspect's integration tests: one test binary (ripgrep style), with
//! shared helpers in `util`.

mod apply;
mod apply_traffic;
mod bad_input;
mod cli;
mod conventions;
mod converge;
mod deletes;
mod dump;
mod facts;
mod faults;
mod faults_nft;
mod fixtures;
mod fuzz_regressions;
mod golden;
mod graph;
mod ipvs;
mod ipvs_dump;
mod netns;
mod nft_apply;
mod nft_dump;
mod nft_sync;
mod nft_trace;
mod nftables;
mod node;
mod random_cluster;
mod reports;
mod routed;
mod routed_nft;
mod trace;
mod util;
mod vm;

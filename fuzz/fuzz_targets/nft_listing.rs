//! `nft list` / `nft -j list` output: every table interpreted, and
//! kube-proxy's read back; errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = kpinspect_core::nft::Ruleset::parse(text, |_, _| true);
    let _ = kpinspect_core::mode::nftables::read_listing(text);
});

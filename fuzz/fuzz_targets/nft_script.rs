//! `nft -f` scripts: parse → render → parse is stable.
#![no_main]
use kpinspect_core::nft::parse_script;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(txs) = parse_script(text) else {
        return;
    };
    let rendered: String = txs.iter().map(|t| t.render()).collect();
    let again = parse_script(&rendered).expect("the rendered script parses");
    let twice: String = again.iter().map(|t| t.render()).collect();
    assert_eq!(twice, rendered, "render is not stable");
});

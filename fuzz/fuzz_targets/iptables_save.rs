//! iptables-save text: parse is lossless (render gives the input back) and
//! parse → render → parse is stable.
#![no_main]
use kpinspect_core::netfilter::Ruleset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rs) = Ruleset::parse(text) else {
        return;
    };
    let _ = rs.check_chains_declared();
    let rendered = rs.render();
    assert_eq!(rendered, text, "render is not lossless");
    let again = Ruleset::parse(&rendered).expect("rendered text parses");
    assert_eq!(again, rs);
});

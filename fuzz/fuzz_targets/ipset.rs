//! `ipset save` / `ipset list` text: parse → render (save) → parse is stable.
#![no_main]
use kpinspect_core::ipset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sets) = ipset::parse(text) else {
        return;
    };
    let rendered = ipset::render_save(&sets);
    let again = ipset::parse(&rendered).expect("rendered save parses");
    assert_eq!(ipset::render_save(&again), rendered, "render is not stable");
});

//! `ipvsadm -Ln` / `-Sn` text: parse → `ipvsadm -Sn` → parse is stable.
#![no_main]
use kpinspect_core::mode::ipvs::{ipvsadm_save, parse_ipvsadm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(servers) = parse_ipvsadm(text) else {
        return;
    };
    let saved = ipvsadm_save(&servers);
    let again = parse_ipvsadm(&saved).expect("ipvsadm -Sn text parses");
    assert_eq!(ipvsadm_save(&again), saved, "render is not stable");
});

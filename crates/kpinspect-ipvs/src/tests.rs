//! Golden bytes: ipvsadm 1.31 and Linux 6.1 talking, captured with
//! `strace -e write=3 -e read=3` (`testdata/capture-ipvs.sh`, run in the
//! project's VM; `testdata/README.md`).

use std::net::IpAddr;

use netlink_packet_core::Emitable;

use crate::ctrl::{CTRL_CMD_GETFAMILY, CTRL_CMD_NEWFAMILY, CtrlMessage, GENL_ID_CTRL};
use crate::*;

const STRACE: &str = include_str!("../testdata/ipvsadm.strace");
/// The id the kernel gave the IPVS family in the capture.
const FAMILY: u16 = 0x20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// One netlink message of the capture.
#[derive(Debug)]
struct Captured {
    sent: bool,
    kind: u16,
    flags: u16,
    /// The whole message, header included.
    bytes: Vec<u8>,
}

impl Captured {
    fn payload(&self) -> &[u8] {
        &self.bytes[16..]
    }
}

/// The messages of section `name` (`### name` in the capture), in order;
/// `MSG_PEEK` reads (the same datagram read again) are skipped.
fn section(name: &str) -> Vec<Captured> {
    let start = STRACE
        .find(&format!("### {name}\n"))
        .unwrap_or_else(|| panic!("no section {name}"));
    let text = &STRACE[start..];
    let text = &text[..text[4..].find("\n### ").map_or(text.len(), |e| e + 5)];
    let mut out = Vec::new();
    let mut current: Option<(bool, Vec<u8>)> = None;
    let flush = |c: Option<(bool, Vec<u8>)>, out: &mut Vec<Captured>| {
        if let Some((sent, datagram)) = c {
            let mut pos = 0;
            while pos < datagram.len() {
                let len = u32::from_ne_bytes(datagram[pos..pos + 4].try_into().unwrap()) as usize;
                let m = &datagram[pos..pos + len];
                out.push(Captured {
                    sent,
                    kind: u16::from_ne_bytes([m[4], m[5]]),
                    flags: u16::from_ne_bytes([m[6], m[7]]),
                    bytes: m.to_vec(),
                });
                pos += len.next_multiple_of(4);
            }
        }
    };
    let mut skip = false;
    for line in text.lines() {
        if let Some(dump) = line.strip_prefix(" | ") {
            if !skip {
                let hex = &dump[7..55];
                let bytes = hex
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).expect("hex"));
                current
                    .as_mut()
                    .expect("a call before its bytes")
                    .1
                    .extend(bytes);
            }
        } else if line.starts_with("sendmsg(") || line.starts_with("recvmsg(") {
            flush(current.take(), &mut out);
            skip = line.contains("MSG_PEEK");
            current = (!skip).then(|| (line.starts_with("sendmsg("), Vec::new()));
        }
    }
    flush(current.take(), &mut out);
    out
}

/// The IPVS messages of a section, sent or received, without ipvsadm's
/// `GET_INFO` (which it sends first, every time) and its answer.
fn ipvs(name: &str, sent: bool) -> Vec<(Captured, IpvsMessage)> {
    section(name)
        .into_iter()
        .filter(|c| c.sent == sent && c.kind == FAMILY)
        .filter(|c| !matches!(c.payload()[0], 14 | 15))
        .map(|c| {
            let m = IpvsMessage::parse(FAMILY, c.payload()).expect("decode");
            (c, m)
        })
        .collect()
}

fn emit(m: &impl Emitable) -> Vec<u8> {
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    buf
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

const SECTIONS: [&str; 22] = [
    "list-empty",
    "add-service-tcp4",
    "add-service-exists",
    "edit-service-tcp4",
    "add-dest-masq",
    "add-dest-route",
    "edit-dest",
    "add-service-udp4",
    "add-service-tcp6",
    "add-dest-tcp6",
    "add-service-fwmark",
    "list",
    "list-service",
    "set-timeouts",
    "get-timeouts",
    "del-dest",
    "del-dest-missing",
    "del-service",
    "del-service-missing",
    "save",
    "clear",
    "list-empty",
];

#[test]
fn every_captured_message_decodes_and_encodes_to_the_same_bytes() {
    let mut count = 0;
    for name in SECTIONS {
        for c in section(name) {
            let again = match c.kind {
                FAMILY => emit(&IpvsMessage::parse(FAMILY, c.payload()).expect(name)),
                GENL_ID_CTRL => emit(&CtrlMessage::parse(c.payload()).expect(name)),
                NLMSG_ERROR | NLMSG_DONE => continue,
                other => panic!("{name}: message type {other}"),
            };
            assert_eq!(again, c.payload(), "{name}: {c:?}");
            count += 1;
        }
    }
    assert!(count > 50, "{count} messages");
}

#[test]
fn the_controller_names_the_family_id() {
    let msgs = section("list-empty");
    let request = &msgs[0];
    assert!(request.sent);
    assert_eq!(request.kind, GENL_ID_CTRL);
    assert_eq!(
        request.payload(),
        emit(&CtrlMessage::get_family(IPVS_GENL_NAME))
    );
    let answer = CtrlMessage::parse(msgs[1].payload()).unwrap();
    assert_eq!(answer.command, CTRL_CMD_NEWFAMILY);
    assert_eq!(answer.family_name.as_deref(), Some("IPVS"));
    assert_eq!(answer.family_id, Some(FAMILY));
    assert_eq!(answer.family_version, Some(1));
    assert_eq!(answer.hdrsize, Some(0));
    assert_eq!(answer.unknown.len(), 1, "the operations, kept");
    assert_eq!(CtrlMessage::get_family("IPVS").command, CTRL_CMD_GETFAMILY);
}

#[test]
fn get_info_answers_version_and_table_size() {
    let msgs = section("list-empty");
    let c = msgs.iter().find(|c| c.sent && c.kind == FAMILY).unwrap();
    let req = IpvsMessage::parse(FAMILY, c.payload()).unwrap();
    assert_eq!(req.command, IpvsCommand::GetInfo);
    assert_eq!(
        c.payload(),
        emit(&IpvsMessage::new(FAMILY, IpvsCommand::GetInfo))
    );
    let c = msgs.iter().find(|c| !c.sent && c.kind == FAMILY).unwrap();
    let info = IpvsMessage::parse(FAMILY, c.payload()).unwrap();
    assert_eq!(info.command, IpvsCommand::SetInfo);
    assert_eq!(info.info.version, Some(0x01_02_01));
    assert_eq!(info.info.version_string().as_deref(), Some("1.2.1"));
    assert_eq!(info.info.conn_tab_size, Some(4096));
}

#[test]
fn ipvsadm_service_requests_are_ours_byte_for_byte() {
    let tcp4 = Service::tcp("10.96.0.10:80".parse().unwrap());
    let cases = [
        (
            "add-service-tcp4",
            IpvsCommand::NewService,
            tcp4.clone().scheduler("rr"),
        ),
        (
            "add-service-exists",
            IpvsCommand::NewService,
            tcp4.clone().scheduler("rr"),
        ),
        (
            "edit-service-tcp4",
            IpvsCommand::SetService,
            Service {
                flags: Some(ServiceFlags {
                    flags: ServiceFlags::PERSISTENT,
                    mask: !0,
                }),
                timeout: Some(300),
                netmask: Some(0xffff_ff00),
                ..tcp4.clone().scheduler("wrr")
            },
        ),
        (
            "add-service-udp4",
            IpvsCommand::NewService,
            Service {
                flags: Some(ServiceFlags {
                    flags: ServiceFlags::ONEPACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
                    mask: !0,
                }),
                ..Service::udp("10.96.0.10:53".parse().unwrap()).scheduler("sh")
            },
        ),
        (
            "add-service-tcp6",
            IpvsCommand::NewService,
            Service {
                flags: Some(ServiceFlags {
                    flags: ServiceFlags::PERSISTENT,
                    mask: !0,
                }),
                timeout: Some(60),
                ..Service::tcp("[fd00:96::10]:443".parse().unwrap()).scheduler("rr")
            },
        ),
        (
            "add-service-fwmark",
            IpvsCommand::NewService,
            Service::fwmark(AF_INET, 42).scheduler("lc"),
        ),
    ];
    for (name, command, service) in cases {
        let (c, got) = &ipvs(name, true)[0];
        let ours = IpvsMessage::new(FAMILY, command).with_service(service);
        assert_eq!(got, &ours, "{name}");
        assert_eq!(c.payload(), emit(&ours), "{name}");
        assert_eq!(c.flags, 0x5, "{name}: NLM_F_REQUEST | NLM_F_ACK");
    }
}

/// ipvsadm names the service of a destination request with its whole
/// entry, an empty scheduler name included; the kernel reads only the key.
fn ipvsadm_service_key(service: Service) -> Service {
    Service {
        scheduler: Some(String::new()),
        ..service
    }
}

#[test]
fn ipvsadm_destination_requests_are_ours_byte_for_byte() {
    let svc = ipvsadm_service_key(Service::tcp("10.96.0.10:80".parse().unwrap()));
    let masq =
        |addr: &str, w| Destination::new(addr.parse().unwrap(), ForwardingMethod::Masquerade, w);
    let cases = [
        (
            "add-dest-masq",
            IpvsCommand::NewDest,
            svc.clone(),
            masq("10.244.0.11:8080", 2),
        ),
        (
            "add-dest-route",
            IpvsCommand::NewDest,
            svc.clone(),
            Destination::new(
                "10.244.0.12:80".parse().unwrap(),
                ForwardingMethod::Route,
                1,
            ),
        ),
        (
            "edit-dest",
            IpvsCommand::SetDest,
            svc.clone(),
            Destination {
                upper_threshold: Some(100),
                lower_threshold: Some(10),
                ..masq("10.244.0.11:8080", 5)
            },
        ),
        (
            "add-dest-tcp6",
            IpvsCommand::NewDest,
            ipvsadm_service_key(Service {
                flags: Some(ServiceFlags { flags: 0, mask: !0 }),
                ..Service::tcp("[fd00:96::10]:443".parse().unwrap())
            }),
            Destination::new(
                "[fd00:244::11]:443".parse().unwrap(),
                ForwardingMethod::Tunnel,
                1,
            ),
        ),
        // ipvsadm's defaults (-g -w 1) ride along; the kernel reads the key.
        (
            "del-dest",
            IpvsCommand::DelDest,
            svc.clone(),
            Destination::new(
                "10.244.0.12:80".parse().unwrap(),
                ForwardingMethod::Route,
                1,
            ),
        ),
    ];
    for (name, command, service, dest) in cases {
        let (c, got) = &ipvs(name, true)[0];
        let ours = IpvsMessage::new(FAMILY, command)
            .with_service(service)
            .with_destination(dest);
        assert_eq!(got, &ours, "{name}");
        assert_eq!(c.payload(), emit(&ours), "{name}");
    }
}

#[test]
fn a_listing_decodes_services_destinations_and_counters() {
    let answers = ipvs("list-service", false);
    let listed = ipvs("list", false);
    let services: Vec<&Service> = listed
        .iter()
        .filter(|(_, m)| m.command == IpvsCommand::NewService)
        .map(|(_, m)| m.service.as_ref().unwrap())
        .collect();
    assert_eq!(services.len(), 4);
    let tcp4 = services
        .iter()
        .find(|s| s.port == Some(80))
        .expect("the TCP service");
    assert_eq!(tcp4.family, Some(AF_INET));
    assert_eq!(tcp4.protocol, Some(IPPROTO_TCP));
    assert_eq!(tcp4.address, ip("10.96.0.10"));
    assert_eq!(tcp4.scheduler.as_deref(), Some("wrr"));
    let flags = tcp4.flags.unwrap();
    assert!(flags.has(ServiceFlags::PERSISTENT) && flags.has(ServiceFlags::HASHED));
    assert_eq!(tcp4.timeout, Some(300));
    assert_eq!(tcp4.netmask, Some(0xffff_ff00));
    let fwm = services.iter().find(|s| s.fwmark.is_some()).unwrap();
    assert_eq!(
        (fwm.fwmark, fwm.protocol, fwm.address),
        (Some(42), None, None)
    );
    let v6 = services
        .iter()
        .find(|s| s.family == Some(AF_INET6))
        .unwrap();
    assert_eq!(v6.address, ip("fd00:96::10"));
    assert_eq!(v6.netmask, Some(128));

    // ipvsadm -Ln -t 10.96.0.10:80 --stats: the service, then its dests.
    let svc = answers
        .iter()
        .find_map(|(_, m)| {
            m.service
                .clone()
                .filter(|_| m.command == IpvsCommand::NewService)
        })
        .unwrap();
    let stats = svc.stats.unwrap();
    assert_eq!((stats.conns, stats.inpkts, stats.inbytes), (2, 2, 120));
    assert_eq!(svc.stats64.unwrap().inbytes, 120);
    let dests: Vec<Destination> = answers
        .iter()
        .filter_map(|(_, m)| m.destination.clone())
        .collect();
    assert_eq!(dests.len(), 2);
    let route = dests.iter().find(|d| d.port == Some(80)).unwrap();
    assert_eq!(route.address, ip("10.244.0.12"));
    assert_eq!(route.family, Some(AF_INET));
    assert_eq!(route.forwarding, Some(ForwardingMethod::Route));
    assert_eq!(route.weight, Some(1));
    assert_eq!(route.active_conns, Some(2));
    assert_eq!(route.stats.as_ref().unwrap().conns, 2);
    let masq = dests.iter().find(|d| d.port == Some(8080)).unwrap();
    assert_eq!(masq.forwarding, Some(ForwardingMethod::Masquerade));
    assert_eq!(
        (masq.weight, masq.upper_threshold, masq.lower_threshold),
        (Some(5), Some(100), Some(10))
    );
}

#[test]
fn timeouts_are_set_and_read() {
    let (c, set) = &ipvs("set-timeouts", true)[0];
    let t = Timeouts {
        tcp: Some(900),
        tcp_fin: Some(120),
        udp: Some(300),
    };
    let ours = IpvsMessage::new(FAMILY, IpvsCommand::SetConfig).with_timeouts(t);
    assert_eq!(set, &ours);
    assert_eq!(c.payload(), emit(&ours));
    let (c, get) = &ipvs("get-timeouts", true)[0];
    assert_eq!(get.command, IpvsCommand::GetConfig);
    assert_eq!(
        c.payload(),
        emit(&IpvsMessage::new(FAMILY, IpvsCommand::GetConfig))
    );
    let (_, answer) = &ipvs("get-timeouts", false)[0];
    assert_eq!(answer.command, IpvsCommand::SetConfig);
    assert_eq!(answer.timeouts, t);
}

#[test]
fn deletions_and_flush_name_only_keys() {
    let (c, del) = &ipvs("del-service", true)[0];
    assert_eq!(del.command, IpvsCommand::DelService);
    let svc = del.service.as_ref().unwrap();
    assert_eq!(svc.address, ip("fd00:96::10"));
    assert_eq!(svc.port, Some(443));
    assert_eq!(c.payload(), emit(del));
    let (_, flush) = &ipvs("clear", true)[0];
    assert_eq!(flush.command, IpvsCommand::Flush);
    assert!(flush.service.is_none());
}

/// The kernel's error answers, as the client reads them: the errno of the
/// `nlmsgerr` that ends the request.
fn errno_of(name: &str) -> i32 {
    let c = section(name)
        .into_iter()
        .rfind(|c| !c.sent && c.kind == NLMSG_ERROR)
        .expect("an error answer");
    -i32::from_ne_bytes(c.bytes[16..20].try_into().unwrap())
}

#[test]
fn kernel_errors_are_in_the_capture() {
    assert_eq!(errno_of("add-service-exists"), 17, "EEXIST");
    assert_eq!(errno_of("del-dest-missing"), 2, "ENOENT");
    assert_eq!(errno_of("del-service-missing"), 3, "ESRCH");
    assert_eq!(errno_of("add-service-tcp4"), 0, "an ACK");
}

#[test]
fn unknown_attributes_are_kept_and_encoded_again() {
    let mut svc = Service::tcp("10.96.0.10:80".parse().unwrap()).scheduler("rr");
    // A future IPVS_SVC_ATTR_*, nested, and an unknown stats attribute.
    let mut bytes = svc.to_bytes();
    bytes.extend([8, 0, 0x63, 0x80, 1, 2, 3, 4]);
    let back = Service::parse(&bytes).unwrap();
    assert_eq!(back.unknown.len(), 1);
    assert_eq!(back.to_bytes(), bytes);
    svc.stats = Some(Stats::default());
    let mut msg = IpvsMessage::new(FAMILY, IpvsCommand::NewService).with_service(svc);
    msg.unknown
        .push(netlink_packet_core::DefaultNla::new(99, vec![7]));
    let bytes = emit(&msg);
    assert_eq!(IpvsMessage::parse(FAMILY, &bytes).unwrap(), msg);
}

#[test]
fn malformed_bytes_are_typed_errors() {
    assert!(matches!(
        IpvsMessage::parse(FAMILY, &[1, 1]),
        Err(IpvsDecodeError::Truncated { .. })
    ));
    assert!(matches!(
        Service::parse(&[3, 0, 1, 0]),
        Err(IpvsDecodeError::BadAttribute { .. })
    ));
    assert!(matches!(
        Service::parse(&[6, 0, 4, 0, 0, 80, 0, 0, 5, 0, 4, 0, 1, 0, 0, 0]),
        Err(IpvsDecodeError::BadLength {
            what: "IPVS_SVC_ATTR_PORT",
            ..
        })
    ));
    let e = Service::parse(&[6, 0, 1, 0, 7, 0, 0, 0, 8, 0, 3, 0, 1, 2, 3, 4]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPVS_SVC_ATTR_ADDR: address family 7 is neither AF_INET nor AF_INET6"
    );
}

#[test]
fn commands_map_to_their_numbers() {
    for n in 0..=20u8 {
        assert_eq!(u8::from(IpvsCommand::from(n)), n);
    }
    assert_eq!(u8::from(IpvsCommand::Flush), 17);
    assert_eq!(IpvsCommand::from(5), IpvsCommand::NewDest);
}

#[test]
fn the_netlink_packet_core_traits_agree_with_the_methods() {
    use netlink_packet_core::{Parseable, ParseableParametrized};
    let (c, m) = &ipvs("add-dest-masq", true)[0];
    let svc = m.service.as_ref().unwrap();
    assert_eq!(emit(svc), svc.to_bytes());
    assert_eq!(
        <Service as Parseable<[u8]>>::parse(&emit(svc)).unwrap(),
        *svc
    );
    let dest = m.destination.as_ref().unwrap();
    assert_eq!(
        <Destination as Parseable<[u8]>>::parse(&emit(dest)).unwrap(),
        *dest
    );
    let stats = Stats {
        conns: 1 << 40,
        ..Stats::default()
    };
    assert_eq!(
        <Stats as Parseable<[u8]>>::parse(&emit(&stats)).unwrap(),
        stats
    );
    assert_eq!(
        IpvsMessage::parse_with_param(c.payload(), FAMILY).unwrap(),
        *m
    );
    assert!(<Service as Parseable<[u8]>>::parse(&[1]).is_err());
    let ctrl = CtrlMessage::get_family("IPVS");
    assert_eq!(
        <CtrlMessage as Parseable<[u8]>>::parse(&emit(&ctrl)).unwrap(),
        ctrl
    );
}

//! `IPVS_CMD_GET_CONFIG` / `SET_CONFIG` (the connection timeouts) and
//! `IPVS_CMD_GET_INFO`'s answer (version, connection table size).

/// The timeouts of IPVS connections, seconds (`ipvsadm --set TCP TCPFIN
/// UDP`); `None` (or 0 in a request) leaves one unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP`: established TCP connections.
    pub tcp: Option<u32>,
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`: TCP connections after a FIN.
    pub tcp_fin: Option<u32>,
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP`: UDP "connections".
    pub udp: Option<u32>,
}

impl Timeouts {
    /// Whether no timeout is given.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_none() && self.tcp_fin.is_none() && self.udp.is_none()
    }
}

/// `IPVS_CMD_GET_INFO`'s answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Info {
    /// `IPVS_INFO_ATTR_VERSION`: `0x010201` is 1.2.1.
    pub version: Option<u32>,
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE`: the connection hash table's size.
    pub conn_tab_size: Option<u32>,
}

impl Info {
    /// The version as `major.minor.patch`.
    pub fn version_string(&self) -> Option<String> {
        self.version
            .map(|v| format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff))
    }
}

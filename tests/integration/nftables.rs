//! kube-proxy's nftables-mode golden tests, ported as data
//! (`fixtures/nftables`): every fixture is compiled by the `kpinspect`
//! binary, its state compared with kube-proxy's golden after kube-proxy's
//! normaliser, its raw transaction snapshotted, and — as root, in a fresh
//! network namespace — fed to `nft -f` and listed back.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use kpinspect_core::mode::nftables::sort_nftables_transaction;
use serde_json::Value;

use crate::util::{Fixture, kpinspect, ok, root, stderr, yaml};

/// Every fixture directory of `fixtures/nftables`.
pub(crate) fn nft_fixtures() -> Vec<Fixture> {
    let base = root().join("fixtures/nftables");
    let mut out: Vec<Fixture> = std::fs::read_dir(&base)
        .expect("fixtures/nftables")
        .map(|e| e.expect("dir entry").path())
        .filter(|dir| dir.join("cluster.yaml").exists())
        .map(|dir| Fixture {
            name: dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 20,
        "expected the ported kube-proxy nftables fixtures, found {}",
        out.len()
    );
    out
}

/// `kpinspect compile --mode nftables` of `fx` in `format`.
pub(crate) fn compile(fx: &Fixture, format: &str) -> String {
    let out = kpinspect()
        .args([
            "compile", "--mode", "nftables", "--format", format, "--config",
        ])
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    ok(&out, &format!("{}: compile --format {format}", fx.name))
}

/// The golden's normal form, as kube-proxy's test compares it.
fn normalised(text: &str) -> String {
    let mut out = sort_nftables_transaction(text);
    out.push('\n');
    out
}

/// Every fixture's state equals kube-proxy's golden after its normaliser.
#[test]
fn golden_states_match_after_normalising() {
    let mut checked = 0;
    for fx in nft_fixtures() {
        if !fx.has("expected.txt") {
            continue;
        }
        let got = compile(&fx, "sorted");
        let want = normalised(&fx.read("expected.txt"));
        assert!(
            got == want,
            "{}: the state differs from kube-proxy's golden\n{}",
            fx.name,
            line_diff(&want, &got)
        );
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} goldens checked");
}

/// `assertions.yaml`: lines the normalised state holds (`contains`) or
/// lacks (`absent`), and chains' exact rule lists (`chains`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Assertions {
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    #[serde(default)]
    chains: BTreeMap<String, Vec<String>>,
}

/// Partial expectations: upstream's line assertions and the specification's
/// scenarios that list only some lines.
#[test]
fn line_and_chain_assertions() {
    let mut checked = 0;
    for fx in nft_fixtures() {
        if !fx.has("assertions.yaml") {
            continue;
        }
        let a: Assertions = yaml(&fx.read("assertions.yaml"));
        let got = compile(&fx, "sorted");
        let lines: Vec<&str> = got.lines().collect();
        for l in &a.contains {
            assert!(lines.contains(&l.as_str()), "{}: missing {l}", fx.name);
            checked += 1;
        }
        for l in &a.absent {
            assert!(!lines.contains(&l.as_str()), "{}: unexpected {l}", fx.name);
            checked += 1;
        }
        let family = got.split_whitespace().nth(2).expect("family");
        for (chain, want) in &a.chains {
            let prefix = format!("add rule {family} kube-proxy {chain} ");
            let rules: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .collect();
            assert!(
                lines.contains(&format!("add chain {family} kube-proxy {chain}").as_str()),
                "{}: no chain {chain}",
                fx.name
            );
            assert_eq!(rules, *want, "{}: {chain}", fx.name);
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} assertions checked");
}

/// The lines only one side has.
fn line_diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for l in &w {
        if !g.contains(l) {
            out.push_str(&format!("- {l}\n"));
        }
    }
    for l in &g {
        if !w.contains(l) {
            out.push_str(&format!("+ {l}\n"));
        }
    }
    out
}

/// The raw transaction (service ports in name order) is deterministic:
/// snapshotted, equal to `--format restore`, one JSON op per line; the
/// overall fixture's equals the independently modelled transaction.
#[test]
fn raw_transactions_are_snapshotted() {
    for fx in nft_fixtures() {
        let nft = compile(&fx, "nft");
        assert_eq!(compile(&fx, "restore"), nft, "{}", fx.name);
        if fx.has("transaction.txt") {
            assert_eq!(nft, fx.read("transaction.txt"), "{}", fx.name);
        }
        let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("JSON");
        let ops = json[0]["transaction"]["ops"].as_array().expect("ops");
        assert_eq!(ops.len(), nft.lines().count(), "{}", fx.name);
        let family = if fx.name.contains("ipv6") {
            "ipv6"
        } else {
            "ipv4"
        };
        assert_eq!(json[0]["family"], family, "{}", fx.name);
        insta::assert_snapshot!(fx.name.as_str(), nft);
    }
}

/// A dual-stack cluster compiles both families' tables, `ip` then `ip6`;
/// without object comments no table, chain, set or map has one.
#[test]
fn dual_stack_and_object_comments() {
    let cluster = root().join("fixtures/apply/cluster-dual.yaml");
    let run = |extra: &[&str]| {
        let out = kpinspect()
            .args(["compile", "--mode", "nftables", "--hostname", "n1"])
            .args(["--node-ip", "10.0.0.2", "--node-ip", "fd00::2"])
            .args(extra)
            .arg(&cluster)
            .output()
            .expect("run kpinspect");
        ok(&out, "compile dual stack")
    };
    let text = run(&[]);
    let ip = text.find("# table ip kube-proxy\n").expect("ip table");
    let ip6 = text.find("# table ip6 kube-proxy\n").expect("ip6 table");
    assert!(ip < ip6, "ip first");
    assert!(text[ip6..].contains(
        "add set ip6 kube-proxy cluster-ips { type ipv6_addr ; comment \"Active ClusterIPs\" ; }\n"
    ));
    // nodePortAddresses unset: the primary IP of each family.
    assert!(text.contains("add element ip kube-proxy nodeport-ips { 10.0.0.2 }\n"));
    assert!(text.contains("add element ip6 kube-proxy nodeport-ips { fd00::2 }\n"));
    assert!(text.contains("masquerade fully-random\n"));
    assert!(text.contains("mark set mark or 0x00004000\n"));
    let bare = run(&["--no-object-comments", "--family", "ipv6"]);
    assert!(bare.starts_with("add table ip6 kube-proxy\n"), "{bare}");
    assert!(!bare.contains("# table"));
    for line in bare.lines() {
        if !line.starts_with("add rule") && !line.starts_with("add element") {
            assert!(!line.contains("comment"), "{line}");
        }
    }
    let sorted = kpinspect()
        .args(["compile", "--mode", "nftables", "--format", "ipvsadm"])
        .arg(&cluster)
        .output()
        .expect("run kpinspect");
    assert_eq!(sorted.status.code(), Some(2), "{}", stderr(&sorted));
}

/// Whether `nft` can be run in network namespaces here; panics when it
/// should but cannot.
pub(crate) fn nft_netns_available() -> bool {
    if std::env::var_os("KPINSPECT_SKIP_NETNS").is_some() {
        eprintln!("KPINSPECT_SKIP_NETNS is set: skipping network-namespace tests");
        return false;
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "network-namespace tests need root (set KPINSPECT_SKIP_NETNS=1 to skip them)"
    );
    for tool in ["nft", "unshare"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh");
        assert!(found.status.success(), "{tool} is missing (see .ci/run)");
    }
    true
}

/// Runs `nft -f` on `transaction` twice (a first sync, then a restarted
/// kube-proxy's first sync on the populated table) in a fresh network
/// namespace, and returns `nft -j list table FAMILY kube-proxy`.
fn load_in_netns(transaction: &str, family: &str) -> Result<Value, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("kpinspect-test-{}-{n}.nft", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(transaction.as_bytes()))
        .expect("write transaction");
    let script = format!(
        "set -e; nft -f {p}; nft -f {p}; nft -j list table {family} kube-proxy",
        p = path.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let _ = std::fs::remove_file(&path);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// What a table holds, counted: chains with their rule counts, sets and
/// maps with their element counts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    chains: BTreeMap<String, usize>,
    sets: BTreeMap<String, usize>,
    maps: BTreeMap<String, usize>,
}

/// The counts of a normalised state (`add` lines).
fn state_counts(sorted: &str) -> Counts {
    let mut c = Counts::default();
    for line in sorted.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let Some(name) = words.get(4) else { continue };
        let name = name.to_string();
        match words[1] {
            "chain" => {
                c.chains.insert(name, 0);
            }
            "rule" => *c.chains.entry(name).or_default() += 1,
            "set" => {
                c.sets.insert(name, 0);
            }
            "map" => {
                c.maps.insert(name, 0);
            }
            "element" => {
                if let Some(n) = c.sets.get_mut(&name).or(c.maps.get_mut(&name)) {
                    *n += 1;
                } else {
                    panic!("element of unknown container: {line}");
                }
            }
            _ => {}
        }
    }
    c
}

/// The counts of `nft -j list table`.
fn listed_counts(json: &Value) -> Counts {
    let mut c = Counts::default();
    for obj in json["nftables"].as_array().expect("nftables array") {
        let elems = |o: &Value| o.get("elem").and_then(Value::as_array).map_or(0, Vec::len);
        if let Some(ch) = obj.get("chain") {
            c.chains
                .entry(ch["name"].as_str().expect("name").into())
                .or_default();
        } else if let Some(r) = obj.get("rule") {
            *c.chains
                .entry(r["chain"].as_str().expect("chain").into())
                .or_default() += 1;
        } else if let Some(s) = obj.get("set") {
            c.sets
                .insert(s["name"].as_str().expect("name").into(), elems(s));
        } else if let Some(m) = obj.get("map") {
            c.maps
                .insert(m["name"].as_str().expect("name").into(), elems(m));
        }
    }
    c
}

/// The kernel accepts every fixture's transaction (twice), and the table it
/// lists holds exactly the chains, sets and maps of the compiled state, with
/// as many rules and elements each.
#[test]
fn transactions_load_into_the_kernel() {
    if !nft_netns_available() {
        return;
    }
    let mut loaded = 0;
    for fx in nft_fixtures() {
        let nft = compile(&fx, "nft");
        let family = nft
            .split_whitespace()
            .nth(2)
            .expect("add table FAMILY")
            .to_string();
        let listed = load_in_netns(&nft, &family)
            .unwrap_or_else(|e| panic!("{}: nft -f rejected the transaction: {e}", fx.name));
        let want = state_counts(&compile(&fx, "sorted"));
        assert!(want.chains.len() >= 16, "{}: {want:?}", fx.name);
        assert_eq!(listed_counts(&listed), want, "{}", fx.name);
        loaded += 1;
    }
    assert!(loaded >= 20);
}

/// Both families' transactions of a dual-stack cluster, as `compile` prints
/// them (one text, a `#` line above each table), load with one `nft -f`.
#[test]
fn dual_stack_output_loads_into_the_kernel() {
    if !nft_netns_available() {
        return;
    }
    let out = kpinspect()
        .args(["compile", "--mode", "nftables", "--hostname", "n1"])
        .args(["--node-ip", "10.0.0.2", "--node-ip", "fd00::2"])
        .arg(root().join("fixtures/apply/cluster-dual.yaml"))
        .output()
        .expect("run kpinspect");
    let text = ok(&out, "compile dual stack");
    for family in ["ip", "ip6"] {
        let listed = load_in_netns(&text, family)
            .unwrap_or_else(|e| panic!("{family}: nft -f rejected the dual-stack output: {e}"));
        let counts = listed_counts(&listed);
        assert!(counts.chains.len() > 16, "{family}: {counts:?}");
        assert!(counts.sets["cluster-ips"] > 0, "{family}: {counts:?}");
    }
}

/// `diff --mode nftables` compares with the live node's tables only: a
/// saved iptables file is refused (exit 2) before touching the node.
#[test]
fn nftables_diff_refuses_saved_iptables() {
    let fx = &nft_fixtures()[0];
    let out = kpinspect()
        .args(["diff", "--mode", "nftables", "--hostname", "n1"])
        .arg("--iptables-save")
        .arg(crate::util::root().join("fixtures/iptables-save/affinity.nft.txt"))
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("compares with the live node only"),
        "{}",
        stderr(&out)
    );
}

/// `kpinspect compile --mode nftables` of `fx` in `format`, with the
/// production mark (`nftables.masqueradeBit` as kube-proxy prints it, the
/// form nft lists) instead of the fixture's literal `0x4000`.
pub(crate) fn compile_production_mark(fx: &Fixture, format: &str) -> String {
    let mut args = fx.args();
    if let Some(i) = args.iter().position(|a| a == "--masquerade-mark") {
        args.drain(i..(i + 2).min(args.len()));
    }
    let out = kpinspect()
        .args([
            "compile", "--mode", "nftables", "--format", format, "--config",
        ])
        .arg(fx.path("config.yaml"))
        .args(args)
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    ok(&out, &format!("{}: compile --format {format}", fx.name))
}

/// Runs `nft -f` on `transaction` in a fresh network namespace and returns
/// `nft list table FAMILY kube-proxy` and `nft -j list table FAMILY
/// kube-proxy`.
pub(crate) fn list_in_netns(transaction: &str, family: &str) -> Result<(String, String), String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("kpinspect-list-{}-{n}.nft", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(transaction.as_bytes()))
        .expect("write transaction");
    let script = format!(
        "set -e; nft -f {p}; nft list table {family} kube-proxy; echo '#JSON'; \
         nft -j list table {family} kube-proxy",
        p = path.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let _ = std::fs::remove_file(&path);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (text, json) = stdout.split_once("#JSON\n").ok_or("no #JSON separator")?;
    Ok((text.to_string(), json.to_string()))
}

/// The proof of the reader: every fixture's transaction, loaded by the
/// kernel and listed back by nft as text and as JSON, reads back — rules
/// through the shape recogniser, then kube-proxy's normaliser — into
/// exactly the compiled state (anonymous sets in address order on both
/// sides: nft sorts them).
#[test]
fn listings_read_back_equal_the_compiled_state() {
    use kpinspect_core::mode::nftables::{canonical_state, read_listing};
    if !nft_netns_available() {
        return;
    }
    let mut checked = 0;
    for fx in nft_fixtures() {
        let nft = compile_production_mark(&fx, "nft");
        let family = nft
            .split_whitespace()
            .nth(2)
            .expect("add table FAMILY")
            .to_string();
        let want = canonical_state(&compile_production_mark(&fx, "sorted"));
        let (text, json) = list_in_netns(&nft, &family)
            .unwrap_or_else(|e| panic!("{}: nft -f rejected the transaction: {e}", fx.name));
        for (form, listing) in [("text", &text), ("JSON", &json)] {
            let node = read_listing(listing)
                .unwrap_or_else(|e| panic!("{}: the {form} listing does not parse: {e}", fx.name));
            assert_eq!(node.tables.len(), 1, "{}: {form}", fx.name);
            let table = &node.tables[0];
            assert!(
                table.unrecognised.is_empty(),
                "{}: {form}: unrecognised rules {:?}",
                fx.name,
                table.unrecognised
            );
            let got = canonical_state(&table.sorted());
            assert!(
                got == want,
                "{}: the {form} listing reads back differently\n{}",
                fx.name,
                line_diff(&want, &got)
            );
        }
        checked += 1;
    }
    assert!(checked >= 20);
}

/// Without root: the checked-in captures of the overall fixture
/// (`fixtures/nftables-save`, nft 1.0.6) read back into its compiled state,
/// and the foreign table beside it is named, not read.
#[test]
fn captures_read_back_equal_the_compiled_state() {
    use kpinspect_core::mode::nftables::{canonical_state, read_listing};
    let fx = nft_fixtures()
        .into_iter()
        .find(|f| f.name == "overall")
        .expect("overall fixture");
    let want = canonical_state(&compile_production_mark(&fx, "sorted"));
    for file in ["overall.nft", "overall.json"] {
        let text = std::fs::read_to_string(root().join("fixtures/nftables-save").join(file))
            .expect("capture");
        assert!(
            (text.contains("meta mark") || text.contains("\"mangle\""))
                && !text.contains("mark set mark or"),
            "{file}: nft's own syntax"
        );
        let node = read_listing(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(node.foreign, ["inet host-firewall"], "{file}");
        assert_eq!(node.tables.len(), 1, "{file}");
        let got = canonical_state(&node.tables[0].sorted());
        assert!(got == want, "{file}\n{}", line_diff(&want, &got));
    }
}

//! kube-proxy's nftables syncs in sequence (`fixtures/nftables/sync_*`):
//! `TestSyncProxyRulesRepeated` and `TestSyncProxyRulesStartup` run through
//! `mode::nftables::Proxier` on one `nft::Fake`; after each sync the node's
//! dump is compared with upstream's golden after kube-proxy's normaliser,
//! and the main transaction's operation count, the stale-chain deletions
//! and the stale chains with what upstream asserts.

use std::path::Path;
use std::time::Duration;

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::nftables::{
    self, ChangedServices, Proxier, Synced, sort_nftables_transaction,
};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::IpFamily;
use kpinspect_core::nft::{Fake, Family, Verb, parse_script};
use kpinspect_core::proxy::ProxyState;

use crate::nft_trace::nft_config;
use crate::util::{Fixture, root, yaml};

/// `steps.yaml` of a sequence fixture.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sequence {
    /// The node's state before the first sync (`nft -f` lines), if any.
    #[serde(default)]
    node: Option<String>,
    steps: Vec<Step>,
}

/// One `syncProxyRules` call.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    step: String,
    cluster: String,
    #[serde(default)]
    age: u64,
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    operations: Option<usize>,
    #[serde(default)]
    operations_after_setup: Option<usize>,
    #[serde(default)]
    deleted: Option<Vec<String>>,
    #[serde(default)]
    stale: Option<Vec<String>>,
}

fn sequence_fixture(name: &str) -> Fixture {
    Fixture {
        name: name.to_string(),
        dir: root().join("fixtures/nftables").join(name),
    }
}

fn load_cluster(path: &Path) -> Cluster {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kpinspect_k8s::load_objects(&text, &path.display().to_string())
        .expect("cluster loads")
        .finish()
        .0
}

fn normalised(text: &str) -> String {
    sort_nftables_transaction(text)
}

fn empty_node(family: IpFamily, config: &ProxyConfig) -> Fake {
    let family = match family {
        IpFamily::V4 => Family::Ip,
        IpFamily::V6 => Family::Ip6,
    };
    Fake::new(family, nftables::TABLE, config.node.nft_object_comments)
}

/// `setupOps`: a first sync of no Service on an empty node.
fn setup_ops(config: &ProxyConfig, family: IpFamily) -> usize {
    let state = ProxyState::build(&Cluster::default(), config, family);
    let mut node = empty_node(family, config);
    Proxier::new()
        .sync(
            &mut node,
            &state,
            config,
            &ChangedServices::new(),
            Duration::ZERO,
        )
        .expect("the first sync applies")
        .operations()
}

/// One sync of a replayed sequence: its step, what it wrote, the node
/// after it and the proxier's stale chains.
struct Replayed {
    step: Step,
    synced: Synced,
    node: Fake,
    stale: Vec<String>,
}

/// Replays the sequence of fixture `name` with `config` (the fixture's
/// unless changed by `adjust`): one Proxier, one node, the clock 0.1 s
/// further per sync plus each step's `age`.
fn replay(name: &str, adjust: impl Fn(&mut ProxyConfig)) -> (Fixture, ProxyConfig, Vec<Replayed>) {
    let fx = sequence_fixture(name);
    let seq: Sequence = yaml(&fx.read("steps.yaml"));
    let (mut config, family) = nft_config(&fx);
    adjust(&mut config);
    let mut node = empty_node(family, &config);
    if let Some(file) = &seq.node {
        for tx in parse_script(&fx.read(file)).expect("node script parses") {
            node.apply(&tx).expect("node script applies");
        }
    }
    let mut proxier = Proxier::new();
    let mut previous = ProxyState::build(&Cluster::default(), &config, family);
    let mut now = Duration::from_secs(100);
    let mut out = Vec::new();
    for step in seq.steps {
        now += Duration::from_millis(100) + Duration::from_secs(step.age);
        let state = ProxyState::build(&load_cluster(&fx.path(&step.cluster)), &config, family);
        let changed = ChangedServices::between(&previous, &state);
        let synced = proxier
            .sync(&mut node, &state, &config, &changed, now)
            .unwrap_or_else(|e| panic!("{name} step {}: {e}", step.step));
        previous = state;
        let stale = proxier.stale_chains().map(|(c, _)| c.to_string()).collect();
        out.push(Replayed {
            step,
            synced,
            node: node.clone(),
            stale,
        });
    }
    (fx, config, out)
}

/// Runs the sequence of `name`; returns the number of checks made.
fn run_sequence(name: &str) -> usize {
    let (fx, config, replayed) = replay(name, |_| {});
    let family = match replayed.first().map(|r| r.node.family()) {
        Some(Family::Ip6) => IpFamily::V6,
        _ => IpFamily::V4,
    };
    let mut checks = 0;
    for Replayed {
        step,
        synced,
        node,
        stale,
    } in &replayed
    {
        let what = format!("{name} step {}", step.step);
        if let Some(expected) = &step.expected {
            let want = normalised(&fx.read(expected));
            let got = normalised(&node.dump());
            assert!(
                got == want,
                "{what}: the node differs from kube-proxy's golden\n--- want\n{want}\n--- got\n{got}\n--- main transaction\n{}",
                synced.transaction.render()
            );
            checks += 1;
        }
        if let Some(ops) = step.operations {
            assert_eq!(
                synced.operations(),
                ops,
                "{what}: operations of\n{}",
                synced.transaction.render()
            );
            checks += 1;
        }
        if let Some(extra) = step.operations_after_setup {
            assert_eq!(
                synced.operations(),
                setup_ops(&config, family) + extra,
                "{what}: operations of\n{}",
                synced.transaction.render()
            );
            checks += 1;
        }
        let deleted: Vec<String> = synced
            .stale_deletion
            .iter()
            .flat_map(|tx| &tx.ops)
            .map(|op| {
                assert_eq!(op.verb, Verb::Delete, "{what}: {op:?}");
                match &op.object {
                    kpinspect_core::nft::Object::Chain(c) => c.name.clone(),
                    other => panic!("{what}: the stale transaction touches {other:?}"),
                }
            })
            .collect();
        assert!(synced.stale_deletion_error.is_none(), "{what}");
        let want_deleted = step.deleted.clone().unwrap_or_default();
        assert_eq!(deleted, want_deleted, "{what}: stale chains deleted");
        checks += 1;
        if let Some(want) = &step.stale {
            assert_eq!(stale, want, "{what}: stale chains");
            checks += 1;
        }
    }
    checks
}

/// `TestSyncProxyRulesRepeated`: every dump, count and stale chain.
#[test]
fn nft_sync_repeated_matches_kube_proxy() {
    let checks = run_sequence("sync_repeated");
    assert!(checks >= 30, "only {checks} checks");
}

/// `TestSyncProxyRulesStartup`: a restarted proxier keeps the endpoint
/// chains and elements the node has (`setupOps + 14`).
#[test]
fn nft_sync_startup_matches_kube_proxy() {
    let fx = sequence_fixture("sync_startup");
    let (config, family) = nft_config(&fx);
    assert_eq!(setup_ops(&config, family), 81, "the fixture's setupOps");
    let checks = run_sequence("sync_startup");
    assert!(checks >= 3, "only {checks} checks");
}

/// The specification's examples (§7.7) on the §9.2 golden's state: a
/// restart on an unchanged node is 123 operations and changes nothing;
/// replacing svc1's endpoint is the 9-operation partial sync, and the old
/// endpoint chain is deleted alone a sync more than a second later.
#[test]
fn nft_sync_restart_and_endpoint_change_on_the_overall_golden() {
    let fx = sequence_fixture("overall");
    let (config, family) = nft_config(&fx);
    let cluster = fx.cluster();
    let state = ProxyState::build(&cluster, &config, family);
    let compiled = nftables::compile(&state, &config);
    let mut node = compiled.state().expect("the first sync applies");
    let before = node.dump();

    let mut proxier = Proxier::new();
    let restart = proxier
        .sync(
            &mut node,
            &state,
            &config,
            &ChangedServices::new(),
            Duration::from_secs(10),
        )
        .expect("the restart applies");
    assert!(restart.full);
    assert_eq!(
        restart.operations(),
        123,
        "{}",
        restart.transaction.render()
    );
    assert_eq!(normalised(&node.dump()), normalised(&before));

    let mut moved = cluster.clone();
    let slice = moved
        .endpoint_slices
        .iter_mut()
        .find(|s| s.namespace == "ns1" && s.service_name == "svc1")
        .expect("svc1's slice");
    let ep = slice.endpoints.first_mut().expect("svc1's endpoint");
    assert_eq!(ep.address, Some("10.180.0.1".parse().expect("ip")));
    ep.address = Some("10.180.0.9".parse().expect("ip"));
    let next = ProxyState::build(&moved, &config, family);
    let changed = ChangedServices::between(&state, &next);
    assert_eq!(changed.len(), 1);
    assert!(changed.contains("ns1", "svc1"));
    let partial = proxier
        .sync(&mut node, &next, &config, &changed, Duration::from_secs(11))
        .expect("the partial sync applies");
    assert!(!partial.full && partial.stale_deletion.is_none());
    let want = "\
add chain ip kube-proxy endpoint-R7UVCGCT-ns1/svc1/tcp/p80__10.180.0.9/80
flush chain ip kube-proxy endpoint-R7UVCGCT-ns1/svc1/tcp/p80__10.180.0.9/80
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-R7UVCGCT-ns1/svc1/tcp/p80__10.180.0.9/80 }
add rule ip kube-proxy endpoint-R7UVCGCT-ns1/svc1/tcp/p80__10.180.0.9/80 ip saddr 10.180.0.9 jump mark-for-masquerade
add rule ip kube-proxy endpoint-R7UVCGCT-ns1/svc1/tcp/p80__10.180.0.9/80 meta l4proto tcp dnat to 10.180.0.9:80
flush chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
";
    assert_eq!(partial.transaction.render(), want);
    let stale: Vec<&str> = proxier.stale_chains().map(|(c, _)| c).collect();
    assert_eq!(stale, ["endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"]);

    // Within the second: flushed again, not deleted.
    let soon = proxier
        .sync(
            &mut node,
            &next,
            &config,
            &ChangedServices::new(),
            Duration::from_millis(11_500),
        )
        .expect("applies");
    assert!(soon.stale_deletion.is_none());
    assert_eq!(
        soon.transaction.render(),
        "flush chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80\n"
    );
    let later = proxier
        .sync(
            &mut node,
            &next,
            &config,
            &ChangedServices::new(),
            Duration::from_secs(13),
        )
        .expect("applies");
    assert_eq!(
        later.stale_deletion.expect("a deletion").render(),
        "delete chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80\n"
    );
    assert!(later.transaction.is_empty());
    assert_eq!(proxier.stale_chains().count(), 0);
    let fresh = nftables::compile(&next, &config).state().expect("applies");
    assert_eq!(normalised(&node.dump()), normalised(&fresh.dump()));
}

/// The kernel accepts every transaction of both sequences in order (the
/// stale-chain deletions included), and after each sync the table nft
/// lists reads back into the model's node (production mark: nft lists the
/// mark as kube-proxy prints it).
#[test]
fn nft_sync_sequences_load_into_the_kernel() {
    use kpinspect_core::mode::nftables::{canonical_state, read_listing};
    use std::io::Write;
    if !crate::nftables::nft_netns_available() {
        return;
    }
    for name in ["sync_repeated", "sync_startup"] {
        let (fx, _, replayed) = replay(name, |c| c.nftables.masquerade_mark = None);
        let family = replayed[0].synced.transaction.family.to_string();
        let dir =
            std::env::temp_dir().join(format!("kpinspect-sync-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("write");
            path.display().to_string()
        };
        let mut script = String::from("set -e\n");
        let seq: Sequence = yaml(&fx.read("steps.yaml"));
        if let Some(node) = &seq.node {
            // The fixture's literal mark, as nft lists it.
            let text = fx.read(node).replace("0x4000", "0x00004000");
            script += &format!("nft -f {}\n", write("node.nft", &text));
        }
        for (i, r) in replayed.iter().enumerate() {
            if let Some(tx) = &r.synced.stale_deletion {
                script += &format!(
                    "nft -f {}\n",
                    write(&format!("{i}-stale.nft"), &tx.render())
                );
            }
            let main = write(&format!("{i}-main.nft"), &r.synced.transaction.render());
            script += &format!("nft -f {main}\nnft -j list table {family} kube-proxy\necho\n");
        }
        let out = std::process::Command::new("unshare")
            .args(["-n", "--", "sh", "-c", &script])
            .output()
            .expect("unshare");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{name}: nft refused a transaction: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let listings: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            listings.len(),
            replayed.len(),
            "{name}: one listing per sync"
        );
        for (r, listing) in replayed.iter().zip(listings) {
            let what = format!("{name} step {}", r.step.step);
            let node = read_listing(listing).unwrap_or_else(|e| panic!("{what}: {e}"));
            let table = &node.tables[0];
            assert!(
                table.unrecognised.is_empty(),
                "{what}: {:?}",
                table.unrecognised
            );
            let got = canonical_state(&table.sorted());
            let want = canonical_state(&(normalised(&r.node.dump()) + "\n"));
            assert!(
                got == want,
                "{what}: the kernel's table differs from the model's node\n--- want\n{want}\n--- got\n{got}"
            );
        }
    }
}

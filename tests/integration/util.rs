//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `fixtures/iptables`.
pub fn iptables_fixtures() -> PathBuf {
    root().join("fixtures/iptables")
}

/// A `kpinspect` command, run from the repository root.
pub fn kpinspect() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpinspect"));
    cmd.current_dir(root());
    cmd
}

/// Runs `kpinspect` with `args`.
pub fn run(args: &[&str]) -> Output {
    kpinspect().args(args).output().expect("run kpinspect")
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

/// stdout of `out`; panics with its stderr unless it succeeded.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        stderr(out)
    );
    stdout(out)
}

/// One fixture directory of `fixtures/iptables`.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
}

impl Fixture {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn has(&self, file: &str) -> bool {
        self.path(file).exists()
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_else(|e| panic!("{}: {e}", self.path(file).display()))
    }

    /// The extra CLI arguments of the fixture (`args`, one per line).
    pub fn args(&self) -> Vec<String> {
        if !self.has("args") {
            return Vec::new();
        }
        self.read("args")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// The node IPs the fixture declares (the tracer's LOCAL addresses).
    pub fn node_ips(&self) -> Vec<String> {
        let args = self.args();
        args.windows(2)
            .filter(|w| w[0] == "--node-ip")
            .map(|w| w[1].clone())
            .collect()
    }

    /// The fixture's cluster objects.
    pub fn cluster(&self) -> kpinspect_core::model::Cluster {
        let text = self.read("cluster.yaml");
        kpinspect_k8s::load_objects(&text, "cluster.yaml")
            .expect("cluster.yaml loads")
            .finish()
            .0
    }

    /// The configuration the CLI builds from `config.yaml` and `args`.
    pub fn proxy_config(&self) -> kpinspect_core::config::ProxyConfig {
        let mut config = kpinspect_core::config::ProxyConfig::default();
        kpinspect_k8s::parse_kube_proxy_config(&self.read("config.yaml"), "config.yaml")
            .expect("config.yaml parses")
            .apply_to(&mut config)
            .expect("config.yaml applies");
        let args = self.args();
        config.node.ips = self
            .node_ips()
            .iter()
            .map(|s| s.parse().expect("node ip"))
            .collect();
        let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
        config.node.zone = value("--node-zone");
        config.iptables.masquerade_mark = value("--masquerade-mark");
        config.node.random_fully = !args.iter().any(|a| a == "--no-random-fully");
        config.node.nfacct = !args.iter().any(|a| a == "--no-nfacct");
        config
    }

    /// The IP family the fixture compiles for.
    pub fn family(&self) -> kpinspect_core::net::IpFamily {
        if self.args().iter().any(|a| a == "ipv6") {
            kpinspect_core::net::IpFamily::V6
        } else {
            kpinspect_core::net::IpFamily::V4
        }
    }

    /// `kpinspect compile` of this fixture, raw restore text.
    pub fn compile(&self) -> String {
        let mut cmd = kpinspect();
        cmd.arg("compile")
            .arg("--config")
            .arg(self.path("config.yaml"));
        cmd.args(self.args());
        cmd.arg(self.path("cluster.yaml"));
        let out = cmd.output().expect("run kpinspect");
        assert!(
            out.status.success(),
            "{}: kpinspect compile failed: {}",
            self.name,
            stderr(&out)
        );
        stdout(&out)
    }
}

/// Every fixture directory that holds a cluster to compile.
pub fn compile_fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(iptables_fixtures()).expect("fixtures/iptables") {
        let dir = entry.expect("dir entry").path();
        if dir.join("cluster.yaml").exists() {
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            out.push(Fixture { name, dir });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() > 50,
        "expected the ported kube-proxy fixtures, found {}",
        out.len()
    );
    out
}

/// The fixture called `name`.
pub fn fixture(name: &str) -> Fixture {
    let dir = iptables_fixtures().join(name);
    assert!(dir.is_dir(), "no fixture {name}");
    Fixture {
        name: name.to_string(),
        dir,
    }
}

/// The fixture directory `rel` (from the repository root) outside
/// `fixtures/iptables`, e.g. `fixtures/routed`; same files as there.
pub fn fixture_at(rel: &str) -> Fixture {
    let dir = root().join(rel);
    assert!(dir.is_dir(), "no fixture {rel}");
    Fixture {
        name: rel.to_string(),
        dir,
    }
}

/// Parses YAML into `T`.
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("fixture YAML")
}

/// Asserts that `saved` (iptables-save text) round-trips and that every
/// chain `restore` declared is in it with semantically the same rules, in
/// order. Returns the number of rules compared.
pub fn assert_saved_matches(name: &str, restore: &str, saved: &str) -> usize {
    use kpinspect_core::netfilter::Ruleset;
    let compiled = Ruleset::parse(restore).expect("restore parses");
    let live = Ruleset::parse(saved).unwrap_or_else(|e| panic!("{name}: save does not parse: {e}"));
    assert_eq!(
        live.render(),
        saved,
        "{name}: save text does not round-trip"
    );
    let mut compared = 0;
    for table in compiled.tables() {
        let live_table = live
            .table(&table.name)
            .unwrap_or_else(|| panic!("{name}: no {} table", table.name));
        for chain in table
            .chains
            .iter()
            .filter(|c| !table.deleted.contains(&c.name))
        {
            assert!(
                live_table.chain(&chain.name).is_some(),
                "{name}: chain {} missing",
                chain.name
            );
            let want: Vec<String> = table.rules_of(&chain.name).map(|r| r.canonical()).collect();
            let got: Vec<String> = live_table
                .rules_of(&chain.name)
                .map(|r| r.canonical())
                .collect();
            assert_eq!(
                got, want,
                "{name}: {} {} differs from what was compiled",
                table.name, chain.name
            );
            compared += want.len();
        }
    }
    compared
}

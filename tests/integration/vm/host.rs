//! The host's side of a boot: finding the kernel, busybox and qemu, building
//! the initramfs, running qemu with a deadline.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cpio::Archive;

/// The emulator.
pub const QEMU: &str = "qemu-system-x86_64";
/// Modules the initramfs loads to mount the host's root (with what they need).
const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];
/// 9p mount tags: the host's root (read-only) and the exchange directory.
pub const ROOT_TAG: &str = "kproot";
pub const XFER_TAG: &str = "kpxfer";
/// Where the exchange directory is mounted in the VM.
pub const GUEST_XFER: &str = "/run/kpinspect-vm";
/// The host's root in the VM without the tmpfs mounted over parts of it
/// (for a repository or target directory under `/tmp`, say).
pub const GUEST_HOST_ROOT: &str = "/run/kpinspect-host";

/// What a boot needs from the host.
#[derive(Debug)]
pub struct Machine {
    /// `/boot/vmlinuz-<release>`.
    pub kernel: PathBuf,
    /// The kernel's release (`uname -r` in the VM).
    pub release: String,
    /// `/lib/modules/<release>`.
    pub modules: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
}

impl Machine {
    /// Finds everything, or says what is missing and how to get it.
    pub fn find() -> Result<Machine, String> {
        let mut missing = Vec::new();
        if !on_path(QEMU) {
            missing.push(format!("{QEMU} (apt-get install qemu-system-x86)"));
        }
        let kernel = newest_kernel(Path::new("/boot"), Path::new("/lib/modules"));
        match &kernel {
            Err(e) => missing.push(format!("{e} (apt-get install linux-image-amd64)")),
            Ok((_, path)) => {
                if let Err(e) = fs::File::open(path) {
                    missing.push(format!("cannot read {}: {e}", path.display()));
                }
            }
        }
        let busybox = static_busybox();
        if let Err(e) = &busybox {
            missing.push(format!("{e} (apt-get install busybox-static)"));
        }
        for tool in ["ipvsadm", "ipset", "ip", "unshare", "timeout", "bash"] {
            if !on_path(tool) {
                missing.push(format!(
                    "{tool}, which the checks run in the VM (see .ci/run)"
                ));
            }
        }
        if !missing.is_empty() {
            return Err(missing.join("; "));
        }
        let (release, kernel) = kernel.expect("checked");
        Ok(Machine {
            kernel,
            modules: Path::new("/lib/modules").join(&release),
            release,
            busybox: busybox.expect("checked"),
        })
    }

    /// The initramfs: busybox, the boot modules and `init`, which mounts the
    /// host's root read-only, tmpfs where programs write, the exchange
    /// directory, and hands over to `run` (a path in the VM).
    pub fn initramfs(&self, run: &str) -> Result<Vec<u8>, String> {
        let mut a = Archive::default();
        for dir in ["bin", "dev", "proc", "sys", "mods", "newroot"] {
            a.dir(dir);
        }
        a.char_dev("dev/console", 5, 1);
        let busybox =
            fs::read(&self.busybox).map_err(|e| format!("{}: {e}", self.busybox.display()))?;
        a.file("bin/busybox", 0o755, &busybox);
        let modules = boot_modules(&self.modules, &BOOT_MODULES)?;
        let mut names = Vec::new();
        for path in &modules {
            let name = format!("{}.ko", module_name(path));
            a.file(&format!("mods/{name}"), 0o644, &read_module(path)?);
            names.push(name);
        }
        a.file("init", 0o755, init_script(&names, run).as_bytes());
        Ok(a.finish())
    }

    /// Boots the VM with `initrd`, the host's root and `xfer` shared, and
    /// waits until it powers off or `deadline` passes (then it is killed).
    /// `console` receives the serial console. `started` is polled: the time
    /// it first exists is returned (the guest creates it when it runs).
    pub fn boot(&self, p: &BootParams<'_>) -> Result<Boot, String> {
        let mut cmd = Command::new(QEMU);
        cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024"])
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-nic",
                "none",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(p.initrd)
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .arg("-serial")
            .arg(format!("file:{}", p.console.display()))
            .arg("-virtfs")
            .arg(format!(
                "local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag={XFER_TAG},security_model=none,multidevs=remap",
                p.xfer.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::File::create(p.qemu_log)
                    .map_err(|e| format!("{}: {e}", p.qemu_log.display()))?,
            );
        let start = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("{QEMU}: {e}"))?;
        let mut child = KillOnDrop(child);
        let mut started = None;
        loop {
            if started.is_none() && p.started.exists() {
                started = Some(start.elapsed());
            }
            if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
                return Ok(Boot {
                    started,
                    total: start.elapsed(),
                    timed_out: false,
                    status: status.to_string(),
                });
            }
            if start.elapsed() > p.deadline {
                let _ = child.0.kill();
                let _ = child.0.wait();
                return Ok(Boot {
                    started,
                    total: start.elapsed(),
                    timed_out: true,
                    status: "killed".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where a boot reads and writes.
pub struct BootParams<'a> {
    pub initrd: &'a Path,
    pub xfer: &'a Path,
    pub console: &'a Path,
    pub qemu_log: &'a Path,
    pub started: &'a Path,
    pub deadline: Duration,
}

/// How a boot went.
#[derive(Debug)]
pub struct Boot {
    /// From qemu's start until the guest's script ran (as seen by polling).
    pub started: Option<Duration>,
    /// From qemu's start until it exited.
    pub total: Duration,
    /// Whether it was killed at the deadline.
    pub timed_out: bool,
    /// qemu's exit status.
    pub status: String,
}

/// Kills qemu when the test unwinds.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The busybox `init`: PID 1 until `switch_root`.
fn init_script(modules: &[String], run: &str) -> String {
    let modules = modules.join(" ");
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() {{ echo "kpinspect-vm init: $*"; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /mods/$m || fail "insmod $m"; done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,ro,cache=loose {ROOT_TAG} /newroot || fail "mounting the host's root"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
for d in tmp run var/tmp var/lib var/log var/cache root; do
  [ -d /newroot/$d ] && [ ! -L /newroot/$d ] && mount -t tmpfs tmpfs /newroot/$d
done
mkdir -p /newroot{GUEST_HOST_ROOT} /newroot{GUEST_XFER}
mount -o bind /newroot /newroot{GUEST_HOST_ROOT}
mount -t 9p -o $opts {XFER_TAG} /newroot{GUEST_XFER} || fail "mounting the exchange directory"
exec switch_root /newroot /bin/sh {run}
"#
    )
}

/// Whether `tool` is on `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The newest `<boot>/vmlinuz-<release>` with a `<modules>/<release>/modules.dep`.
pub fn newest_kernel(boot: &Path, modules: &Path) -> Result<(String, PathBuf), String> {
    let entries = fs::read_dir(boot).map_err(|e| format!("no kernel: {}: {e}", boot.display()))?;
    let mut found = Vec::new();
    let mut without_modules = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(release) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        if modules.join(release).join("modules.dep").is_file() {
            found.push((release.to_string(), entry.path()));
        } else {
            without_modules.push(release.to_string());
        }
    }
    found
        .into_iter()
        .max_by(|a, b| version_cmp(&a.0, &b.0))
        .ok_or_else(|| {
            let mut why = format!("no kernel: no {}/vmlinuz-*", boot.display());
            if !without_modules.is_empty() {
                why += &format!(
                    " with modules in {} (found {})",
                    modules.display(),
                    without_modules.join(", ")
                );
            }
            why
        })
}

/// Compares kernel releases the way `sort -V` does: digit runs as numbers.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<(bool, u64, &str)> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let digit = c.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (part, tail) = rest.split_at(end);
            out.push((digit, part.parse().unwrap_or(0), part));
            rest = tail;
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.0, y.0) {
            (true, true) => x.1.cmp(&y.1),
            _ => x.2.cmp(y.2),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// `/bin/busybox` (or the first `busybox` on `PATH`), if statically linked:
/// nothing else is in the initramfs.
fn static_busybox() -> Result<PathBuf, String> {
    let path = [
        PathBuf::from("/bin/busybox"),
        PathBuf::from("/usr/bin/busybox"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or("no busybox")?;
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if has_interpreter(&bytes) {
        return Err(format!("{} is dynamically linked", path.display()));
    }
    Ok(path)
}

/// Whether an ELF64 little-endian executable names a program interpreter
/// (`PT_INTERP`), i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return true; // not what we can boot: treat as unusable
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return true;
    };
    (0..usize::from(phnum)).any(|i| u32_at(phoff as usize + i * usize::from(phentsize)) == Some(3))
}

/// The module files `roots` need, each after what it depends on, from
/// `modules.dep`; modules built into the kernel (`modules.builtin`) need none.
pub fn boot_modules(dir: &Path, roots: &[&str]) -> Result<Vec<PathBuf>, String> {
    let read = |f: &str| {
        fs::read_to_string(dir.join(f)).map_err(|e| format!("{}/{f}: {e}", dir.display()))
    };
    let dep = read("modules.dep")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(|l| module_name(Path::new(l))).collect();
    let mut deps = std::collections::HashMap::new();
    for line in dep.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        let needs: Vec<&str> = needs.split_whitespace().collect();
        deps.insert(module_name(Path::new(module)), (module, needs));
    }
    let mut order: Vec<PathBuf> = Vec::new();
    fn visit(
        name: &str,
        deps: &std::collections::HashMap<String, (&str, Vec<&str>)>,
        dir: &Path,
        order: &mut Vec<PathBuf>,
    ) {
        let (path, needs) = &deps[name];
        for need in needs {
            visit(&module_name(Path::new(need)), deps, dir, order);
        }
        let path = dir.join(path);
        if !order.contains(&path) {
            order.push(path);
        }
    }
    for root in roots {
        if deps.contains_key(*root) {
            visit(root, &deps, dir, &mut order);
        } else if !builtin.iter().any(|b| b == root) {
            return Err(format!("{}: no module {root}", dir.display()));
        }
    }
    Ok(order)
}

/// `kernel/fs/9p/9p.ko.xz` -> `9p`; `virtio-rng.ko` -> `virtio_rng`.
fn module_name(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = file.split(".ko").next().unwrap_or(&file);
    stem.replace('-', "_")
}

/// A module file, decompressed (busybox's `insmod` takes plain `.ko`).
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        return fs::read(path).map_err(|e| format!("{name}: {e}"));
    } else if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return Err(format!("{name}: unknown module compression"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("{tool} -dc {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {name} failed"));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_sort_like_sort_v() {
        let mut v = [
            "6.1.0-9-amd64",
            "6.10.2-amd64",
            "6.1.0-57-amd64",
            "5.10.0-30-amd64",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            v,
            [
                "5.10.0-30-amd64",
                "6.1.0-9-amd64",
                "6.1.0-57-amd64",
                "6.10.2-amd64"
            ]
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kpinspect-vm-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_newest_kernel_with_modules_is_chosen() {
        let root = scratch("kernels");
        let (boot, modules) = (root.join("boot"), root.join("modules"));
        fs::create_dir_all(&boot).unwrap();
        for r in ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.0-1-amd64"] {
            fs::write(boot.join(format!("vmlinuz-{r}")), "").unwrap();
        }
        // The newest has no modules (e.g. removed): the one before is taken.
        for r in ["6.1.0-9-amd64", "6.1.0-57-amd64"] {
            fs::create_dir_all(modules.join(r)).unwrap();
            fs::write(modules.join(r).join("modules.dep"), "").unwrap();
        }
        let (release, path) = newest_kernel(&boot, &modules).unwrap();
        assert_eq!(release, "6.1.0-57-amd64");
        assert_eq!(path, boot.join("vmlinuz-6.1.0-57-amd64"));
        fs::remove_dir_all(modules.join("6.1.0-9-amd64")).unwrap();
        fs::remove_dir_all(modules.join("6.1.0-57-amd64")).unwrap();
        let err = newest_kernel(&boot, &modules).unwrap_err();
        assert!(
            err.contains("no kernel") && err.contains("6.12.0-1-amd64"),
            "{err}"
        );
        assert!(newest_kernel(&root.join("none"), &modules).is_err());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn boot_modules_come_after_what_they_need() {
        let dir = scratch("modules");
        fs::write(
            dir.join("modules.dep"),
            "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
             kernel/net/9p/9pnet.ko:\n\
             kernel/fs/netfs/netfs.ko:\n\
             kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n",
        )
        .unwrap();
        fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        let got: Vec<String> = boot_modules(&dir, &BOOT_MODULES)
            .unwrap()
            .iter()
            .map(|p| module_name(p))
            .collect();
        assert_eq!(
            got,
            [
                "9pnet",
                "virtio_ring",
                "virtio",
                "9pnet_virtio",
                "netfs",
                "9p"
            ]
        );
        assert!(
            boot_modules(&dir, &["ip_vs"])
                .unwrap_err()
                .contains("no module ip_vs")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dynamic_executables_are_told_apart() {
        assert!(has_interpreter(b"#!/bin/sh\n"));
        // A minimal ELF64 header with one program header (PT_LOAD).
        let mut elf = vec![0u8; 64 + 56];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[0x20] = 64; // e_phoff
        elf[0x36] = 56; // e_phentsize
        elf[0x38] = 1; // e_phnum
        elf[64] = 1; // PT_LOAD
        assert!(!has_interpreter(&elf));
        elf[64] = 3; // PT_INTERP
        assert!(has_interpreter(&elf));
    }
}

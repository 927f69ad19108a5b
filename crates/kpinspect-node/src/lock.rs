//! A lock that serialises kpinspect's read-plan-write cycles on one network
//! namespace, so that two `apply` or `cleanup` runs cannot plan against the
//! same state and then both write (the xtables lock that iptables-restore
//! takes with `-w` covers one write, not the read before it).

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use crate::NodeError;

/// Held until dropped.
#[derive(Debug)]
pub struct RulesLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// The lock file for this process's network namespace:
/// `/run/kpinspect-net-<inode>.lock` (one per namespace, shared by all
/// mount namespaces that see the same `/run`).
pub fn lock_path() -> PathBuf {
    let ns = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("net:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(String::from)
        })
        .unwrap_or_else(|| "default".into());
    let dir = if std::path::Path::new("/run").is_dir() {
        PathBuf::from("/run")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("kpinspect-net-{ns}.lock"))
}

/// Takes the lock, waiting for another kpinspect to finish.
pub fn lock_rules() -> Result<RulesLock, NodeError> {
    lock_rules_at(lock_path())
}

/// Takes the lock held in file `path` (created if missing), waiting for
/// its holder to drop it: [`lock_rules`] for another node than this
/// process's network namespace, e.g. one in memory.
pub fn lock_rules_at(path: impl Into<PathBuf>) -> Result<RulesLock, NodeError> {
    let path = path.into();
    let err = |e: std::io::Error| NodeError::Io {
        program: format!("lock {}", path.display()),
        message: e.to_string(),
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(RulesLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let held = lock_rules().expect("lock");
        let other = OpenOptions::new()
            .write(true)
            .open(&held.path)
            .expect("open");
        assert!(other.try_lock().is_err(), "a second lock succeeded");
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}

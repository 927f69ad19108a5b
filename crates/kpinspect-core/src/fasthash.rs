//! A fast, non-cryptographic hasher for the maps keyed by chain names and
//! rule shapes of one save (tens of thousands of lookups per dump or plan,
//! where SipHash, the standard maps' default, was a sixth of a dump's
//! time). Its values are not randomised: a save crafted to collide makes
//! those maps slow, never wrong.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-fold hasher, one word at a time, with a final mix so that
/// every bit of the result depends on the input.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        // A multiplication carries a bit's change only upwards: folding the
        // high half back down lets the next word's multiplication spread
        // it over every bit (without it, names differing in the top bits
        // of one word and the low bits of the next collide).
        let h = (self.hash ^ word).wrapping_mul(SEED);
        self.hash = h ^ (h >> 32);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`FastHasher`]s.
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;
/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastBuild>;
/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn distinct_names_hash_apart() {
        let build = FastBuild::default();
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("KUBE-SEP-{i:016X}"))
            .chain((0..100).map(|i| "x".repeat(i)))
            .chain((0..4096).map(|i| format!("KUBE-SVC-{i:03X}{:013X}", i * 7)))
            .collect();
        let hashes: FastSet<u64> = names.iter().map(|n| build.hash_one(n)).collect();
        assert_eq!(hashes.len(), names.len());
        // The top bits (what hashbrown's control bytes use) vary too.
        let tops: FastSet<u64> = names.iter().map(|n| build.hash_one(n) >> 57).collect();
        assert_eq!(tops.len(), 128);
        assert_eq!(build.hash_one("a"), build.hash_one(String::from("a")));
    }
}

//! Shards: which connectors one daemon of several probes.
//!
//! Every shard loads the same configuration and keeps the connectors that rendezvous
//! (highest-random-weight) hashing gives it: each connector name is weighed against every
//! shard index and belongs to the heaviest. Going from N shards to N+1 moves only the
//! connectors the new shard wins, about 1/(N+1) of them, and no shard needs to know what any
//! other probes, so no coordinator is involved.
//!
//! The weight is FNV-1a (64 bit) over the shard index (8 bytes, little-endian) followed by the
//! name's UTF-8 bytes, finished with MurmurHash3's 64-bit mixer (`fmix64`) so that names that
//! differ in one byte weigh unrelatedly. Both are fixed, public algorithms with no key and no
//! dependence on the platform or the Rust version: daemons of different builds agree on who
//! owns what. Changing the function would move nearly every connector at once; it must not
//! change.

use std::fmt;
use std::str::FromStr;

use crate::config::{Config, ConfigError};

/// The most shards a fleet may have: far beyond any real fleet, small enough that weighing a
/// name against every shard stays cheap.
pub const MAX_SHARDS: u32 = 4096;

/// Shard `index` of `count` (0-based, as a StatefulSet's pod ordinals are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `index` of `count`, or why not.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the number of shards must be between 1 and {MAX_SHARDS}, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard {index} does not exist among {count} (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard probes the connector called `name`.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N`, as `--shard` and `[daemon] shard` write it.
    fn from_str(text: &str) -> Result<Shard, String> {
        match text.parse::<ShardSpec>()? {
            ShardSpec::Fixed(shard) => Ok(shard),
            ShardSpec::Ordinal { .. } => Err(format!(
                "{text:?}: write the shard as K/N (e.g. \"0/3\"); \"ordinal/N\" is for the configuration file"
            )),
        }
    }
}

/// `[daemon] shard` as written: a fixed shard, or the pod's ordinal of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// `K/N`.
    Fixed(Shard),
    /// `ordinal/N`: K is the trailing number of the host name (`connector-probe-2` is 2), as a
    /// StatefulSet names its pods.
    Ordinal { count: u32 },
}

impl ShardSpec {
    /// The shard, when it is fixed (as it is once [`load`] has resolved it).
    pub fn shard(self) -> Option<Shard> {
        match self {
            ShardSpec::Fixed(shard) => Some(shard),
            ShardSpec::Ordinal { .. } => None,
        }
    }

    /// The shard on a host called `hostname`.
    pub fn resolve(self, hostname: &str) -> Result<Shard, String> {
        match self {
            ShardSpec::Fixed(shard) => Ok(shard),
            ShardSpec::Ordinal { count } => {
                let ordinal = hostname
                    .rsplit_once('-')
                    .and_then(|(_, tail)| tail.parse::<u32>().ok())
                    .ok_or_else(|| {
                        format!(
                            "\"ordinal/{count}\" takes the shard from a host name ending in -K, as a StatefulSet's pods are named; {hostname:?} does not (give --shard K/{count} instead)"
                        )
                    })?;
                Shard::new(ordinal, count).map_err(|e| {
                    format!("the host name {hostname:?} gives ordinal {ordinal}, but {e}")
                })
            }
        }
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardSpec::Fixed(shard) => shard.fmt(f),
            ShardSpec::Ordinal { count } => write!(f, "ordinal/{count}"),
        }
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ShardSpec, String> {
        let bad =
            || format!("{text:?} is not a shard; write \"K/N\" (e.g. \"0/3\") or \"ordinal/N\"");
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if k.trim() == "ordinal" {
            // Checked here so that a bad N is reported where it is written.
            Shard::new(0, count)?;
            return Ok(ShardSpec::Ordinal { count });
        }
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map(ShardSpec::Fixed)
    }
}

/// The shard (of `count`) that owns the connector called `name`.
pub fn owner(name: &str, count: u32) -> u32 {
    // Ties cannot matter in practice (64-bit weights); the lowest index wins them.
    (0..count)
        .max_by_key(|&k| (weight(k, name), std::cmp::Reverse(k)))
        .unwrap_or(0)
}

/// The rendezvous weight of `name` for shard `k` (see the module's documentation).
fn weight(k: u32, name: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for b in u64::from(k).to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The shard this process is: `--shard` when given, else `[daemon] shard` resolved against
/// the host name (`$HOSTNAME`, else the kernel's), else none (every connector).
pub fn select(config: &Config, flag: Option<Shard>) -> Result<Option<Shard>, ConfigError> {
    if flag.is_some() {
        return Ok(flag);
    }
    let Some(spec) = config.daemon.shard else {
        return Ok(None);
    };
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(crate::config::hostname);
    spec.resolve(&hostname)
        .map(Some)
        .map_err(|message| ConfigError {
            file: config.source.clone(),
            line: None,
            column: None,
            key: Some("daemon.shard".into()),
            message,
        })
}

/// Loads the configuration and keeps the connectors of this process's shard (see [`select`]);
/// what the daemon runs, at start and on every reload.
pub fn load(path: &std::path::Path, flag: Option<Shard>) -> Result<Config, ConfigError> {
    let mut config = Config::load(path)?;
    if let Some(shard) = select(&config, flag)? {
        config.connectors.retain(|c| shard.owns(&c.name));
        config.daemon.shard = Some(ShardSpec::Fixed(shard));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("connector-{i:05}.contoso"))
            .collect()
    }

    #[test]
    fn every_connector_has_exactly_one_shard() {
        let names = names(10_000);
        for count in [1, 2, 3, 7, 16] {
            let shards: Vec<Shard> = (0..count).map(|k| Shard::new(k, count).unwrap()).collect();
            for name in &names {
                let owners = shards.iter().filter(|s| s.owns(name)).count();
                assert_eq!(owners, 1, "{name} among {count} shards");
            }
        }
    }

    #[test]
    fn shards_are_about_equal() {
        let names = names(10_000);
        let count = 5;
        let mut sizes = vec![0usize; count as usize];
        for name in &names {
            sizes[owner(name, count) as usize] += 1;
        }
        // 2,000 each expected; ±10 % is beyond five standard deviations of a fair split.
        for size in &sizes {
            assert!((1_800..=2_200).contains(size), "{sizes:?}");
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n_plus_one() {
        let names = names(10_000);
        for count in [1u32, 2, 4, 9] {
            let mut moved = 0;
            for name in &names {
                let (before, after) = (owner(name, count), owner(name, count + 1));
                if before != after {
                    // Rendezvous hashing moves a connector only to the new shard.
                    assert_eq!(after, count, "{name}: {before} -> {after}");
                    moved += 1;
                }
            }
            let expected = names.len() as f64 / f64::from(count + 1);
            let off = (f64::from(moved) - expected).abs() / expected;
            assert!(
                off < 0.1,
                "{count} -> {} shards moved {moved}, expected about {expected:.0}",
                count + 1
            );
        }
    }

    #[test]
    fn the_hash_is_fixed() {
        // Pinned values, computed independently (a few lines of Python): any change to the
        // weight function moves connectors between the shards of a running fleet, so it must
        // fail here first.
        assert_eq!(weight(0, ""), 0x7bd3_144f_29c0_cc9e);
        assert_eq!(weight(3, "contoso-onprem"), 0x8760_79c2_cd20_997d);
        let owners: Vec<u32> = [
            "contoso-onprem",
            "fabrikam-partner",
            "a",
            "b",
            "c",
            "d",
            "e",
            "f",
        ]
        .iter()
        .map(|n| owner(n, 4))
        .collect();
        assert_eq!(owners, [1, 0, 2, 0, 2, 0, 2, 1]);
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            "1/3".parse::<ShardSpec>(),
            Ok(ShardSpec::Fixed(Shard { index: 1, count: 3 }))
        );
        assert_eq!(
            " ordinal/4 ".parse::<ShardSpec>(),
            Ok(ShardSpec::Ordinal { count: 4 })
        );
        for bad in [
            "",
            "3",
            "3/3",
            "1/0",
            "-1/2",
            "a/2",
            "1/",
            "ordinal/0",
            "1/5000",
        ] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad:?}");
        }
        assert!("ordinal/2".parse::<Shard>().is_err());
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
    }

    #[test]
    fn the_ordinal_comes_from_the_pod_name() {
        let spec = ShardSpec::Ordinal { count: 3 };
        assert_eq!(
            spec.resolve("connector-probe-2"),
            Ok(Shard { index: 2, count: 3 })
        );
        assert!(spec.resolve("connector-probe-3").is_err());
        assert!(spec.resolve("connector-probe").is_err());
        assert!(spec.resolve("mail").is_err());
    }
}

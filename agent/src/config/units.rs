//! Value types of the configuration that TOML has no native form for:
//! sizes written the PostgreSQL way (`"16MB"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in configuration files as PostgreSQL writes
/// memory settings: an integer and a unit, `B`, `kB`, `MB`, `GB` or `TB`
/// (1024-based, as in `postgresql.conf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Why a size string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (write an integer and a unit, e.g. \"16MB\"; units: B, kB, MB, GB, TB)")]
pub struct ByteSizeError {
    input: String,
    reason: &'static str,
}

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ByteSizeError {
            input: s.to_string(),
            reason,
        };
        let trimmed = s.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        if digits.is_empty() {
            return Err(err("no number"));
        }
        let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
        let factor: u64 = match unit.trim() {
            "B" | "" => 1,
            "kB" | "KB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            "TB" => 1 << 40,
            _ => return Err(err("unknown unit")),
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| err("size too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ];
        for (unit, factor) in UNITS {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{}", self.0 / factor, unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_postgres_units() {
        assert_eq!("16MB".parse::<ByteSize>().unwrap().bytes(), 16 << 20);
        assert_eq!("1kB".parse::<ByteSize>().unwrap().bytes(), 1024);
        assert_eq!("0".parse::<ByteSize>().unwrap().bytes(), 0);
        assert_eq!("2 GB".parse::<ByteSize>().unwrap().bytes(), 2 << 30);
    }

    #[test]
    fn bad_sizes_are_refused_with_the_input_named() {
        let e = "16XB".parse::<ByteSize>().unwrap_err().to_string();
        assert!(e.contains("16XB") && e.contains("unknown unit"), "{e}");
        assert!("MB".parse::<ByteSize>().is_err());
        assert!("99999999999999TB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(16 << 20).to_string(), "16MB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
    }
}

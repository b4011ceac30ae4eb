//! Loading: the TOML file, then `PGWARDEN_<SECTION>__<KEY>` overrides.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Config;

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as `section.key`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A configuration that cannot be used: every problem found, at once.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file that was loaded.
    pub file: PathBuf,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration {}:", self.file.display())?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads and validates a node's configuration.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("PGWARDEN")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Config>());
    built.map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            key: "(file)".into(),
            message: e.to_string(),
        }],
    })
}

/// The effective configuration as TOML, secrets masked.
pub fn effective_toml(cfg: &Config) -> String {
    toml::to_string_pretty(cfg).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

//! Writing the files the agent owns inside the data directory, atomically
//! (temp file, fsync, rename), owned by the PostgreSQL user.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::conf::{self, BASE_CONF_FILE};
use super::runas::RunAs;
use crate::config::{Config, ParamValue};

/// The header every managed file starts with; a `postgresql.conf` without it
/// is initdb's (or a hand-written) file, to be kept as the base file.
const MANAGED_MARK: &str = "# Managed by pgwarden";

/// The file PostgreSQL's stderr goes to: `<data_dir>.log`, beside the data
/// directory rather than in it, because `pg_basebackup` and `pg_rewind`
/// copy a data directory's files from another member and would bring that
/// member's log along (or overwrite this one's).
pub fn server_log(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "log")
}

/// The libpq password file a standby streams with: `<data_dir>.pgpass`,
/// outside the data directory so that no copy of the data carries it.
pub fn passfile(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "pgpass")
}

fn sibling(data_dir: &Path, ext: &str) -> PathBuf {
    let trimmed = data_dir.to_string_lossy().trim_end_matches('/').to_string();
    PathBuf::from(format!("{trimmed}.{ext}"))
}

/// Why a managed file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// Writes `contents` to `path` atomically with `mode`, owned by `owner`.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: &RunAs,
) -> Result<(), FileError> {
    let err = |source| FileError {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.pgwarden-tmp"));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(contents).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    owner.give(&tmp).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Keeps initdb's (or the operator's) `postgresql.conf` as the base file
/// the managed one includes, the first time the agent takes the directory over.
pub fn adopt_base_conf(data_dir: &Path) -> Result<(), FileError> {
    let conf = data_dir.join("postgresql.conf");
    let base = data_dir.join(BASE_CONF_FILE);
    if base.exists() {
        return Ok(());
    }
    match fs::read_to_string(&conf) {
        Ok(text) if !text.starts_with(MANAGED_MARK) => {
            fs::rename(&conf, &base).map_err(|source| FileError {
                path: conf.clone(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// What the managed files should say.
pub struct ManagedFiles {
    /// `postgresql.conf`.
    pub postgresql_conf: String,
    /// `pg_hba.conf`.
    pub pg_hba: String,
    /// `pg_ident.conf`.
    pub pg_ident: String,
}

impl ManagedFiles {
    /// Renders the files for this configuration and version.
    /// `synchronous_standby_names`, when given, replaces the one `cfg`
    /// alone would have (the runner's plan covers every member's list).
    pub fn render(
        cfg: &Config,
        major: u32,
        owner: &RunAs,
        standby: Option<&BTreeMap<String, ParamValue>>,
        synchronous_standby_names: Option<String>,
    ) -> ManagedFiles {
        let mut params = conf::effective_parameters(cfg, major);
        if let Some(names) = synchronous_standby_names {
            params.insert("synchronous_standby_names".into(), ParamValue::Text(names));
        }
        ManagedFiles {
            postgresql_conf: conf::render_postgresql_conf(&params, standby),
            pg_hba: conf::render_pg_hba(cfg),
            pg_ident: conf::render_pg_ident(&owner.user),
        }
    }

    /// Writes them into the data directory; returns whether anything changed.
    pub fn write(&self, data_dir: &Path, owner: &RunAs) -> Result<bool, FileError> {
        adopt_base_conf(data_dir)?;
        let mut changed = false;
        for (name, text) in [
            ("postgresql.conf", &self.postgresql_conf),
            ("pg_hba.conf", &self.pg_hba),
            ("pg_ident.conf", &self.pg_ident),
        ] {
            let path = data_dir.join(name);
            if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            write_atomic(&path, text.as_bytes(), 0o600, owner)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// Whether a data directory holds a cluster, nothing, or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirState {
    /// Missing or empty: a bootstrap or a clone may fill it.
    Empty,
    /// `PG_VERSION` and `global/pg_control` exist.
    Initialized,
    /// Files, but not a cluster (a failed initdb, a stray file): never
    /// reused, renamed aside before a bootstrap.
    Foreign,
    /// It exists but cannot be read (permissions, an I/O error): nothing
    /// can be known of it, so nothing is made there and nothing moved.
    Unreadable,
}

/// The marker of a clone in progress (`<data_dir>.cloning`): a copy that
/// was interrupted (the agent stopped or crashed) is never taken for a
/// cluster, even when its files look like one.
pub fn clone_marker(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}.cloning",
        data_dir.to_string_lossy().trim_end_matches('/')
    ))
}

/// Looks at a data directory without changing it.
pub fn data_dir_state(data_dir: &Path) -> DataDirState {
    let mut entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DataDirState::Empty,
        Err(_) => return DataDirState::Unreadable,
    };
    if entries.next().is_none() {
        return DataDirState::Empty;
    }
    if clone_marker(data_dir).exists() {
        return DataDirState::Foreign;
    }
    if data_dir.join("PG_VERSION").is_file() && data_dir.join("global/pg_control").is_file() {
        DataDirState::Initialized
    } else {
        DataDirState::Foreign
    }
}

/// Renames a data directory aside (`<dir>.diverged-<unix time>`): the agent
/// never deletes one. Returns the new name.
pub fn rename_aside(data_dir: &Path, why: &str) -> Result<PathBuf, FileError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = PathBuf::from(format!("{}.{why}-{stamp}", data_dir.display()));
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.{why}-{stamp}-{n}", data_dir.display()));
        n += 1;
    }
    fs::rename(data_dir, &target).map_err(|source| FileError {
        path: data_dir.to_path_buf(),
        source,
    })?;
    // The marker of an interrupted clone went with what it marked.
    let _ = fs::remove_file(clone_marker(data_dir));
    Ok(target)
}

/// Whether a directory renamed aside from `data_dir` ([`rename_aside`])
/// lies beside it: this member had data once, and may have acknowledged
/// commits that its directory no longer holds.
pub fn renamed_aside_beside(data_dir: &Path) -> bool {
    let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
        return false;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    fs::read_dir(parent).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_renamed_aside_is_seen_beside_the_data_directory_but_files_are_not() {
        let root = tempfile::tempdir().expect("temp dir");
        let data = root.path().join("data");
        fs::create_dir(&data).expect("data");
        fs::write(root.path().join("data.log"), "log").expect("log");
        assert!(!renamed_aside_beside(&data));
        let moved = rename_aside(&data, "diverged").expect("renamed");
        assert!(moved.starts_with(root.path()));
        assert!(renamed_aside_beside(&data));
    }

    #[test]
    fn the_log_and_passfile_live_beside_the_data_directory() {
        assert_eq!(
            server_log(Path::new("/var/lib/postgresql/15/main/")),
            PathBuf::from("/var/lib/postgresql/15/main.log")
        );
        assert_eq!(
            passfile(Path::new("/d/main")),
            PathBuf::from("/d/main.pgpass")
        );
    }

    #[test]
    fn a_directory_is_empty_initialized_or_foreign() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        assert_eq!(data_dir_state(&d), DataDirState::Empty);
        fs::create_dir(&d).unwrap();
        assert_eq!(data_dir_state(&d), DataDirState::Empty);
        fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(data_dir_state(&d), DataDirState::Foreign);
        fs::create_dir(d.join("global")).unwrap();
        fs::write(d.join("global/pg_control"), "x").unwrap();
        assert_eq!(data_dir_state(&d), DataDirState::Initialized);
        // an interrupted clone is never a cluster
        fs::write(clone_marker(&d), "").unwrap();
        assert_eq!(data_dir_state(&d), DataDirState::Foreign);
        fs::remove_file(clone_marker(&d)).unwrap();
        // not a directory at all: it cannot be listed, and is no empty one
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert_eq!(data_dir_state(&file), DataDirState::Unreadable);
    }

    #[test]
    fn renaming_aside_keeps_the_data_and_never_collides() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("f"), "keep").unwrap();
        let first = rename_aside(&d, "diverged").unwrap();
        assert_eq!(fs::read_to_string(first.join("f")).unwrap(), "keep");
        fs::create_dir(&d).unwrap();
        let second = rename_aside(&d, "diverged").unwrap();
        assert_ne!(first, second);
        assert!(!d.exists());
    }
}

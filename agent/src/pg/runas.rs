//! Running PostgreSQL and its tools as the right operating-system user.
//!
//! PostgreSQL refuses to run as root. When the agent runs as root (a
//! manual start, the demo, the tests) it runs every PostgreSQL program as
//! the owner of the data directory — `postgres` when the directory is new —
//! with that user's groups. Started as that user (the systemd unit), it
//! runs them as itself.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

/// Who PostgreSQL runs as, and whether the agent must switch to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name (`postgres`).
    pub user: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (e.g. `ssl-cert` on Debian).
    pub groups: Vec<u32>,
    /// Home directory, for `HOME`.
    pub home: PathBuf,
    /// True when the agent is root and must switch to this user.
    pub switch: bool,
}

/// Why PostgreSQL cannot be run as anyone suitable.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    /// The data directory belongs to root.
    #[error("{0} is owned by root, and PostgreSQL refuses to run as root: chown -R postgres: {0}")]
    OwnedByRoot(PathBuf),
    /// No `postgres` user exists to own a new data directory.
    #[error("no operating-system user 'postgres' to run PostgreSQL as (install PostgreSQL's packages, or create the user)")]
    NoPostgresUser,
    /// A user lookup failed.
    #[error("cannot look up user {what}: {source}")]
    Lookup {
        /// The uid or name.
        what: String,
        /// The error.
        source: nix::Error,
    },
    /// The data directory could not be created or inspected.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A parent directory is not traversable by the PostgreSQL user.
    #[error("{path} is not searchable by user {user} (PostgreSQL needs to reach {target}): chmod o+x {path} or move the directory")]
    NotTraversable {
        /// The blocking parent.
        path: PathBuf,
        /// The PostgreSQL user.
        user: String,
        /// The directory it must reach.
        target: PathBuf,
    },
}

impl RunAs {
    /// Decides who runs PostgreSQL for `data_dir`: the agent itself when it
    /// is not root; when root, the directory's owner, or `postgres` when
    /// the directory does not exist yet.
    pub fn for_data_dir(data_dir: &Path) -> Result<RunAs, RunAsError> {
        let me = Uid::effective();
        if !me.is_root() {
            return Self::from_uid(me, false);
        }
        match std::fs::metadata(data_dir) {
            Ok(meta) if meta.uid() == 0 => Err(RunAsError::OwnedByRoot(data_dir.to_path_buf())),
            Ok(meta) => Self::from_uid(Uid::from_raw(meta.uid()), true),
            Err(_) => {
                let user = User::from_name("postgres")
                    .map_err(|source| RunAsError::Lookup {
                        what: "postgres".into(),
                        source,
                    })?
                    .ok_or(RunAsError::NoPostgresUser)?;
                Self::from_user(user, true)
            }
        }
    }

    fn from_uid(uid: Uid, switch: bool) -> Result<RunAs, RunAsError> {
        let user = User::from_uid(uid)
            .map_err(|source| RunAsError::Lookup {
                what: uid.to_string(),
                source,
            })?
            .ok_or_else(|| RunAsError::Lookup {
                what: uid.to_string(),
                source: nix::Error::ENOENT,
            })?;
        Self::from_user(user, switch)
    }

    fn from_user(user: User, switch: bool) -> Result<RunAs, RunAsError> {
        let groups = CString::new(user.name.clone())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
            .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_else(|| vec![user.gid.as_raw()]);
        Ok(RunAs {
            user: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
            home: user.dir,
            switch,
        })
    }

    /// Makes `cmd` run as this user: ids, groups, `HOME`/`USER`, and a
    /// working directory it can enter (PostgreSQL tools complain otherwise).
    pub fn apply(&self, cmd: &mut std::process::Command) {
        cmd.current_dir("/")
            .env("HOME", &self.home)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .env_remove("PGPASSWORD")
            .env_remove("PGDATA");
        if self.switch {
            let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
            // Groups first, while still root; then gid, then uid (std's own
            // uid/gid switch runs before pre_exec hooks and would make
            // setgroups fail). SAFETY: these are plain system calls,
            // async-signal-safe, on values built before fork.
            unsafe {
                cmd.pre_exec(move || {
                    nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
                    nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
                    nix::unistd::setuid(uid).map_err(std::io::Error::from)
                });
            }
        }
    }

    /// Creates `dir` (and parents) when missing, mode `mode`, owned by this
    /// user, and checks that every parent is traversable by them.
    pub fn ensure_dir(&self, dir: &Path, mode: u32) -> Result<bool, RunAsError> {
        let io = |source| RunAsError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let created = if dir.exists() {
            false
        } else {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            if self.switch {
                nix::unistd::chown(
                    dir,
                    Some(Uid::from_raw(self.uid)),
                    Some(Gid::from_raw(self.gid)),
                )
                .map_err(|e| io(e.into()))?;
            }
            true
        };
        self.check_traversable(dir)?;
        Ok(created)
    }

    /// Every ancestor of `target` must let this user pass (x bit for them).
    pub fn check_traversable(&self, target: &Path) -> Result<(), RunAsError> {
        let mut ancestors: Vec<&Path> = target.ancestors().skip(1).collect();
        ancestors.reverse();
        for dir in ancestors {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            let mode = meta.permissions().mode();
            let ok = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if self.groups.contains(&meta.gid()) || meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok && self.uid != 0 {
                return Err(RunAsError::NotTraversable {
                    path: dir.to_path_buf(),
                    user: self.user.clone(),
                    target: target.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// Gives a file the agent wrote to this user (when the agent is root).
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        if self.switch {
            nix::unistd::chown(
                path,
                Some(Uid::from_raw(self.uid)),
                Some(Gid::from_raw(self.gid)),
            )?;
        }
        Ok(())
    }
}

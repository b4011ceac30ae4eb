//! Secret files: passwords, tokens and the cluster secret are never in the
//! configuration itself, only the paths of files that hold them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error(
        "cannot read secret file {path}: {source} (create it, mode 0600, readable by the agent)"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("secret file {path} is empty (write the secret on its first line)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a secret: the file's first line, without the line ending.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.trim().is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(first.to_string())
}

/// Checks that a secret file can be used, without keeping its contents:
/// readable by the agent and not empty. Returns the file's permission bits.
pub fn check_secret_file(path: &Path) -> Result<u32, SecretError> {
    // Reading (rather than looking at the mode) is the only check that
    // answers for this process: ACLs, SELinux and the agent's user all count.
    read_secret(path)?;
    let meta = fs::metadata(path).map_err(|source| SecretError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(meta.permissions().mode() & 0o7777)
}

/// True when the mode lets anyone but the owner and the owner's group read
/// it, or anyone but the owner change it: 0600 and 0640 are fine.
pub(super) fn loose_permissions(mode: u32) -> bool {
    mode & 0o027 != 0
}

/// Who else the mode lets at a secret file, for a warning:
/// `every local user can read it`.
pub(super) fn who_else(mode: u32) -> String {
    let mut parts = Vec::new();
    if mode & 0o004 != 0 {
        parts.push("every local user can read it");
    }
    if mode & 0o002 != 0 {
        parts.push("every local user can replace it");
    } else if mode & 0o020 != 0 {
        parts.push("its group can replace it");
    }
    if parts.is_empty() && mode & 0o001 != 0 {
        parts.push("every local user has access to it");
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn secret_file(contents: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        fs::set_permissions(f.path(), fs::Permissions::from_mode(mode)).expect("chmod");
        f
    }

    #[test]
    fn a_secret_is_the_first_line_without_its_line_ending() {
        let f = secret_file("s3cret\r\nignored\n", 0o600);
        assert_eq!(read_secret(f.path()).unwrap(), "s3cret");
    }

    #[test]
    fn an_empty_or_blank_secret_file_is_refused() {
        for contents in ["", "\n", "   \nsecond line\n"] {
            let f = secret_file(contents, 0o600);
            let e = check_secret_file(f.path()).unwrap_err();
            assert!(matches!(e, SecretError::Empty { .. }), "{contents:?}: {e}");
        }
    }

    #[test]
    fn a_missing_secret_file_is_refused_with_its_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pass");
        let e = check_secret_file(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("mode 0600"),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_secret_file_is_refused() {
        let f = secret_file("s3cret\n", 0o000);
        if fs::read(f.path()).is_ok() {
            // Running as root: permissions do not stop us, nothing to test.
            eprintln!("skipped: this process may read mode 0000 files (root)");
            return;
        }
        assert!(matches!(
            check_secret_file(f.path()),
            Err(SecretError::Unreadable { .. })
        ));
    }

    #[test]
    fn owner_and_group_only_modes_are_fine_and_others_are_loose() {
        assert!(!loose_permissions(0o600));
        assert!(!loose_permissions(0o640));
        assert!(!loose_permissions(0o400));
        assert!(loose_permissions(0o644));
        assert!(loose_permissions(0o660));
        assert!(loose_permissions(0o602));
        let f = secret_file("s3cret\n", 0o644);
        assert_eq!(check_secret_file(f.path()).unwrap(), 0o644);
        assert_eq!(who_else(0o644), "every local user can read it");
        assert_eq!(
            who_else(0o666),
            "every local user can read it and every local user can replace it"
        );
        assert_eq!(who_else(0o660), "its group can replace it");
    }
}

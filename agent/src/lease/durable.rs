//! This member's lease notes on disk, so that an agent restarted on the
//! same boot neither stays silent for a `ttl` (its acceptor resumes from
//! its notes) nor forgets that it holds the lease (its proposer resumes
//! holding it until the end it computed before).
//!
//! The notes are the acceptor's promise and accepted leases, and the lease
//! this member holds, with every time on this member's `CLOCK_BOOTTIME`
//! (see [`super::service::BootClock`]) and the kernel's boot id: readings
//! of that clock mean something only on the boot that took them. The file
//! is written atomically (temporary file, fsync, rename, fsync of the
//! directory) before the acceptor sends the answer that changed it.
//!
//! How a start resumes ([`resume`], pure):
//!
//! | the file | resumes |
//! | --- | --- |
//! | absent | fresh: this acceptor never answered anything; answers at once |
//! | this boot's | from the notes; answers at once; a lease held still is held |
//! | another boot's, empty | fresh |
//! | another boot's, with notes | silent for one `ttl` (the diskless rule) |
//! | unreadable or damaged | silent for one `ttl` |
//!
//! Deleting the file while the cluster runs makes this member forget what
//! it promised without waiting: don't (a replaced machine takes longer
//! than a `ttl` to come back, which is what makes "absent" safe).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::acceptor::AcceptorState;
use super::ballot::Ballot;
use super::clock::LocalTime;
use super::proposer::HeldLease;

/// The file format's version.
const VERSION: u32 = 1;

/// The lease this member holds, as its proposer computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The winning ballot and the lease's end on this member's clock.
    pub lease: HeldLease,
    /// The term shown to operators: the first ballot of this holding.
    pub term: u64,
}

/// Everything persisted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// The acceptor's promise and leases.
    pub acceptor: AcceptorState,
    /// The lease this member holds, if any.
    pub holding: Option<Holding>,
}

/// How a starting member resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Nothing to forget: answer at once, hold nothing.
    Fresh,
    /// This boot's notes: answer at once from them.
    Restore(Notes),
    /// Notes that cannot be trusted or used: silent for one `ttl`, why.
    Silent(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    boot_id: String,
    promised: Option<Ballot>,
    accepted: Vec<Timed>,
    held: Option<HeldRecord>,
    /// `CLOCK_BOOTTIME` nanoseconds: the end of a silence (0: none).
    #[serde(default)]
    silent_until_ns: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timed {
    ballot: Ballot,
    /// `CLOCK_BOOTTIME` nanoseconds on the boot named by `boot_id`.
    expires_at_ns: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldRecord {
    ballot: Ballot,
    expires_at_ns: u64,
    term: u64,
}

/// Decides how to resume from the file's contents (`Ok(None)`: no file)
/// on the boot `boot_id`.
pub fn resume(contents: Result<Option<String>, String>, boot_id: &str) -> Resume {
    let text = match contents {
        Ok(None) => return Resume::Fresh,
        Ok(Some(text)) => text,
        Err(e) => return Resume::Silent(format!("its lease notes cannot be read: {e}")),
    };
    let file: File = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => return Resume::Silent(format!("its lease notes are damaged: {e}")),
    };
    if file.version != VERSION {
        return Resume::Silent(format!(
            "its lease notes are of format {} (this agent writes {VERSION})",
            file.version
        ));
    }
    let notes = Notes {
        acceptor: AcceptorState {
            promised: file.promised,
            accepted: file
                .accepted
                .into_iter()
                .map(|t| (t.ballot, LocalTime::from_nanos(t.expires_at_ns)))
                .collect(),
            silent_until: LocalTime::from_nanos(file.silent_until_ns),
        },
        holding: file.held.map(|h| Holding {
            lease: HeldLease {
                ballot: h.ballot,
                expires_at: LocalTime::from_nanos(h.expires_at_ns),
            },
            term: h.term,
        }),
    };
    if file.boot_id != boot_id {
        return if notes.acceptor.is_empty() && notes.holding.is_none() {
            Resume::Fresh
        } else {
            Resume::Silent(
                "the machine rebooted since its lease notes were written (their times are from another boot)"
                    .into(),
            )
        };
    }
    Resume::Restore(notes)
}

fn render(notes: &Notes, boot_id: &str) -> String {
    let file = File {
        version: VERSION,
        boot_id: boot_id.to_string(),
        promised: notes.acceptor.promised.clone(),
        accepted: notes
            .acceptor
            .accepted
            .iter()
            .map(|(ballot, t)| Timed {
                ballot: ballot.clone(),
                expires_at_ns: t.as_nanos(),
            })
            .collect(),
        held: notes.holding.as_ref().map(|h| HeldRecord {
            ballot: h.lease.ballot.clone(),
            expires_at_ns: h.lease.expires_at.as_nanos(),
            term: h.term,
        }),
        silent_until_ns: notes.acceptor.silent_until.as_nanos(),
    };
    let mut text = serde_json::to_string(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// The notes could not be written: the acceptor must not answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the lease notes {path}: {source} (this member does not vote until it can)")]
pub struct NotesError {
    path: PathBuf,
    source: std::io::Error,
}

/// The notes file of one member.
#[derive(Clone, Debug)]
pub struct NotesFile {
    path: PathBuf,
    boot_id: String,
}

impl NotesFile {
    /// The notes at `path`, on the boot `boot_id`.
    pub fn new(path: PathBuf, boot_id: String) -> NotesFile {
        NotesFile { path, boot_id }
    }

    /// The notes file of a data directory: `<data_dir>.lease`, beside it
    /// like the server log (a clone or a rewind must not carry it along).
    pub fn beside(data_dir: &Path) -> PathBuf {
        PathBuf::from(format!(
            "{}.lease",
            data_dir.to_string_lossy().trim_end_matches('/')
        ))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and decides how to resume.
    pub fn load(&self) -> Resume {
        let contents = match fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        };
        resume(contents, &self.boot_id)
    }

    /// Writes the notes durably: temporary file, fsync, rename, fsync of
    /// the directory.
    pub fn save(&self, notes: &Notes) -> Result<(), NotesError> {
        let err = |source| NotesError {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("lease.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(render(notes, &self.boot_id).as_bytes())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The kernel's boot id: changes at every boot.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::MemberName;

    fn ballot(counter: u64) -> Ballot {
        Ballot::new(counter, MemberName::from("pg1"), 7)
    }

    fn notes() -> Notes {
        Notes {
            acceptor: AcceptorState {
                promised: Some(ballot(5)),
                accepted: vec![(ballot(4), LocalTime::from_nanos(9_000))],
                silent_until: LocalTime::from_nanos(7_000),
            },
            holding: Some(Holding {
                lease: HeldLease {
                    ballot: ballot(5),
                    expires_at: LocalTime::from_nanos(8_000),
                },
                term: 3,
            }),
        }
    }

    #[test]
    fn notes_of_this_boot_restore_exactly() {
        let text = render(&notes(), "boot-a");
        assert_eq!(resume(Ok(Some(text)), "boot-a"), Resume::Restore(notes()));
    }

    #[test]
    fn without_a_file_the_acceptor_is_fresh() {
        assert_eq!(resume(Ok(None), "boot-a"), Resume::Fresh);
    }

    #[test]
    fn notes_of_another_boot_keep_it_silent_unless_they_are_empty() {
        let text = render(&notes(), "boot-a");
        assert!(
            matches!(resume(Ok(Some(text)), "boot-b"), Resume::Silent(why) if why.contains("rebooted"))
        );
        let empty = render(&Notes::default(), "boot-a");
        assert_eq!(resume(Ok(Some(empty)), "boot-b"), Resume::Fresh);
    }

    #[test]
    fn damaged_or_unreadable_notes_keep_it_silent() {
        let text = render(&notes(), "boot-a");
        let torn = &text[..text.len() / 2];
        assert!(
            matches!(resume(Ok(Some(torn.into())), "boot-a"), Resume::Silent(why) if why.contains("damaged"))
        );
        assert!(matches!(
            resume(Err("permission denied".into()), "boot-a"),
            Resume::Silent(why) if why.contains("permission denied")
        ));
        let other = text.replace("\"version\":1", "\"version\":9");
        assert!(
            matches!(resume(Ok(Some(other)), "boot-a"), Resume::Silent(why) if why.contains("format 9"))
        );
    }

    #[test]
    fn saved_notes_load_back_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = NotesFile::new(dir.path().join("data.lease"), "boot-a".into());
        assert_eq!(file.load(), Resume::Fresh);
        file.save(&notes()).unwrap();
        assert_eq!(file.load(), Resume::Restore(notes()));
        assert!(!dir.path().join("data.lease.tmp").exists());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}

//! The timeline a standby's replay is on, from the timeline history files
//! in its `pg_wal`, the way PostgreSQL itself finds it.
//!
//! SQL offers a standby's timeline only while its WAL receiver runs
//! (`pg_stat_wal_receiver.received_tli`); otherwise the nearest is the
//! last restartpoint's (`pg_control_checkpoint()`), which stays on an old
//! timeline until the next restartpoint, minutes later. A failover is
//! exactly when the receivers stop: candidates compared by that stale
//! number (timeline first, then LSN) ranked a standby that had the newest
//! WAL behind one that lacked it, and quorum commit lost four acknowledged
//! writes (the chaos run, seed 1001, fault 485).
//!
//! PostgreSQL in recovery follows the newest timeline whose history file
//! it has (`recovery_target_timeline = 'latest'`), and replays WAL of the
//! timeline each point of that history belongs to: a point before a
//! switchpoint is on the timeline that ended there, a point past them all
//! on the newest one. This module does the same with the replay LSN.

use std::path::Path;

use super::lsn::Lsn;

/// One line of a history file: timeline `tli` ended at `switchpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// The timeline that ended.
    pub tli: u32,
    /// Where the next timeline forked off it.
    pub switchpoint: Lsn,
}

/// The switches of a history file's text (`<tli>\t<lsn>\t<reason>` lines,
/// comments and blank lines skipped); `None` when a line does not parse.
pub fn parse(text: &str) -> Option<Vec<Switch>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let tli = fields.next()?.parse().ok()?;
            let switchpoint = fields.next()?.parse().ok()?;
            Some(Switch { tli, switchpoint })
        })
        .collect()
}

/// The timeline of `lsn` in the history of timeline `newest` (PostgreSQL's
/// `tliOfPointInHistory`): the first timeline that ended after `lsn`, or
/// `newest` when `lsn` is past every switchpoint.
pub fn timeline_of(lsn: Lsn, newest: u32, switches: &[Switch]) -> u32 {
    switches
        .iter()
        .find(|s| lsn < s.switchpoint)
        .map_or(newest, |s| s.tli)
}

/// The newest timeline history file in `data_dir/pg_wal` (the highest
/// timeline number), read and parsed; `None` when there is none (timeline 1
/// has no history file) or it cannot be read or parsed.
pub fn newest(data_dir: &Path) -> Option<(u32, Vec<Switch>)> {
    let wal = data_dir.join("pg_wal");
    let (tli, name) = std::fs::read_dir(&wal)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hex = name.strip_suffix(".history")?;
            (hex.len() == 8)
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
                .map(|tli| (tli, name))
        })
        .max_by_key(|(tli, _)| *tli)?;
    let text = std::fs::read_to_string(wal.join(name)).ok()?;
    Some((tli, parse(&text)?))
}

/// A standby's timeline at replay position `replayed`, from its history
/// files; `None` when it has none (then the caller's own answer stands).
pub fn replay_timeline(data_dir: &Path, replayed: Lsn) -> Option<u32> {
    let (newest, switches) = newest(data_dir)?;
    Some(timeline_of(replayed, newest, &switches))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: &str = "1\t0/3000060\tno recovery target specified\n\n\
                           2\t0/5000128\tno recovery target specified\n";

    #[test]
    fn a_history_file_parses_and_a_bad_line_is_refused() {
        assert_eq!(
            parse(HISTORY),
            Some(vec![
                Switch {
                    tli: 1,
                    switchpoint: Lsn(0x3000060)
                },
                Switch {
                    tli: 2,
                    switchpoint: Lsn(0x5000128)
                },
            ])
        );
        assert_eq!(parse("# comment\n"), Some(vec![]));
        assert_eq!(parse("1\tnot-an-lsn\treason\n"), None);
    }

    #[test]
    fn a_point_is_on_the_timeline_that_ended_after_it_or_on_the_newest() {
        let switches = parse(HISTORY).unwrap();
        assert_eq!(timeline_of(Lsn(0x1000000), 3, &switches), 1);
        assert_eq!(
            timeline_of(Lsn(0x3000060), 3, &switches),
            2,
            "a switchpoint is the next timeline's"
        );
        assert_eq!(timeline_of(Lsn(0x4000000), 3, &switches), 2);
        assert_eq!(timeline_of(Lsn(0x6000000), 3, &switches), 3);
        assert_eq!(timeline_of(Lsn(0x6000000), 1, &[]), 1);
    }

    #[test]
    fn the_newest_history_file_in_pg_wal_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).unwrap();
        assert_eq!(
            replay_timeline(dir.path(), Lsn(0x6000000)),
            None,
            "no history file: timeline 1's case"
        );
        std::fs::write(wal.join("00000002.history"), "1\t0/3000060\tx\n").unwrap();
        std::fs::write(wal.join("00000003.history"), HISTORY).unwrap();
        std::fs::write(wal.join("000000030000000000000006"), b"").unwrap();
        std::fs::write(wal.join("0000000A.history.partial"), b"junk").unwrap();
        assert_eq!(replay_timeline(dir.path(), Lsn(0x6000000)), Some(3));
        assert_eq!(replay_timeline(dir.path(), Lsn(0x4000000)), Some(2));
    }
}

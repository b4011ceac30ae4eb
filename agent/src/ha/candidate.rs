//! Who should become primary when there is none: a standby asks for the
//! leader lease only when it is the best candidate it can see. Pure: the
//! members' positions in, a verdict with its reason out.

use crate::pg::Lsn;

/// What a member reports about itself, as far as the choice goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPosition {
    /// Member name.
    pub name: String,
    /// The highest of its received and replayed WAL positions.
    pub lsn: Option<Lsn>,
    /// Its cluster's system identifier.
    pub system_identifier: Option<String>,
    /// It runs PostgreSQL as a primary (not in recovery) right now.
    pub running_primary: bool,
    /// Tagged `nofailover`: never promoted, and not a rival either.
    pub nofailover: bool,
}

/// Whether this standby should try for the lease, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Best candidate among those it could see.
    Best(String),
    /// Someone else is better, or something rules it out.
    NotBest(String),
}

impl Verdict {
    /// True for [`Verdict::Best`].
    pub fn is_best(&self) -> bool {
        matches!(self, Verdict::Best(_))
    }

    /// The reason, either way.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Best(r) | Verdict::NotBest(r) => r,
        }
    }
}

/// Judges `me` against the members that answered this loop (`peers`).
/// `last_leader_lsn`: the primary's last position this member saw, for
/// `max_lag` (`replication.max_lag_on_failover`).
pub fn judge(
    me: &MemberPosition,
    peers: &[MemberPosition],
    last_leader_lsn: Option<Lsn>,
    max_lag: u64,
) -> Verdict {
    if me.nofailover {
        return Verdict::NotBest(format!("{} is tagged nofailover", me.name));
    }
    let Some(mine) = me.lsn else {
        return Verdict::NotBest(format!("{}'s WAL position is unknown", me.name));
    };
    if let Some(p) = peers.iter().find(|p| p.running_primary) {
        return Verdict::NotBest(format!("{} reports a running primary", p.name));
    }
    if let Some(leader) = last_leader_lsn {
        let lag = leader.bytes_after(mine);
        if lag > max_lag {
            return Verdict::NotBest(format!(
                "{} is {lag} bytes behind the primary's last known position {leader} (max_lag_on_failover {max_lag})",
                me.name
            ));
        }
    }
    let mut compared = vec![format!("{}={mine}", me.name)];
    for p in peers.iter().filter(|p| !p.nofailover) {
        if p.system_identifier.is_some()
            && me.system_identifier.is_some()
            && p.system_identifier != me.system_identifier
        {
            return Verdict::NotBest(format!(
                "{} belongs to another cluster (system identifier {})",
                p.name,
                p.system_identifier.as_deref().unwrap_or("?")
            ));
        }
        let Some(theirs) = p.lsn else { continue };
        compared.push(format!("{}={theirs}", p.name));
        if theirs > mine || (theirs == mine && p.name < me.name) {
            return Verdict::NotBest(format!(
                "{} is ahead or equal and first by name ({theirs} vs {mine})",
                p.name
            ));
        }
    }
    Verdict::Best(format!(
        "highest WAL position among {}",
        compared.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, lsn: u64) -> MemberPosition {
        MemberPosition {
            name: name.into(),
            lsn: Some(Lsn(lsn)),
            system_identifier: Some("7311".into()),
            running_primary: false,
            nofailover: false,
        }
    }

    #[test]
    fn the_standby_with_the_highest_position_is_best() {
        let v = judge(&m("pg2", 200), &[m("pg3", 100)], Some(Lsn(200)), 1 << 20);
        assert!(v.is_best(), "{v:?}");
        assert!(
            v.reason().contains("pg2=0/C8") && v.reason().contains("pg3=0/64"),
            "{v:?}"
        );
    }

    #[test]
    fn a_standby_behind_another_withdraws() {
        assert!(!judge(&m("pg2", 100), &[m("pg3", 200)], None, 1 << 20).is_best());
    }

    #[test]
    fn ties_go_to_the_first_name() {
        assert!(judge(&m("pg2", 100), &[m("pg3", 100)], None, 1 << 20).is_best());
        assert!(!judge(&m("pg3", 100), &[m("pg2", 100)], None, 1 << 20).is_best());
    }

    #[test]
    fn a_live_primary_rules_everyone_out() {
        let primary = MemberPosition {
            running_primary: true,
            ..m("pg1", 50)
        };
        assert!(!judge(&m("pg2", 100), &[primary], None, 1 << 20).is_best());
    }

    #[test]
    fn a_lagging_standby_withdraws_even_when_alone() {
        let v = judge(&m("pg2", 100), &[], Some(Lsn(100 + (2 << 20))), 1 << 20);
        assert!(!v.is_best());
        assert!(v.reason().contains("max_lag_on_failover"), "{v:?}");
    }

    #[test]
    fn nofailover_members_never_try_and_never_block_others() {
        let tagged = MemberPosition {
            nofailover: true,
            ..m("pg2", 300)
        };
        assert!(!judge(&tagged, &[m("pg3", 100)], None, 1 << 20).is_best());
        assert!(judge(&m("pg3", 100), &[tagged], None, 1 << 20).is_best());
    }

    #[test]
    fn a_member_of_another_cluster_rules_out_the_choice() {
        let other = MemberPosition {
            system_identifier: Some("9999".into()),
            ..m("pg3", 10)
        };
        assert!(!judge(&m("pg2", 100), &[other], None, 1 << 20).is_best());
    }

    #[test]
    fn an_unknown_own_position_is_never_best() {
        let me = MemberPosition {
            lsn: None,
            ..m("pg2", 0)
        };
        assert!(!judge(&me, &[], None, 1 << 20).is_best());
    }
}

//! What the fence guard must be told, decided purely. The guard is the
//! process beside PostgreSQL that stops it when "writable until T" passes
//! without being pushed forward (`pg/fence_guard.rs`); these rules decide T.
//!
//! - **Guard first**: before an action that can make PostgreSQL writable,
//!   the guard is armed with the lease's end ([`before`]).
//! - **Extend only with the lease**: while PostgreSQL may take writes, the
//!   guard's deadline follows the lease this node holds; without the lease
//!   it is left where it is, so it fires ([`after`]).
//! - **Disarm only on evidence**: the guard leaves only when PostgreSQL is
//!   positively stopped or positively in recovery — never because the probe
//!   failed ([`after`]).

use std::time::Instant;

use super::decide::Action;
use super::situation::Postgres;

/// What to tell the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardCommand {
    /// Writable until this lease end (the guard acts a margin before it).
    Arm(Instant),
    /// Leave the deadline as it is.
    Keep,
    /// PostgreSQL cannot take writes: the guard may leave.
    Disarm,
}

/// Before carrying `action` out: arm the guard when the action can make
/// PostgreSQL writable (the lease's end is known: `decide` only makes a
/// node writable while it holds the lease).
pub fn before(action: &Action, lease_end: Option<Instant>) -> Option<GuardCommand> {
    if !action.makes_writable() {
        return None;
    }
    Some(match lease_end {
        Some(end) => GuardCommand::Arm(end),
        // Unreachable by `decide`'s rules; keeping whatever deadline there
        // is beats extending nothing.
        None => GuardCommand::Keep,
    })
}

/// After the action, from PostgreSQL as observed now: follow the lease
/// while it may take writes, leave only on evidence that it cannot. A
/// server asked to promote is no evidence while it is still in recovery.
pub fn after(
    postgres: &Postgres,
    standby_signal: bool,
    promoting: bool,
    lease_end: Option<Instant>,
) -> GuardCommand {
    match (postgres, lease_end) {
        (Postgres::Running { in_recovery: true } | Postgres::Starting, Some(end)) if promoting => {
            GuardCommand::Arm(end)
        }
        (Postgres::Running { in_recovery: true } | Postgres::Starting, None) if promoting => {
            GuardCommand::Keep
        }
        (Postgres::Running { in_recovery: true } | Postgres::NotRunning { .. }, _) => {
            GuardCommand::Disarm
        }
        (Postgres::Running { in_recovery: false }, Some(end)) => GuardCommand::Arm(end),
        // Not answering proves nothing: an overloaded primary still takes
        // writes on sessions it has. A primary's directory is guarded while
        // the lease lasts; nothing is taken away from the guard.
        (Postgres::Starting, Some(end)) if !standby_signal => GuardCommand::Arm(end),
        (Postgres::Starting | Postgres::Running { in_recovery: false }, _) => GuardCommand::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn actions_that_make_postgres_writable_arm_the_guard_first() {
        let end = Instant::now() + Duration::from_secs(8);
        for action in [
            Action::Bootstrap,
            Action::Start { as_standby: false },
            Action::Promote {
                reason: "best".into(),
            },
        ] {
            assert_eq!(
                before(&action, Some(end)),
                Some(GuardCommand::Arm(end)),
                "{action:?}"
            );
        }
        for action in [
            Action::Start { as_standby: true },
            Action::Healthy,
            Action::Fence { reason: "x".into() },
        ] {
            assert_eq!(before(&action, Some(end)), None, "{action:?}");
        }
    }

    #[test]
    fn a_probe_error_never_disarms_and_only_the_lease_extends() {
        let end = Instant::now() + Duration::from_secs(8);
        // (postgres, standby.signal, lease end) -> command
        let rows = [
            (
                Postgres::Running { in_recovery: false },
                false,
                Some(end),
                GuardCommand::Arm(end),
            ),
            (
                Postgres::Running { in_recovery: false },
                false,
                None,
                GuardCommand::Keep,
            ),
            (Postgres::Starting, false, Some(end), GuardCommand::Arm(end)),
            (Postgres::Starting, false, None, GuardCommand::Keep),
            (Postgres::Starting, true, None, GuardCommand::Keep),
            (Postgres::Starting, true, Some(end), GuardCommand::Keep),
            (
                Postgres::Running { in_recovery: true },
                false,
                None,
                GuardCommand::Disarm,
            ),
            (
                Postgres::NotRunning {
                    crash_backoff: true,
                },
                false,
                Some(end),
                GuardCommand::Disarm,
            ),
        ];
        for (pg, signal, lease, expected) in rows {
            assert_eq!(
                after(&pg, signal, false, lease),
                expected,
                "{pg:?} standby.signal={signal} lease={lease:?}"
            );
        }
    }

    #[test]
    fn a_server_asked_to_promote_is_guarded_while_still_in_recovery() {
        // Measured in the whole-loop simulation (seed 256340): the agent
        // died during pg_promote, its successor saw "in recovery",
        // disarmed and released, and the promotion then finished unguarded.
        let end = Instant::now() + Duration::from_secs(8);
        let standby = Postgres::Running { in_recovery: true };
        assert_eq!(
            after(&standby, true, true, Some(end)),
            GuardCommand::Arm(end)
        );
        assert_eq!(after(&standby, true, true, None), GuardCommand::Keep);
        assert_eq!(
            after(&Postgres::Starting, true, true, None),
            GuardCommand::Keep
        );
        // Finished (or never asked): the usual evidence.
        assert_eq!(
            after(
                &Postgres::Running { in_recovery: false },
                false,
                true,
                Some(end)
            ),
            GuardCommand::Arm(end)
        );
        assert_eq!(
            after(&standby, true, false, Some(end)),
            GuardCommand::Disarm
        );
        let stopped = Postgres::NotRunning {
            crash_backoff: false,
        };
        assert_eq!(after(&stopped, true, true, Some(end)), GuardCommand::Disarm);
    }
}

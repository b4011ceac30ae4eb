//! The chaos run's short schedules, as CI runs them: the same runner as
//! `target/debug/chaos` (docs/reliability.md has the long run), on a fixed
//! seed each so that a red run is replayed by the command it prints.

use std::time::Duration;

use pgwarden_tests::chaos::{run, Options};
use pgwarden_tests::netns::or_skip;
use pgwarden_tests::require_root;

fn options(seed: u64, faults: usize, witness: bool, quorum: bool) -> Options {
    Options {
        seed,
        faults,
        witness,
        quorum,
        ttl: Duration::from_secs(3),
        loop_wait: Duration::from_millis(500),
        converge_within: Duration::from_secs(90),
        kinds: Vec::new(),
        verbose: true,
    }
}

fn chaos(test: &str, o: Options) {
    if !require_root(test) {
        return;
    }
    let Some(report) = or_skip(test, run(&o)) else {
        return;
    };
    let summary = report.summary(&o);
    eprintln!("{summary}");
    assert!(
        report.violations.is_empty(),
        "{test}: invariants broken\n{summary}"
    );
    assert_eq!(report.done, o.faults, "{test}: not every fault ran");
    assert!(report.acked > 0, "{test}: the writer acknowledged nothing");
    assert_eq!(
        report.convergence.len(),
        o.faults,
        "{test}: a fault without a convergence time"
    );
}

#[test]
fn given_twenty_random_faults_on_three_members_in_quorum_mode_then_no_acknowledged_write_is_lost_and_never_two_primaries(
) {
    chaos(
        "chaos, three data members, quorum",
        options(14, 20, false, true),
    );
}

#[test]
fn given_ten_random_faults_on_two_members_and_a_witness_then_never_two_primaries_and_it_converges()
{
    chaos(
        "chaos, two data members and a witness",
        options(15, 10, true, false),
    );
}

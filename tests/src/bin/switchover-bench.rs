//! The switchover benchmark: how long writes are unavailable when an
//! operator moves the primary (`POST /switchover`), from the last write the
//! old primary accepted to the first the new one accepted, under the
//! writer; and that no acknowledged write is lost and nobody rewinds.
//!
//! Run as root: `cargo run -p pgwarden-tests --bin switchover-bench -- --runs 7`
//! (build the agent first: `cargo build -p pgwarden`). One three-node
//! cluster; each run switches over from the current primary to the best
//! standby.

use pgwarden_tests::bench::switchover::switchovers;
use pgwarden_tests::bench::{bench_args, print_stats};
use pgwarden_tests::*;

fn main() {
    let a = bench_args("switchover-bench", 7, &[]);
    if !require_root("switchover-bench") {
        std::process::exit(1);
    }
    println!(
        "switchover benchmark: {} switchovers, ttl {}, loop_wait {}",
        a.runs, a.ttl, a.loop_wait
    );
    let mut s = switchovers(a.runs, &a.ttl, &a.loop_wait);
    println!();
    print_stats(
        "write-unavailable: last old write -> first new (s)",
        &mut s.windows,
    );
    print_stats("POST /switchover answered after (s)", &mut s.answers);
    println!(
        "acknowledged writes lost: {} of {}; overlapping writable members: {}; members that ran pg_rewind: {:?}",
        s.missing.len(),
        s.acknowledged,
        s.overlaps,
        s.rewinds
    );
    if !s.missing.is_empty() || s.overlaps > 0 {
        std::process::exit(1);
    }
}

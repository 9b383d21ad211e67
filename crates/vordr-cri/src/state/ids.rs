//! Ids and clocks: the ids Vordr gives pods, containers and execs, and the
//! nanosecond timestamps CRI reports.

use std::time::{SystemTime, UNIX_EPOCH};

/// A new random 64-hex-digit id, as containerd and CRI-O use.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the kernel's random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A short id for an exec process (16 hex digits).
pub fn new_exec_id() -> String {
    new_id()[..16].to_string()
}

/// Now, in nanoseconds since the epoch (CRI's timestamps).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

//! Links the shim as a position-dependent executable: its relocations are
//! resolved at link time, so its read-only data stays clean file pages that
//! many shims share, instead of private copies relocated in each process.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}

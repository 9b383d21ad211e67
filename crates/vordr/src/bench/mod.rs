//! `vordr bench`: drives any CRI endpoint through the pod sandbox lifecycle,
//! image pulls and image queries, and prints median and p90 per RPC; with
//! `--compare`, a second endpoint (containerd, say) in the same run, and the
//! ratio between them.

mod args;
mod lifecycle;
mod memory;
mod report;
mod run;
mod streaming;

pub use args::BenchArgs;
pub use report::quantile_ms;
pub use run::run;

//! The `vordr` binary: `vordr serve` runs the CRI daemon; the other
//! commands are operator tools that speak CRI to a running endpoint.

mod bench;
mod bench_gatekeeper;
mod cli;
mod doctor;
mod install;
mod mcp;
mod sd_notify;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> Result<()> {
    // Before any thread starts: the variable leaves the environment.
    let notifier = sd_notify::Notifier::from_env();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => rt.block_on(cli::serve(args, notifier)),
        Command::Version(args) => rt.block_on(cli::version(args)),
        Command::Info(args) => rt.block_on(cli::info(args)),
        Command::Pods(a) => cli::exit(rt.block_on(cli::ps::pods_cmd(a))),
        Command::Ps(a) => cli::exit(rt.block_on(cli::ps::cmd(a))),
        Command::Run(a) => cli::exit(rt.block_on(cli::run::cmd(a))),
        Command::Exec(a) => cli::exit(rt.block_on(cli::exec::cmd(a))),
        Command::Logs(a) => cli::exit(rt.block_on(cli::logs::cmd(a))),
        Command::Inspect(a) => cli::exit(rt.block_on(cli::inspect::cmd(a))),
        Command::Stop(a) => cli::exit(rt.block_on(cli::stop::cmd(a))),
        Command::Rm(a) => cli::exit(rt.block_on(cli::rm::cmd(a))),
        Command::Stats(a) => cli::exit(rt.block_on(cli::stats::cmd(a))),
        Command::Pull(a) => cli::exit(rt.block_on(cli::images::pull_cmd(a))),
        Command::Images(a) => cli::exit(rt.block_on(cli::images::cmd(a))),
        Command::Rmi(a) => cli::exit(rt.block_on(cli::images::rmi_cmd(a))),
        Command::Bench(args) => rt.block_on(bench::run(args)),
        Command::Audit(args) => cli::audit(args),
        Command::BenchGatekeeper(args) => bench_gatekeeper::run(args),
        Command::Install(args) => rt.block_on(install::install(args)),
        Command::Uninstall(args) => rt.block_on(install::uninstall(args)),
        Command::Doctor(a) => cli::exit(doctor::cmd(a)),
        Command::Mcp(a) => cli::exit(rt.block_on(mcp::serve(a))),
        Command::Config => {
            print!("{}", vordr_config::EMBEDDED_DEFAULT);
            Ok(())
        }
    }
}

//! `vordr exec`: a command in a running container. Its output streams
//! through the runtime's Exec URL (with `-t` on a terminal, with `-i` fed
//! from stdin); `vordr exec` exits with the command's exit code. With
//! `--json` it runs through ExecSync and prints the captured output.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, stream, CriClient};

use super::common::{self, Common, Rpc};
use super::term;

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub common: Common,
    /// Feed stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// With --json: seconds before the command is killed (0: none).
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// The container (id, id prefix or name; a pod with one container).
    pub id: String,
    /// The command and its arguments (after `--` when they start with -).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// What a command run to completion produced.
#[derive(Debug, Clone, Serialize)]
pub struct ExecResult {
    pub container_id: String,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in container `query` through ExecSync and captures its
/// output (`timeout` seconds at most; 0 for none).
pub async fn exec_sync(
    c: &mut CriClient,
    query: &str,
    cmd: &[String],
    timeout: i64,
) -> Result<ExecResult> {
    let k = common::resolve_container(c, query).await?;
    let r = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: k.id.clone(),
            cmd: cmd.to_vec(),
            timeout,
        })
        .await
        .rpc(&format!("running {:?} in {}", cmd.join(" "), k.name))?;
    Ok(ExecResult {
        container_id: k.id,
        exit_code: r.exit_code,
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
    })
}

/// Runs a streaming session on `url` with this terminal: stdin when
/// `interactive` (raw when a terminal), resizes when `tty`. The outcome.
pub async fn attach_terminal(url: &str, interactive: bool, tty: bool) -> Result<stream::Outcome> {
    let _raw = (interactive && tty).then(term::RawMode::enter);
    let resize = tty.then(term::sizes);
    let stdin = interactive.then(tokio::io::stdin);
    let outcome = stream::session(url, stdin, tokio::io::stdout(), tokio::io::stderr(), resize)
        .await
        .context("streaming")?;
    Ok(outcome)
}

pub async fn cmd(a: ExecArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    if a.common.json {
        let r = exec_sync(&mut c, &a.id, &a.cmd, a.timeout).await?;
        common::print_json(&r)?;
        return Ok(r.exit_code);
    }
    let k = common::resolve_container(&mut c, &a.id).await?;
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: k.id.clone(),
            cmd: a.cmd.clone(),
            tty: a.tty,
            stdin: a.interactive,
            stdout: true,
            // A terminal merges stderr into stdout.
            stderr: !a.tty,
        })
        .await
        .rpc(&format!("exec in {} ({})", k.name, common::short(&k.id)))?
        .url;
    let outcome = attach_terminal(&url, a.interactive, a.tty).await?;
    if let Some(code) = outcome.exit_code {
        return Ok(code);
    }
    match outcome.failure() {
        Some(m) => anyhow::bail!("exec in {}: {m}", k.name),
        None => anyhow::bail!(
            "exec in {}: the session ended without an exit code ({:?})",
            k.name,
            outcome.status
        ),
    }
}

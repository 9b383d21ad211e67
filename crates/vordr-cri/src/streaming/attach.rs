//! An attach for the streaming server: the shim's attach socket carries the
//! container's output (framed by stream) and takes its stdin; a terminal
//! container is resized through ResizePty.

use tokio::io::AsyncReadExt;
use vordr_shim_api::attach_frame;
use vordr_streaming::{ExecIo, ExecTarget};

use super::input::feed;
use crate::container::shim_of;
use crate::state::Runtime;

/// Follows the container through its shim's attach socket until its
/// output ends or the client leaves.
pub async fn run(rt: &Runtime, t: &ExecTarget, io: ExecIo) -> Result<(), String> {
    let c = rt
        .running_container(&t.container_id)
        .map_err(|s| s.message().to_string())?;
    let sock = rt.layout.attach_socket(&c.id);
    let conn = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| format!("attaching to container {}: {e}", c.id))?;
    let (mut r, w) = conn.into_split();
    // Dropping the writer closes the container's stdin (stdin_once): only
    // the client closing its stdin does; without stdin it stays open.
    let (stdin, _writer) = match io.stdin {
        Some(rx) => (Some((rx, w)), None),
        None => (None, Some(w)),
    };
    let input = if stdin.is_some() || io.resize.is_some() {
        let shim = shim_of(&c).await.map_err(|s| s.message().to_string())?;
        Some(tokio::spawn(feed(stdin, io.resize, shim, String::new())))
    } else {
        None
    };
    let (stdout, stderr) = (io.stdout, io.stderr);
    loop {
        let mut head = [0u8; attach_frame::HEADER_LEN];
        if r.read_exact(&mut head).await.is_err() {
            break;
        }
        let Some((stream, len)) = attach_frame::decode_header(&head) else {
            tracing::warn!(container = %c.id, "attach: a frame over the size cap; detaching");
            break;
        };
        let mut data = vec![0u8; len];
        if r.read_exact(&mut data).await.is_err() {
            break;
        }
        let tx = match stream {
            attach_frame::STDOUT => stdout.as_ref(),
            attach_frame::STDERR => stderr.as_ref(),
            _ => None,
        };
        if let Some(tx) = tx {
            let _ = tx.send(data.into()).await;
        }
    }
    if let Some(input) = input {
        input.abort();
    }
    Ok(())
}

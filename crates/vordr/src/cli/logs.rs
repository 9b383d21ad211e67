//! `vordr logs`: a container's CRI log file (the path ContainerStatus
//! reports), partial records joined into lines; `--since`, `--tail`, and
//! `-f` following the growing file until the container exits.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use vordr_client::crilog::{self, LogLine, Reader, Stream};
use vordr_client::{cri, CriClient};

use super::common::{self, Common, Rpc};

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keep printing what the container writes, until it exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since this long ago (10s, 5m, 1h30m) or this RFC 3339 time.
    #[arg(long, value_name = "DURATION|RFC3339")]
    pub since: Option<String>,
    /// Only the last N lines (of those since --since).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Show each line's time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container (id, id prefix or name; a pod with one container).
    pub id: String,
}

/// `--since`: a duration before `now`, or an RFC 3339 time.
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    crilog::parse_time(s).ok_or_else(|| {
        anyhow::anyhow!(
            "--since '{s}' is neither a duration (10s, 5m, 1h) nor an RFC 3339 time (2026-01-02T15:04:05Z)"
        )
    })
}

/// A container's log: where it is and its lines.
#[derive(Debug, Clone, Serialize)]
pub struct Logs {
    pub container_id: String,
    pub log_path: String,
    pub lines: Vec<LogLine>,
}

/// The container's status (for its log path and state).
pub async fn status(c: &mut CriClient, id: &str) -> Result<cri::ContainerStatus> {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .rpc("reading the container's status")?
        .status
        .context("the runtime sent no status")
}

/// The lines of container `query`'s log since `since`, the last `tail`.
pub async fn logs(
    c: &mut CriClient,
    query: &str,
    since: Option<SystemTime>,
    tail: Option<usize>,
) -> Result<Logs> {
    let k = common::resolve_container(c, query).await?;
    let st = status(c, &k.id).await?;
    let mut f = LogFile::open(Path::new(&st.log_path))?;
    let lines = crilog::select(f.read_all()?, since, tail);
    Ok(Logs {
        container_id: k.id,
        log_path: st.log_path,
        lines,
    })
}

/// A log file read as it grows; reopened when it was rotated or cut.
pub struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    pos: u64,
    reader: Reader,
}

impl LogFile {
    pub fn open(path: &Path) -> Result<LogFile> {
        if path.as_os_str().is_empty() {
            anyhow::bail!("the container has no log file");
        }
        let mut f = LogFile {
            path: path.to_path_buf(),
            file: None,
            pos: 0,
            reader: Reader::new(),
        };
        f.reopen()
            .with_context(|| format!("opening the log {}", path.display()))?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        match std::fs::File::open(&self.path) {
            Ok(file) => {
                self.file = Some(file);
                self.pos = 0;
                Ok(())
            }
            // Not written yet (or between rotations): read nothing for now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.file = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The lines completed since the last read.
    pub fn read_new(&mut self) -> Result<Vec<LogLine>> {
        let mut out = Vec::new();
        if let Some(file) = self.file.as_mut() {
            let len = file.metadata()?.len();
            if len < self.pos {
                // Cut short (truncated): start over.
                self.pos = 0;
                self.reader = Reader::new();
            }
            file.seek(SeekFrom::Start(self.pos))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            self.pos += buf.len() as u64;
            out.extend(self.reader.feed(&buf));
        }
        // Rotated: the path now names another file. What the old one had
        // is read; go on with the new one.
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let open = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now != open {
            out.extend(self.reader.finish());
            self.reopen()?;
            self.reader = Reader::new();
            if self.file.is_some() {
                out.extend(self.read_new()?);
            }
        }
        Ok(out)
    }

    /// Everything in the file, a partial line at its end included.
    pub fn read_all(&mut self) -> Result<Vec<LogLine>> {
        let mut lines = self.read_new()?;
        lines.extend(self.reader.finish());
        Ok(lines)
    }

    /// Whatever is left once the writer is done.
    pub fn finish(&mut self) -> Result<Vec<LogLine>> {
        self.read_all()
    }
}

/// Prints a line to the stream it came from.
pub fn print_line(l: &LogLine, timestamps: bool) {
    use std::io::Write;
    let text = if timestamps {
        format!("{} {}\n", l.time, l.text)
    } else {
        format!("{}\n", l.text)
    };
    let _ = match l.stream {
        Stream::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|_| o.flush())
        }
        Stream::Stderr => std::io::stderr().write_all(text.as_bytes()),
    };
}

/// Whether container `id` has exited (or is gone).
pub async fn exited(c: &mut CriClient, id: &str) -> bool {
    match c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
    {
        Ok(r) => r.into_inner().status.is_none_or(|s| {
            s.state == cri::ContainerState::ContainerExited as i32
                || s.state == cri::ContainerState::ContainerUnknown as i32
        }),
        Err(s) => s.code() == tonic::Code::NotFound,
    }
}

/// Follows `file` from where it is, handing each line (since `since`) to
/// `out`, until container `id` exits; then reads what is left.
pub async fn follow(
    c: &mut CriClient,
    id: &str,
    file: &mut LogFile,
    since: Option<SystemTime>,
    mut out: impl FnMut(&LogLine),
) -> Result<()> {
    let mut emit = |lines: Vec<LogLine>| {
        for l in crilog::select(lines, since, None) {
            out(&l);
        }
    };
    let mut checked = std::time::Instant::now();
    loop {
        emit(file.read_new()?);
        if checked.elapsed() >= Duration::from_millis(250) {
            checked = std::time::Instant::now();
            if exited(c, id).await {
                // The shim has written everything before the exit is seen.
                emit(file.finish()?);
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn cmd(a: LogsArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let since = a
        .since
        .as_deref()
        .map(|s| parse_since(s, SystemTime::now()))
        .transpose()?;
    if !a.follow {
        let logs = logs(&mut c, &a.id, since, a.tail).await?;
        if a.common.json {
            common::print_json(&logs)?;
        } else {
            for l in &logs.lines {
                print_line(l, a.timestamps);
            }
        }
        return Ok(0);
    }
    let k = common::resolve_container(&mut c, &a.id).await?;
    let st = status(&mut c, &k.id).await?;
    let mut file = LogFile::open(Path::new(&st.log_path))?;
    // What is there already, selected; then everything new.
    let first = crilog::select(file.read_new()?, since, a.tail);
    let json = a.common.json;
    let show = |l: &LogLine| {
        if json {
            println!("{}", serde_json::to_string(l).unwrap_or_default());
        } else {
            print_line(l, a.timestamps);
        }
    };
    first.iter().for_each(&show);
    follow(&mut c, &k.id, &mut file, since, &show).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_durations_and_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_since("10s", now).unwrap(),
            now - Duration::from_secs(10)
        );
        assert_eq!(
            parse_since("1h30m", now).unwrap(),
            now - Duration::from_secs(5400)
        );
        assert_eq!(
            parse_since("1970-01-12T13:46:40Z", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
        );
        assert_eq!(
            parse_since("1970-01-12T14:46:40.5+01:00", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_500)
        );
        let e = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("neither a duration"), "{e}");
    }

    #[test]
    fn a_growing_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let append = |s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        // Not there yet: nothing, no error.
        let mut f = LogFile::open(&p).unwrap();
        assert!(f.read_new().unwrap().is_empty());
        append("2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:01Z stdout P tw");
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(f.read_new().unwrap()), ["one"]);
        append("o\n2026-01-01T00:00:02Z stdout F -and-more\n");
        assert_eq!(texts(f.read_new().unwrap()), ["two-and-more"]);
        assert!(f.read_new().unwrap().is_empty());
        // Rotated: the old file moves away, a new one starts.
        std::fs::rename(&p, dir.path().join("0.log.1")).unwrap();
        append("2026-01-01T00:00:03Z stderr F three\n");
        assert_eq!(texts(f.read_new().unwrap()), ["three"]);
        // Truncated in place.
        std::fs::write(&p, "").unwrap();
        append("2026-01-01T00:00:04Z stdout F four\n");
        assert_eq!(texts(f.read_new().unwrap()), ["four"]);
    }
}

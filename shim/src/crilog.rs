//! The CRI log format kubelet reads: one record per line,
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`. Lines longer than the
//! limit are cut into partial (`P`) records; the last piece is full (`F`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The log file, shared by the stdout and stderr copiers.
pub struct CriLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    max_line: usize,
}

impl CriLog {
    /// Opens (creating, appending) the log; a symlink at `path` is refused.
    pub fn open(path: &Path, max_line: usize) -> io::Result<Arc<CriLog>> {
        let file = open_log(path)?;
        Ok(Arc::new(CriLog {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            max_line: max_line.max(1),
        }))
    }

    /// Opens the file at the log path anew (after kubelet rotated it).
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_log(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        Ok(())
    }

    fn write_record(&self, stream: &str, partial: bool, content: &[u8]) {
        let mut rec = Vec::with_capacity(content.len() + 48);
        rec.extend_from_slice(rfc3339_nano(SystemTime::now()).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = guard.as_mut() {
            // A full disk must not stop the container: the record is lost.
            let _ = f.write_all(&rec);
        }
    }

    /// Copies `src` into the log as `stream` until end of file.
    pub fn copy(&self, stream: &str, mut src: impl Read) {
        let mut line: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&chunk[..i]);
                        self.flush_full(stream, &mut line);
                        chunk = &chunk[i + 1..];
                    }
                    None => {
                        line.extend_from_slice(chunk);
                        chunk = &[];
                    }
                }
                while line.len() > self.max_line {
                    let rest = line.split_off(self.max_line);
                    self.write_record(stream, true, &line);
                    line = rest;
                }
            }
        }
        if !line.is_empty() {
            self.flush_full(stream, &mut line);
        }
    }

    fn flush_full(&self, stream: &str, line: &mut Vec<u8>) {
        // Split an over-long line: all pieces but the last are partial.
        let mut rest: &[u8] = line;
        while rest.len() > self.max_line {
            self.write_record(stream, true, &rest[..self.max_line]);
            rest = &rest[self.max_line..];
        }
        self.write_record(stream, false, rest);
        line.clear();
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `2006-01-02T15:04:05.000000000Z` in UTC.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn records(max: usize, input: &[u8]) -> Vec<(String, String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = CriLog::open(&path, max).unwrap();
        log.copy("stdout", input);
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                    it.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn full_and_partial_lines() {
        let r = records(4, b"ab\n\nabcdefghij\nxy");
        let got: Vec<(&str, &str)> = r.iter().map(|(_, t, c)| (t.as_str(), c.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("F", "ab"),
                ("F", ""),
                ("P", "abcd"),
                ("P", "efgh"),
                ("F", "ij"),
                ("F", "xy"),
            ]
        );
        assert!(r.iter().all(|(s, _, _)| s == "stdout"));
    }

    #[test]
    fn exact_limit_is_one_full_record() {
        let r = records(4, b"abcd\n");
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].1.as_str(), r[0].2.as_str()), ("F", "abcd"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339_nano(t), "2024-02-29T12:34:56.000000005Z");
    }

    #[test]
    fn symlinked_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("0.log")).unwrap();
        assert!(CriLog::open(&dir.path().join("0.log"), 16).is_err());
    }
}

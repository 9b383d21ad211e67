//! Reading the CRI log format kubelet reads and the shim writes: one
//! record per line, `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`;
//! a long line is cut into partial (`P`) records ended by a full (`F`) one.
//! [`Reader`] turns bytes of a log file (read in any pieces) into whole
//! lines, partial records joined.

use std::time::SystemTime;

use serde::Serialize;

/// The stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One record of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The time as written (RFC 3339 with nanoseconds).
    pub time: &'a str,
    pub stream: Stream,
    /// A `P` record: the line goes on in the next record of its stream.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one record (without its newline); `None` for a malformed one.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    // An empty full line may be written without the space before it.
    let content = parts.next().unwrap_or_default();
    if time.is_empty() {
        return None;
    }
    Some(Record {
        time,
        stream,
        partial,
        content,
    })
}

/// A whole line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// The time of its first record, as written.
    pub time: String,
    pub stream: Stream,
    /// The line without its newline (invalid UTF-8 replaced).
    pub text: String,
}

impl LogLine {
    /// The line's time, if it parses.
    pub fn system_time(&self) -> Option<SystemTime> {
        parse_time(&self.time)
    }
}

/// An RFC 3339 time (any offset, any fraction) as a `SystemTime`.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// Turns bytes of a log file, fed in any pieces, into whole lines.
#[derive(Debug, Default)]
pub struct Reader {
    /// Bytes after the last newline seen.
    pending: Vec<u8>,
    /// A line being joined from partial records, per stream.
    open: [Option<(String, Vec<u8>)>; 2],
    /// Records that did not parse.
    pub malformed: u64,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Feeds the next bytes; returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let rec = self.pending[start..end].to_vec();
            self.record(&rec, &mut out);
            start = end + 1;
        }
        self.pending.drain(..start);
        out
    }

    /// The lines still open at the end of the file (a last record without
    /// its newline, a partial record never completed), flushed as they are.
    pub fn finish(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        let last = std::mem::take(&mut self.pending);
        self.record(&last, &mut out);
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some((time, text)) = self.open[i].take() {
                out.push(line(time, stream, &text));
            }
        }
        out
    }

    fn record(&mut self, rec: &[u8], out: &mut Vec<LogLine>) {
        let Some(r) = parse_record(rec) else {
            if !rec.is_empty() {
                self.malformed += 1;
            }
            return;
        };
        let slot = &mut self.open[r.stream as usize];
        let (time, mut text) = slot
            .take()
            .unwrap_or_else(|| (r.time.to_string(), Vec::new()));
        text.extend_from_slice(r.content);
        if r.partial {
            *slot = Some((time, text));
        } else {
            out.push(line(time, r.stream, &text));
        }
    }
}

fn line(time: String, stream: Stream, text: &[u8]) -> LogLine {
    LogLine {
        time,
        stream,
        text: String::from_utf8_lossy(text).into_owned(),
    }
}

/// Every whole line of a log file's contents.
pub fn parse(bytes: &[u8]) -> Vec<LogLine> {
    let mut r = Reader::new();
    let mut lines = r.feed(bytes);
    lines.extend(r.finish());
    lines
}

/// The lines at or after `since` (all when `None`), then the last `tail`
/// of those (all when `None`).
pub fn select(lines: Vec<LogLine>, since: Option<SystemTime>, tail: Option<usize>) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = match since {
        Some(t) => lines
            .into_iter()
            .filter(|l| l.system_time().is_none_or(|lt| lt >= t))
            .collect(),
        None => lines,
    };
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn records() {
        let r = parse_record(b"2026-12-01T19:49:23.123456789Z stdout F hello world").unwrap();
        assert_eq!(r.time, "2026-12-01T19:49:23.123456789Z");
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, b"hello world");
        let r = parse_record(b"2026-12-01T19:49:23Z stderr P  two  spaces ").unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.content, b" two  spaces ");
        // An empty line, with or without the separator.
        assert_eq!(parse_record(b"t stdout F ").unwrap().content, b"");
        assert_eq!(parse_record(b"t stdout F").unwrap().content, b"");
        for bad in [
            &b""[..],
            b"t",
            b"t stdin F x",
            b"t stdout X x",
            b" stdout F x",
        ] {
            assert!(parse_record(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn partial_records_join_per_stream_across_reads() {
        let log = "2026-01-01T00:00:01Z stdout P abc\n\
                   2026-01-01T00:00:02Z stderr F oops\n\
                   2026-01-01T00:00:03Z stdout P def\n\
                   2026-01-01T00:00:04Z stdout F ghi\n\
                   garbage\n\
                   2026-01-01T00:00:05Z stdout F \n\
                   2026-01-01T00:00:06Z stdout P dangling";
        // Fed whole or a byte at a time, the same lines.
        let whole = parse(log.as_bytes());
        let mut r = Reader::new();
        let mut bytewise = Vec::new();
        for b in log.as_bytes() {
            bytewise.extend(r.feed(std::slice::from_ref(b)));
        }
        // The last record has no newline yet: still pending, not a line.
        assert_eq!(bytewise.len(), 3);
        assert_eq!(r.malformed, 1);
        r.feed(b"\n");
        bytewise.extend(r.finish());
        assert_eq!(whole, bytewise);
        let texts: Vec<(&str, Stream, &str)> = whole
            .iter()
            .map(|l| (l.time.as_str(), l.stream, l.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("2026-01-01T00:00:02Z", Stream::Stderr, "oops"),
                ("2026-01-01T00:00:01Z", Stream::Stdout, "abcdefghi"),
                ("2026-01-01T00:00:05Z", Stream::Stdout, ""),
                ("2026-01-01T00:00:06Z", Stream::Stdout, "dangling"),
            ]
        );
    }

    #[test]
    fn since_and_tail() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let lines: Vec<LogLine> = (0..5)
            .map(|i| LogLine {
                time: chrono::DateTime::<chrono::Utc>::from(at(i))
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                stream: Stream::Stdout,
                text: format!("l{i}"),
            })
            .collect();
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(select(lines.clone(), None, Some(2))), ["l3", "l4"]);
        assert_eq!(
            texts(select(lines.clone(), Some(at(3)), None)),
            ["l3", "l4"]
        );
        assert_eq!(texts(select(lines.clone(), Some(at(1)), Some(1))), ["l4"]);
        assert_eq!(
            texts(select(lines.clone(), None, Some(0))),
            Vec::<String>::new()
        );
        assert_eq!(select(lines.clone(), None, None).len(), 5);
        // Offsets other than Z.
        assert_eq!(
            parse_time("2023-11-14T23:13:21+01:00"),
            parse_time("2023-11-14T22:13:21Z")
        );
        assert!(parse_time("yesterday").is_none());
    }
}

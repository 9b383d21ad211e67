//! Keeps the shim's resident set small. A shim idles for the container's
//! whole life, yet starting it touched code it will not run again, and the
//! kernel maps file pages 64 KiB at a time around each fault. Once serving,
//! the shim tells the kernel to read its code one page at a time and drops
//! the read-only file pages it holds: they stay in the page cache, shared,
//! and come back on demand.

/// A mapping of a file that is only ever read: code, or read-only data
/// without private dirty pages (not the relocated RELRO segment).
struct Droppable {
    start: usize,
    len: usize,
}

/// Reads /proc/self/smaps once and picks the mappings that can be dropped.
fn droppable(smaps: &str) -> Vec<Droppable> {
    let mut out = Vec::new();
    // (start, end, executable) of the file mapping being read.
    let mut current: Option<(usize, usize, bool)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            current = match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(s), Ok(e)) if path.starts_with('/') && (perms == "r-xp" || perms == "r--p") => {
                    Some((s, e, perms == "r-xp"))
                }
                _ => None,
            };
            continue;
        }
        if let (Some((start, end, exec)), Some(v)) = (current, line.strip_prefix("Private_Dirty:"))
        {
            let clean = v.trim().trim_end_matches("kB").trim() == "0";
            if exec || clean {
                out.push(Droppable {
                    start,
                    len: end - start,
                });
            }
            current = None;
        }
    }
    out
}

pub fn trim_working_set() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for m in droppable(&smaps) {
        // SAFETY: these pages are file-backed and unmodified; dropping them
        // only makes the next access read them from the file again.
        unsafe {
            let addr = m.start as *mut libc::c_void;
            libc::madvise(addr, m.len, libc::MADV_RANDOM);
            libc::madvise(addr, m.len, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::droppable;

    #[test]
    fn picks_code_and_clean_read_only_file_mappings() {
        let smaps = "\
1000-3000 r--p 00000000 fe:00 1 /bin/shim
Rss:                   8 kB
Private_Dirty:         0 kB
3000-9000 r-xp 00002000 fe:00 1 /bin/shim
Private_Dirty:         0 kB
9000-a000 r--p 00008000 fe:00 1 /bin/shim
Private_Dirty:         4 kB
a000-b000 rw-p 00009000 fe:00 1 /bin/shim
Private_Dirty:         4 kB
c000-d000 r--p 00000000 00:00 0 
Private_Dirty:         0 kB
e000-f000 rw-p 00000000 00:00 0 [heap]
Private_Dirty:         4 kB
";
        let got: Vec<(usize, usize)> = droppable(smaps).iter().map(|m| (m.start, m.len)).collect();
        assert_eq!(got, vec![(0x1000, 0x2000), (0x3000, 0x6000)]);
    }
}

//! Keeps the shim's resident set small. A shim idles for the container's
//! whole life, yet starting it touched code it will not run again, and the
//! kernel maps file pages 64 KiB at a time around each fault. Once serving,
//! the shim tells the kernel to read its code one page at a time and drops
//! the read-only file pages it holds: they stay in the page cache, shared,
//! and come back on demand.

/// Applies to mappings of files that are only ever read (code and read-only
/// data never written by relocation): their pages can be dropped and read
/// again from the file at any time.
pub fn trim_working_set() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if inode == "0" || !path.starts_with('/') {
            continue;
        }
        // Executable text, or read-only and never written; not the RELRO
        // segment, whose relocated pages exist only in memory.
        if perms != "r-xp" && !(perms == "r--p" && clean(line)) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        // SAFETY: these pages are file-backed and unmodified; dropping them
        // only makes the next access read them from the file again.
        unsafe {
            let addr = start as *mut libc::c_void;
            libc::madvise(addr, end - start, libc::MADV_RANDOM);
            libc::madvise(addr, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Whether the mapping starting `maps_line` has no private dirty pages.
fn clean(maps_line: &str) -> bool {
    let Some(range) = maps_line.split_whitespace().next() else {
        return false;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return false;
    };
    let mut in_it = false;
    for l in smaps.lines() {
        if l.split_whitespace()
            .next()
            .is_some_and(|r| r.contains('-') && !r.ends_with(':'))
        {
            in_it = l.starts_with(range);
            continue;
        }
        if in_it {
            if let Some(v) = l.strip_prefix("Private_Dirty:") {
                return v.trim().trim_end_matches("kB").trim() == "0";
            }
        }
    }
    false
}

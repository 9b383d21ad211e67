//! The program to execute, looked up like `execvp` in the process's PATH (not the helper's).

use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::ChildError;

/// Used when the process's environment has no PATH (glibc's `execvp` default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// `execvp`-like lookup in the process's PATH (not ours). 127 if nothing is found, 126 if only
/// non-executable candidates are.
pub(super) fn resolve_program(
    program: &str,
    path_var: Option<&str>,
) -> Result<CString, ChildError> {
    let not_found = |what: String| ChildError {
        code: 127,
        msg: what,
    };
    let denied = |what: String| ChildError {
        code: 126,
        msg: what,
    };
    if program.contains('/') {
        return match executable(Path::new(program)) {
            Ok(()) => Ok(CString::new(program).expect("validated before the fork")),
            Err(e) if is_not_found(&e) => Err(not_found(format!("exec {program:?}: {e}"))),
            Err(e) => Err(denied(format!("exec {program:?}: {e}"))),
        };
    }
    let mut denied_candidate = None;
    for dir in path_var.unwrap_or(DEFAULT_PATH).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        match executable(&candidate) {
            Ok(()) => {
                return Ok(
                    CString::new(candidate.into_os_string().into_encoded_bytes())
                        .expect("no NUL in PATH entries or args"),
                )
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                denied_candidate.get_or_insert(format!("exec {}: {e}", candidate.display()));
            }
        }
    }
    match denied_candidate {
        Some(msg) => Err(denied(msg)),
        None => Err(not_found(format!(
            "exec {program:?}: executable file not found in $PATH"
        ))),
    }
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid path; AT_EACCESS checks with the effective ids we will exec with.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! CheckpointContainer's pieces: whether criu can run on this node, the
//! archive's target opened once, and the archive itself. The archive has
//! the layout CRI-O's checkpoint archives have (and checkpointctl reads):
//! `checkpoint/` (criu's images and `dump.log`), `config.dump` (what the
//! container was), `spec.dump` (its OCI spec), `rootfs-diff.tar` (what the
//! container wrote to its writable layer) and `deleted.files` (what it
//! deleted from the image).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;
use tonic::Status;
use vordr_store::ContainerRecord;

/// How long a checkpoint may take when the request gives no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest timeout a request may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long `criu check` may take.
const CRIU_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Where criu's images go in the archive (and in the staging directory).
pub const IMAGES_DIR: &str = "checkpoint";

/// Whether criu can checkpoint here: it is installed and `criu check`
/// passes on this kernel. A success is remembered; a failure is checked
/// again at the next request (criu may have been installed meanwhile).
pub async fn criu_ready() -> Result<(), Status> {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY.get_or_try_init(check_criu).await.map(|_| ())
}

async fn check_criu() -> Result<(), Status> {
    let unavailable =
        |why: String| Status::failed_precondition(format!("checkpointing needs criu, and {why}"));
    let run = tokio::process::Command::new("criu")
        .arg("check")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(CRIU_CHECK_TIMEOUT, run).await {
        Err(_) => return Err(unavailable("`criu check` did not answer in 20 s".into())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unavailable(
                "criu is not installed (Debian's package criu)".into(),
            ))
        }
        Ok(Err(e)) => return Err(unavailable(format!("running criu failed: {e}"))),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    Err(unavailable(format!(
        "`criu check` fails on this node: {}",
        criu_complaint(&out.stderr, &out.stdout)
    )))
}

/// criu's first error line (its reason), or the end of what it printed.
fn criu_complaint(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    let line = text
        .lines()
        .find(|l| l.starts_with("Error"))
        .or_else(|| text.lines().rfind(|l| !l.trim().is_empty()))
        .unwrap_or("no output");
    line.chars().take(300).collect()
}

/// The request's timeout: its seconds, or the default for 0; capped.
pub fn timeout(seconds: i64) -> Result<Duration, Status> {
    if seconds < 0 {
        return Err(Status::invalid_argument(format!(
            "timeout: {seconds} is negative"
        )));
    }
    Ok(match seconds {
        0 => DEFAULT_TIMEOUT,
        s => Duration::from_secs(s as u64).min(MAX_TIMEOUT),
    })
}

/// `location` checked: an absolute path naming a file (its directory and
/// its file name), with no `..` anywhere.
pub fn parse_location(location: &str) -> Result<(PathBuf, CString), Status> {
    let bad = |why: &str| Status::invalid_argument(format!("location {location:?}: {why}"));
    if location.is_empty() {
        return Err(bad("empty (the archive to write is required)"));
    }
    if location.len() > 4096 || location.contains('\0') {
        return Err(bad("not a path"));
    }
    let path = Path::new(location);
    if !path.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    if location.ends_with('/') {
        return Err(bad("names a directory, not the archive file"));
    }
    if location.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad("has . or .. in it"));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(bad("has no file name"));
    };
    let name = CString::new(name.as_encoded_bytes()).map_err(|_| bad("not a path"))?;
    Ok((dir.to_path_buf(), name))
}

/// The archive file, created new (0600, never through a symlink, never
/// over an existing file) in its directory opened once; removed again
/// unless [`Target::keep`] is called.
pub struct Target {
    dir: OwnedFd,
    name: CString,
    pub file: File,
    kept: bool,
}

impl Target {
    pub fn create(dir: &Path, name: &CString) -> Result<Target, Status> {
        let shown = dir.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let cdir = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| Status::invalid_argument("location: not a path"))?;
        // SAFETY: plain syscalls on NUL-terminated paths; the results are
        // checked and owned at once.
        let dfd = unsafe {
            libc::open(
                cdir.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if dfd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(Status::failed_precondition(format!(
                "location's directory {}: {e}",
                dir.display()
            )));
        }
        let dir_fd = unsafe { OwnedFd::from_raw_fd(dfd) };
        let fd = unsafe {
            libc::openat(
                dir_fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => {
                    Status::already_exists(format!("location {}: already exists", shown.display()))
                }
                _ => Status::failed_precondition(format!("location {}: {e}", shown.display())),
            });
        }
        Ok(Target {
            dir: dir_fd,
            name: name.clone(),
            file: unsafe { File::from_raw_fd(fd) },
            kept: false,
        })
    }

    /// The archive is complete: flushed to disk and kept.
    pub fn keep(mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.kept {
            // SAFETY: unlinks the name this Target created, in the
            // directory it was created in.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
        }
    }
}

/// `config.dump`: what the container was, in the field names
/// checkpointctl reads.
pub fn config_dump(c: &ContainerRecord, runtime: &str, now: SystemTime) -> serde_json::Value {
    let created = SystemTime::UNIX_EPOCH + Duration::from_nanos(c.created_at.max(0) as u64);
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "rootfsImage": c.image_ref,
        "rootfsImageRef": c.image_id,
        "rootfsImageName": c.image_ref,
        "runtime": runtime,
        "createdTime": humantime::format_rfc3339_nanos(created).to_string(),
        "checkpointedTime": humantime::format_rfc3339_nanos(now).to_string(),
        "restoredTime": "0001-01-01T00:00:00Z",
        "restored": false,
    })
}

/// Writes `rootfs-diff.tar` (every file, directory and link the container
/// wrote to `upper`) and `deleted.files` (a JSON list of the image paths it
/// deleted: overlayfs whiteouts) into `staging`.
pub fn write_rootfs_diff(upper: &Path, staging: &Path) -> std::io::Result<()> {
    let out = File::create(staging.join("rootfs-diff.tar"))?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut deleted = Vec::new();
    if upper.is_dir() {
        add_tree(&mut tar, upper, Path::new(""), &mut deleted)?;
    }
    tar.into_inner()?.sync_all()?;
    deleted.sort();
    std::fs::write(
        staging.join("deleted.files"),
        serde_json::to_vec(&deleted).expect("JSON of strings"),
    )
}

fn add_tree(
    tar: &mut tar::Builder<File>,
    dir: &Path,
    rel: &Path,
    deleted: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        // overlayfs marks a file deleted from a lower layer with a 0:0
        // character device of the same name.
        if ft.is_char_device() && meta.rdev() == 0 {
            deleted.push(name.display().to_string());
            continue;
        }
        tar.append_path_with_name(&path, &name)?;
        if ft.is_dir() {
            add_tree(tar, &path, &name, deleted)?;
        }
    }
    Ok(())
}

/// Writes the archive: every file and directory of `staging`, at the
/// archive's top level, uncompressed (as CRI-O writes it).
pub fn write_archive(staging: &Path, file: &File) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    let mut entries: Vec<_> = std::fs::read_dir(staging)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = PathBuf::from(e.file_name());
        if e.file_type()?.is_dir() {
            tar.append_dir_all(&name, e.path())?;
        } else {
            tar.append_path_with_name(e.path(), &name)?;
        }
    }
    tar.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_absolute_file_paths_without_dots() {
        let (dir, name) = parse_location("/var/lib/kubelet/checkpoints/c.tar").unwrap();
        assert_eq!(dir, Path::new("/var/lib/kubelet/checkpoints"));
        assert_eq!(name.to_str().unwrap(), "c.tar");
        for bad in [
            "",
            "c.tar",
            "./c.tar",
            "/a/../c.tar",
            "/a/./c.tar",
            "/a/",
            "/",
            "/a\0b",
        ] {
            let e = parse_location(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(e.message().starts_with("location"), "{}", e.message());
        }
    }

    #[test]
    fn timeouts_default_and_cap() {
        assert_eq!(timeout(0).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(timeout(7).unwrap(), Duration::from_secs(7));
        assert_eq!(timeout(i64::MAX).unwrap(), MAX_TIMEOUT);
        assert_eq!(
            timeout(-1).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn the_target_is_new_private_and_gone_unless_kept() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let name = CString::new("a.tar").unwrap();
        let t = Target::create(d.path(), &name).unwrap();
        let mode = std::fs::metadata(d.path().join("a.tar"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            Target::create(d.path(), &name).err().unwrap().code(),
            tonic::Code::AlreadyExists
        );
        drop(t);
        assert!(!d.path().join("a.tar").exists());
        // Never through a symlink, even a dangling one.
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("a.tar")).unwrap();
        assert!(Target::create(d.path(), &name).is_err());
        assert!(!d.path().join("elsewhere").exists());
        let name = CString::new("b.tar").unwrap();
        Target::create(d.path(), &name).unwrap().keep().unwrap();
        assert!(d.path().join("b.tar").exists());
    }

    #[test]
    fn the_rootfs_diff_has_the_writes_and_lists_the_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("upper");
        std::fs::create_dir_all(upper.join("etc/app")).unwrap();
        std::fs::write(upper.join("etc/app/conf"), b"x=1").unwrap();
        std::os::unix::fs::symlink("conf", upper.join("etc/app/link")).unwrap();
        // A whiteout: what overlayfs leaves for `rm /etc/passwd`.
        let wh = CString::new(upper.join("etc/passwd").as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR | 0o600, 0) },
            0
        );
        let staging = d.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        write_rootfs_diff(&upper, &staging).unwrap();
        let deleted: Vec<String> =
            serde_json::from_slice(&std::fs::read(staging.join("deleted.files")).unwrap()).unwrap();
        assert_eq!(deleted, ["etc/passwd"]);
        let mut names = Vec::new();
        let f = File::open(staging.join("rootfs-diff.tar")).unwrap();
        for e in tar::Archive::new(f).entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["etc", "etc/app", "etc/app/conf", "etc/app/link"]);
    }

    #[test]
    fn criu_complaints_are_its_first_error() {
        let err = b"Warn (x): y\nError (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\nError (z): w\n";
        assert_eq!(
            criu_complaint(err, b""),
            "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
        );
        assert_eq!(criu_complaint(b"", b"Looks good.\n"), "Looks good.");
    }
}

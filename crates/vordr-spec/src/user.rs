//! The container's uid, gid and additional gids, resolved against the
//! rootfs's `/etc/passwd` and `/etc/group` like containerd's `WithUser`,
//! `WithAdditionalGIDs` and `WithSupplementalGroups`, under the config's
//! `supplemental_groups_policy` (KEP-3619): Merge (the default) adds the
//! groups the image's `/etc/group` lists the user in, Strict does not.
//!
//! The two files are opened with every symlink and `..` resolved as if the
//! rootfs were `/` (openat2 `RESOLVE_IN_ROOT`, or a component-wise walk on
//! kernels without openat2), so an image cannot point them at host files.

use std::cell::OnceCell;
use std::collections::{BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::{invalid, io_error, ImageConfig, SpecError};

/// Largest /etc/passwd or /etc/group read from a rootfs.
const MAX_DB_FILE: u64 = 16 << 20;
/// Symlinks followed while resolving one path without openat2 (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;
/// Largest uid/gid containerd (and runc) accepts.
const MAX_ID: i64 = i32::MAX as i64;

/// The resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates, always holding `gid`.
    pub additional_gids: Vec<u32>,
}

/// One /etc/passwd line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One /etc/group line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Resolves the user of a container whose rootfs is `rootfs`.
pub(crate) fn resolve(
    rootfs: &Path,
    sc: &LinuxContainerSecurityContext,
    image: &ImageConfig,
) -> Result<ResolvedUser, SpecError> {
    let strict = match SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy) {
        Ok(SupplementalGroupsPolicy::Merge) => false,
        Ok(SupplementalGroupsPolicy::Strict) => true,
        Err(_) => {
            return Err(invalid(
                "linux.security_context.supplemental_groups_policy",
                format!(
                    "{} is not a SupplementalGroupsPolicy (Merge = 0, Strict = 1)",
                    sc.supplemental_groups_policy
                ),
            ))
        }
    };
    let db = RootfsDb::new(rootfs);
    let (userstr, field) = user_string(sc, image)?;
    let (uid, gid) = if userstr.is_empty() {
        (0, 0)
    } else {
        uid_gid(&db, &userstr, field)?
    };

    // Group membership is looked up for the user part only.
    let member = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(uid) = &sc.run_as_user {
        uid.value.to_string()
    } else if !image.user.is_empty() {
        image.user.split(':').next().unwrap_or_default().to_string()
    } else {
        "0".to_string()
    };

    // The primary gid is always one of them (containerd's
    // ensureAdditionalGids); /etc/group membership only under Merge.
    let mut gids = BTreeSet::from([gid]);
    if !strict {
        gids.extend(membership_gids(&db, &member)?);
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        let g = u32::try_from(*g).map_err(|_| {
            invalid(
                format!("linux.security_context.supplemental_groups[{i}]"),
                format!("{g} is not a valid gid"),
            )
        })?;
        gids.insert(g);
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids.into_iter().collect(),
    })
}

/// The uid a container will run as, told before its rootfs exists (for the
/// gatekeeper): from the CRI fields or the image's user, a name looked up in
/// the `/etc/passwd` that overlayfs would show over `lowers` (bottom layer
/// first). `None` when it cannot be told that way: an unknown name, a
/// passwd that is a symlink, a whiteout or under an opaque or replaced
/// `/etc`, or a malformed request (the spec builder rejects those).
pub fn uid_before_rootfs(
    sc: &LinuxContainerSecurityContext,
    image: &ImageConfig,
    lowers: &[PathBuf],
) -> Option<u32> {
    let (userstr, _) = user_string(sc, image).ok()?;
    let user = userstr.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return Some(0);
    }
    if let Some(uid) = numeric_id(user) {
        return Some(uid);
    }
    let text = layered_passwd(lowers)?;
    parse_passwd(&text)
        .into_iter()
        .find(|u| u.name == user)
        .map(|u| u.uid)
}

/// The image's /etc/passwd as overlayfs would show it, when that is a
/// regular file found without following anything.
fn layered_passwd(lowers: &[PathBuf]) -> Option<String> {
    for layer in lowers.iter().rev() {
        let etc = layer.join("etc");
        match std::fs::symlink_metadata(&etc) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Ok(m) if m.is_dir() => {}
            _ => return None,
        }
        match std::fs::symlink_metadata(etc.join("passwd")) {
            Ok(m) if m.is_file() => return read_in_root(layer, "etc/passwd").ok().flatten(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if is_opaque(&etc) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    None
}

/// Whether `dir` hides the layers below it (overlayfs opaque directory).
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    let mut v = [0u8; 1];
    // SAFETY: NUL-terminated path and name; `v` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

/// The OCI-image-style user string from the CRI fields, or the image's user,
/// and the field it came from (for error messages).
fn user_string(
    sc: &LinuxContainerSecurityContext,
    image: &ImageConfig,
) -> Result<(String, &'static str), SpecError> {
    let mut user = String::new();
    let mut field = "";
    if let Some(uid) = &sc.run_as_user {
        user = uid.value.to_string();
        field = "linux.security_context.run_as_user";
    }
    if !sc.run_as_username.is_empty() {
        user = sc.run_as_username.clone();
        field = "linux.security_context.run_as_username";
    }
    match (&sc.run_as_group, user.is_empty()) {
        (Some(gid), true) => Err(invalid(
            "linux.security_context.run_as_group",
            format!("group {} is specified without a user", gid.value),
        )),
        (Some(gid), false) => Ok((format!("{user}:{}", gid.value), field)),
        (None, false) => Ok((user, field)),
        (None, true) => Ok((image.user.clone(), "image config User")),
    }
}

/// Parses a decimal id the way containerd does: 0..=i32::MAX, else it is a name.
fn numeric_id(s: &str) -> Option<u32> {
    let v: i64 = s.parse().ok()?;
    if (0..=MAX_ID).contains(&v) {
        u32::try_from(v).ok()
    } else {
        None
    }
}

/// uid and gid for "uid", "name", "uid:gid", "name:group", "uid:group", "name:gid".
fn uid_gid(db: &RootfsDb, userstr: &str, field: &str) -> Result<(u32, u32), SpecError> {
    let parts: Vec<&str> = userstr.split(':').collect();
    match parts.as_slice() {
        [user] => match numeric_id(user) {
            Some(uid) => {
                // A uid not in /etc/passwd runs with gid 0.
                let gid = db
                    .passwd(field)?
                    .iter()
                    .find(|u| u.uid == uid)
                    .map_or(0, |u| u.gid);
                Ok((uid, gid))
            }
            None => {
                let entry = find_user(db, user, field)?;
                Ok((entry.uid, entry.gid))
            }
        },
        [user, group] => {
            let uid = match numeric_id(user) {
                Some(uid) => uid,
                None => find_user(db, user, field)?.uid,
            };
            let gid = match numeric_id(group) {
                Some(gid) => gid,
                None => db
                    .group(field)?
                    .iter()
                    .find(|g| g.name == *group)
                    .map(|g| g.gid)
                    .ok_or_else(|| {
                        invalid(
                            field,
                            format!("group {group:?} not found in the image's /etc/group"),
                        )
                    })?,
            };
            Ok((uid, gid))
        }
        _ => Err(invalid(field, format!("invalid user {userstr:?}"))),
    }
}

fn find_user(db: &RootfsDb, name: &str, field: &str) -> Result<PasswdEntry, SpecError> {
    db.passwd(field)?
        .iter()
        .find(|u| u.name == name)
        .cloned()
        .ok_or_else(|| {
            invalid(
                field,
                format!("user {name:?} not found in the image's /etc/passwd"),
            )
        })
}

/// Gids of the groups that list the user as a member (by name, or by the
/// name of a numeric uid); a group named like the user is not counted.
fn membership_gids(db: &RootfsDb, user: &str) -> Result<Vec<u32>, SpecError> {
    const FIELD: &str = "image /etc/group";
    let name = if user.parse::<i64>().is_ok() {
        let Some(uid) = numeric_id(user) else {
            return Ok(Vec::new());
        };
        match db.passwd(FIELD)?.iter().find(|u| u.uid == uid) {
            Some(entry) => entry.name.clone(),
            None => return Ok(Vec::new()),
        }
    } else {
        user.to_string()
    };
    Ok(db
        .group(FIELD)?
        .iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect())
}

/// Lazily read /etc/passwd and /etc/group of a rootfs (missing = empty).
struct RootfsDb<'a> {
    rootfs: &'a Path,
    passwd: OnceCell<Vec<PasswdEntry>>,
    group: OnceCell<Vec<GroupEntry>>,
}

impl<'a> RootfsDb<'a> {
    fn new(rootfs: &'a Path) -> Self {
        RootfsDb {
            rootfs,
            passwd: OnceCell::new(),
            group: OnceCell::new(),
        }
    }

    fn passwd(&self, field: &str) -> Result<&[PasswdEntry], SpecError> {
        if let Some(v) = self.passwd.get() {
            return Ok(v);
        }
        let text = self.read("etc/passwd", field)?;
        Ok(self.passwd.get_or_init(|| parse_passwd(&text)))
    }

    fn group(&self, field: &str) -> Result<&[GroupEntry], SpecError> {
        if let Some(v) = self.group.get() {
            return Ok(v);
        }
        let text = self.read("etc/group", field)?;
        Ok(self.group.get_or_init(|| parse_group(&text)))
    }

    fn read(&self, rel: &str, field: &str) -> Result<String, SpecError> {
        match read_in_root(self.rootfs, rel) {
            Ok(text) => Ok(text.unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(invalid(field, format!("the image's /{rel}: {e}")))
            }
            Err(e) => Err(io_error(
                format!("reading /{rel} in rootfs {}", self.rootfs.display()),
                e,
            )),
        }
    }
}

/// Parses /etc/passwd; lines that are not `name:pw:uid:gid:…` are skipped.
pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.to_string();
            let _password = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some(PasswdEntry { name, uid, gid })
        })
        .collect()
}

/// Parses /etc/group; lines that are not `name:pw:gid[:members]` are skipped.
pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.to_string();
            let _password = f.next()?;
            let gid = f.next()?.parse().ok()?;
            let members = f
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry { name, gid, members })
        })
        .collect()
}

/// Reads `rel` inside `root` with `root` acting as "/" for every symlink and
/// "..". `Ok(None)` when the file does not exist there; an error of kind
/// `InvalidData` when it is not a regular file or too big.
pub(crate) fn read_in_root(root: &Path, rel: &str) -> io::Result<Option<String>> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let file = match open_in_root_openat2(&dir, rel) {
        Err(Errno::ENOSYS) | Err(Errno::EPERM) => open_in_root_walk(&dir, rel),
        other => other,
    };
    let file = match file {
        Ok(f) => f,
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    read_regular(file).map(Some)
}

fn open_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
}

/// Takes ownership of a descriptor a successful open returned.
fn owned(fd: RawFd) -> File {
    // SAFETY: `fd` was just returned by a successful open call, is not
    // shared with anything else, and is closed exactly once by the File.
    unsafe { File::from_raw_fd(fd) }
}

fn open_in_root_openat2(dir: &File, rel: &str) -> Result<File, Errno> {
    let how = OpenHow::new()
        .flags(open_flags())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(dir.as_raw_fd(), rel, how).map(owned)
}

/// Resolves `rel` one component at a time, never letting ".." or a symlink
/// climb above `dir`, then opens the result without following a final link.
pub(crate) fn open_in_root_walk(dir: &File, rel: &str) -> Result<File, Errno> {
    let mut pending: VecDeque<OsString> = components(OsStr::new(rel)).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == "." {
            continue;
        }
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = resolved.clone();
        candidate.push(part.clone());
        let path = join(&candidate);
        let st = nix::sys::stat::fstatat(
            Some(dir.as_raw_fd()),
            path.as_path(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), path.as_path())?;
            if target.as_bytes().starts_with(b"/") {
                resolved.clear();
            }
            for (i, c) in components(&target).enumerate() {
                pending.insert(i, c);
            }
        } else {
            resolved.push(part);
        }
    }
    let path = join(&resolved);
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        path.as_path(),
        open_flags() | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?;
    Ok(owned(fd))
}

fn components(path: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

fn join(parts: &[OsString]) -> PathBuf {
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

fn read_regular(file: File) -> io::Result<String> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_DB_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_DB_FILE} bytes"),
        ));
    }
    let mut buf = Vec::new();
    file.take(MAX_DB_FILE + 1).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::Int64Value;
    use std::fs;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# comment
daemon:x:1:1::/:/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
broken line
other:x:2000:2000::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:root
wheel:x:10:root,app
app:x:1001:app
audio:x:29:other, app
staff:x:50:
video:x:44:daemon
";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("etc")).expect("etc");
        fs::write(dir.path().join("etc/passwd"), PASSWD).expect("passwd");
        fs::write(dir.path().join("etc/group"), GROUP).expect("group");
        dir
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    fn img(user: &str) -> ImageConfig {
        ImageConfig {
            user: user.into(),
            ..Default::default()
        }
    }

    fn user(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
        }
    }

    #[test]
    fn uid_before_rootfs_reads_the_layers_as_overlayfs_would() {
        let base = rootfs();
        let top = tempfile::tempdir().expect("tempdir");
        let lowers = vec![base.path().to_path_buf(), top.path().to_path_buf()];
        let uid = |sc: &LinuxContainerSecurityContext, user: &str| {
            uid_before_rootfs(sc, &img(user), &lowers)
        };
        assert_eq!(uid(&sc(), ""), Some(0));
        assert_eq!(uid(&sc(), "4242:7"), Some(4242));
        // A name is looked up in the lower layer's passwd through the top.
        assert_eq!(uid(&sc(), "app"), Some(1000));
        assert_eq!(uid(&sc(), "root:app"), Some(0));
        assert_eq!(uid(&sc(), "nobody-here"), None);
        let mut asked = sc();
        asked.run_as_user = Some(Int64Value { value: 33 });
        assert_eq!(uid(&asked, "app"), Some(33));
        asked.run_as_username = "other".into();
        assert_eq!(uid(&asked, ""), Some(2000));
        // A group without a user is malformed: not told here.
        let mut group_only = sc();
        group_only.run_as_group = Some(Int64Value { value: 1 });
        assert_eq!(uid(&group_only, ""), None);

        // An upper passwd replaces the lower one.
        fs::create_dir(top.path().join("etc")).expect("etc");
        fs::write(top.path().join("etc/passwd"), "app:x:77:77::/:/bin/sh\n").expect("passwd");
        assert_eq!(uid(&sc(), "app"), Some(77));
        // A symlinked passwd cannot be told without the rootfs.
        fs::remove_file(top.path().join("etc/passwd")).expect("rm");
        symlink("/etc/passwd", top.path().join("etc/passwd")).expect("symlink");
        assert_eq!(uid(&sc(), "app"), None);
        // Nor can a passwd hidden by an opaque /etc (xattrs need root).
        fs::remove_file(top.path().join("etc/passwd")).expect("rm");
        assert_eq!(uid(&sc(), "app"), Some(1000));
        if xattr_set(&top.path().join("etc")) {
            assert_eq!(uid(&sc(), "app"), None);
        }
    }

    fn xattr_set(dir: &Path) -> bool {
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path");
        // SAFETY: NUL-terminated path and name, a one-byte value.
        unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            ) == 0
        }
    }

    #[test]
    fn parses_passwd_and_group() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[2],
            PasswdEntry {
                name: "app".into(),
                uid: 1000,
                gid: 1001
            }
        );
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 6);
        assert_eq!(g[3].members, vec!["other".to_string(), "app".to_string()]);
        assert!(g[4].members.is_empty());
    }

    #[test]
    fn default_user_is_root_with_root_groups() {
        let root = rootfs();
        // root is listed in wheel (10); the group named "root" is not counted
        // as supplementary but 0 is the primary gid.
        assert_eq!(
            resolve(root.path(), &sc(), &img("")).expect("resolve"),
            user(0, 0, &[0, 10])
        );
    }

    #[test]
    fn image_user_forms() {
        let root = rootfs();
        let cases = [
            ("app", user(1000, 1001, &[10, 29, 1001])),
            ("1000", user(1000, 1001, &[10, 29, 1001])),
            ("1000:50", user(1000, 50, &[10, 29, 50])),
            ("app:staff", user(1000, 50, &[10, 29, 50])),
            ("1000:staff", user(1000, 50, &[10, 29, 50])),
            ("app:44", user(1000, 44, &[10, 29, 44])),
            ("4242", user(4242, 0, &[0])),
            ("4242:4242", user(4242, 4242, &[4242])),
            ("daemon", user(1, 1, &[1, 44])),
        ];
        for (u, want) in cases {
            assert_eq!(resolve(root.path(), &sc(), &img(u)).expect(u), want, "{u}");
        }
    }

    #[test]
    fn cri_user_fields_override_the_image() {
        let root = rootfs();
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 2000 });
        assert_eq!(
            resolve(root.path(), &s, &img("app")).expect("uid"),
            user(2000, 2000, &[29, 2000])
        );
        s.run_as_group = Some(Int64Value { value: 7 });
        s.supplemental_groups = vec![300, 29, 7];
        assert_eq!(
            resolve(root.path(), &s, &img("app")).expect("uid:gid"),
            user(2000, 7, &[7, 29, 300])
        );
        s.run_as_username = "app".into();
        assert_eq!(
            resolve(root.path(), &s, &img("")).expect("name:gid"),
            user(1000, 7, &[7, 10, 29, 300])
        );
    }

    #[test]
    fn supplemental_groups_policy_merge_and_strict() {
        let root = rootfs();
        // app (1000, primary 1001) is listed in wheel (10) and audio (29).
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1000 });
        s.supplemental_groups = vec![1234];
        // Merge, the default (0): the image's groups, the primary gid and
        // the requested ones.
        assert_eq!(
            resolve(root.path(), &s, &img("")).expect("merge"),
            user(1000, 1001, &[10, 29, 1001, 1234])
        );
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Merge as i32;
        assert_eq!(
            resolve(root.path(), &s, &img("")).expect("merge"),
            user(1000, 1001, &[10, 29, 1001, 1234])
        );
        // Strict: the primary gid and the requested ones only.
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(root.path(), &s, &img("")).expect("strict"),
            user(1000, 1001, &[1001, 1234])
        );
        // Names are still resolved through the image's files under Strict.
        let mut named = sc();
        named.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(root.path(), &named, &img("app:staff")).expect("strict names"),
            user(1000, 50, &[50])
        );
        named.run_as_username = "app".into();
        named.run_as_group = Some(Int64Value { value: 7 });
        named.supplemental_groups = vec![7, 300];
        assert_eq!(
            resolve(root.path(), &named, &img("")).expect("strict username"),
            user(1000, 7, &[7, 300])
        );
        // Root's wheel membership goes too.
        let mut root_strict = sc();
        root_strict.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(root.path(), &root_strict, &img("")).expect("strict root"),
            user(0, 0, &[0])
        );
    }

    #[test]
    fn unknown_supplemental_groups_policy_is_invalid() {
        let root = rootfs();
        for v in [2, -1, 99] {
            let mut s = sc();
            s.supplemental_groups_policy = v;
            let err = resolve(root.path(), &s, &img("app")).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
            assert!(
                err.to_string()
                    .starts_with("linux.security_context.supplemental_groups_policy:"),
                "{err}"
            );
        }
    }

    #[test]
    fn group_without_user_is_invalid() {
        let root = rootfs();
        let mut s = sc();
        s.run_as_group = Some(Int64Value { value: 5 });
        let err = resolve(root.path(), &s, &img("app")).unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(
            err.to_string()
                .starts_with("linux.security_context.run_as_group:"),
            "{err}"
        );
    }

    #[test]
    fn unknown_names_are_invalid() {
        let root = rootfs();
        let err = resolve(root.path(), &sc(), &img("nobody-here")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        let err = resolve(root.path(), &sc(), &img("app:nogroup")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        let err = resolve(root.path(), &sc(), &img("a:b:c")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        let mut s = sc();
        s.run_as_username = "ghost".into();
        let err = resolve(root.path(), &s, &img("")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("linux.security_context.run_as_username:"),
            "{err}"
        );
        let mut s = sc();
        s.supplemental_groups = vec![-1];
        let err = resolve(root.path(), &s, &img("")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.security_context.supplemental_groups[0]:"));
    }

    #[test]
    fn missing_files_mean_no_users() {
        let root = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            resolve(root.path(), &sc(), &img("")).expect("root"),
            user(0, 0, &[0])
        );
        assert_eq!(
            resolve(root.path(), &sc(), &img("123")).expect("uid"),
            user(123, 0, &[0])
        );
        assert!(resolve(root.path(), &sc(), &img("app"))
            .unwrap_err()
            .is_invalid_argument());
    }

    /// A host file the rootfs's symlinks point at; it must never be read.
    fn outside_secret() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("shadow"),
            "evil:x:0:0::/:/bin/sh\nevil2:x:0:0::/:/bin/sh\n",
        )
        .expect("secret");
        dir
    }

    fn escaping_rootfs(secret: &Path) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        // Absolute symlink to the host file, and a relative one climbing out.
        symlink(secret.join("shadow"), root.path().join("etc/passwd")).expect("symlink");
        let depth = root.path().components().count() + 2;
        let up = "../".repeat(depth);
        let rel = format!("{up}{}", secret.join("shadow").display());
        symlink(rel, root.path().join("etc/group")).expect("symlink");
        root
    }

    #[test]
    fn symlinks_cannot_escape_the_rootfs() {
        let secret = outside_secret();
        let root = escaping_rootfs(secret.path());
        // Both links dangle once confined to the rootfs.
        assert_eq!(read_in_root(root.path(), "etc/passwd").expect("read"), None);
        assert_eq!(read_in_root(root.path(), "etc/group").expect("read"), None);
        let err = resolve(root.path(), &sc(), &img("evil")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        // Same with the fallback walker.
        let dir = File::open(root.path()).expect("open root");
        assert_eq!(
            open_in_root_walk(&dir, "etc/passwd").unwrap_err(),
            Errno::ENOENT
        );
        assert_eq!(
            open_in_root_walk(&dir, "etc/group").unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn symlinks_inside_the_rootfs_are_followed() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        fs::create_dir_all(root.path().join("real")).expect("real");
        fs::write(root.path().join("real/passwd"), PASSWD).expect("passwd");
        // Absolute link: "/" means the rootfs.
        symlink("/real/passwd", root.path().join("etc/passwd")).expect("symlink");
        // Relative link with more ".." than depth: clamps at the rootfs.
        symlink("../../../../../real/passwd", root.path().join("etc/group")).expect("symlink");
        assert_eq!(
            read_in_root(root.path(), "etc/passwd")
                .expect("read")
                .as_deref(),
            Some(PASSWD)
        );
        assert_eq!(
            read_in_root(root.path(), "etc/group")
                .expect("read")
                .as_deref(),
            Some(PASSWD)
        );
        let dir = File::open(root.path()).expect("open root");
        for rel in ["etc/passwd", "etc/group", "/etc/../etc/./passwd"] {
            let mut text = String::new();
            open_in_root_walk(&dir, rel)
                .expect(rel)
                .read_to_string(&mut text)
                .expect("read");
            assert_eq!(text, PASSWD, "{rel}");
        }
        assert_eq!(
            resolve(root.path(), &sc(), &img("app")).expect("app").uid,
            1000
        );
    }

    #[test]
    fn symlink_loops_fail() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        symlink("/etc/passwd", root.path().join("etc/passwd")).expect("symlink");
        assert!(read_in_root(root.path(), "etc/passwd").is_err());
        let dir = File::open(root.path()).expect("open root");
        assert_eq!(
            open_in_root_walk(&dir, "etc/passwd").unwrap_err(),
            Errno::ELOOP
        );
    }

    #[test]
    fn non_regular_passwd_is_invalid() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc/passwd")).expect("dir");
        let err = resolve(root.path(), &sc(), &img("app")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        // A FIFO must not block the read.
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        let err = resolve(root.path(), &sc(), &img("app")).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
    }
}

//! A plan: the ordered changes to the host, and applying them.

use std::path::{Path, PathBuf};

use crate::files::{self, Content};
use crate::{host, io, InstallError, BIN_MODE, DIR_MODE};

/// One change, described as the host would see it.
#[derive(Debug)]
pub struct Step {
    pub what: String,
    pub(crate) action: Action,
}

#[derive(Debug)]
pub(crate) enum Action {
    Copy {
        from: PathBuf,
        to: PathBuf,
    },
    Write {
        to: PathBuf,
        data: Vec<u8>,
        mode: u32,
        owner: Option<(u32, u32)>,
        dir_mode: u32,
    },
    Symlink {
        at: PathBuf,
        target: PathBuf,
    },
    Remove(PathBuf),
    RemoveDir(PathBuf),
    Systemctl(Vec<&'static str>),
}

/// The changes that take the host to the wanted state, in order, and what
/// the admin should know.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Things the admin should act on (missing packages, no restart, ...).
    pub warnings: Vec<String>,
    /// Things kept as they are, and why.
    pub notes: Vec<String>,
}

impl Plan {
    pub(crate) fn step(&mut self, what: impl Into<String>, action: Action) {
        self.steps.push(Step {
            what: what.into(),
            action,
        });
    }

    /// Makes every change in order, calling `done` before each; stops at
    /// the first failure (the next run picks up from what is on disk).
    pub fn apply(&self, mut before: impl FnMut(&Step)) -> Result<(), InstallError> {
        for s in &self.steps {
            before(s);
            match &s.action {
                Action::Copy { from, to } => {
                    make_parent(to, DIR_MODE)?;
                    files::write_atomic(to, Content::File(from), BIN_MODE, None).map_err(io(to))?;
                }
                Action::Write {
                    to,
                    data,
                    mode,
                    owner,
                    dir_mode,
                } => {
                    make_parent(to, *dir_mode)?;
                    files::write_atomic(to, Content::Bytes(data), *mode, *owner).map_err(io(to))?;
                }
                Action::Symlink { at, target } => {
                    make_parent(at, DIR_MODE)?;
                    files::remove(at).map_err(io(at))?;
                    std::os::unix::fs::symlink(target, at).map_err(io(at))?;
                }
                Action::Remove(p) => files::remove(p).map_err(io(p))?,
                Action::RemoveDir(p) => files::remove_dir_if_empty(p).map_err(io(p))?,
                Action::Systemctl(args) => {
                    host::systemctl(args).map_err(|reason| InstallError::Systemctl {
                        args: args.join(" "),
                        reason,
                    })?
                }
            }
        }
        Ok(())
    }
}

fn make_parent(p: &Path, mode: u32) -> Result<(), InstallError> {
    match p.parent() {
        Some(d) => files::make_dirs(d, mode).map_err(io(d)),
        None => Ok(()),
    }
}

//! The host's files as the planner reads them, and the steps that write them.

use std::path::{Path, PathBuf};

use vordr_config::Config;

use crate::files::{self, Root};
use crate::plan::{Action, Plan};
use crate::{io, InstallError, Options, CONFIG, DIR_MODE, SAVED_DIR, SAVED_DIR_MODE};

/// The host's files as the planner reads them.
pub(crate) struct Host<'a> {
    pub(crate) root: Root,
    pub(crate) o: &'a Options,
}

impl Host<'_> {
    pub(crate) fn here(&self, host: &Path) -> PathBuf {
        self.root.resolve(host)
    }

    pub(crate) fn read(&self, host: &Path) -> Result<Option<Vec<u8>>, InstallError> {
        let p = self.here(host);
        files::read_opt(&p).map_err(io(&p))
    }

    pub(crate) fn mode(&self, host: &Path) -> Option<u32> {
        files::mode_of(&self.here(host)).ok()
    }

    pub(crate) fn saved(&self, name: &str) -> PathBuf {
        Path::new(SAVED_DIR).join(name)
    }

    /// The effective configuration of the installed daemon: the host's
    /// config.toml over the defaults, or the defaults.
    pub(crate) fn config(&self) -> Result<(Config, Option<Vec<u8>>), InstallError> {
        let text = self.read(Path::new(CONFIG))?;
        let config = match &text {
            None => Config::default(),
            Some(b) => {
                Config::from_overlay_str(&String::from_utf8_lossy(b), CONFIG).map_err(|e| {
                    InstallError::Config {
                        path: CONFIG,
                        source: Box::new(e),
                    }
                })?
            }
        };
        Ok((config, text))
    }

    pub(crate) fn write_step(
        &self,
        plan: &mut Plan,
        what: String,
        host: &Path,
        data: Vec<u8>,
        mode: u32,
    ) {
        let saved = host.starts_with(SAVED_DIR);
        // An edited file keeps its owner and mode.
        let existing = files::owner_and_mode(&self.here(host)).ok();
        plan.step(
            what,
            Action::Write {
                to: self.here(host),
                data,
                mode: existing.map(|(_, m)| m).unwrap_or(mode),
                owner: existing.map(|(o, _)| o),
                dir_mode: if saved { SAVED_DIR_MODE } else { DIR_MODE },
            },
        );
    }
}

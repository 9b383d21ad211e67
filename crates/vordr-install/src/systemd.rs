//! Restarts through the host's systemd, or a warning naming them when it cannot be reached.

use crate::hostfs::Host;
use crate::plan::{Action, Plan};
use crate::systemd_unreachable;

/// Restarts through the host's systemd: steps when it can be reached,
/// else one warning naming the commands to run on the node.
pub(crate) struct Restarts {
    blocked: Option<String>,
    skipped: Vec<String>,
}

impl Restarts {
    pub(crate) fn new(h: &Host<'_>) -> Restarts {
        Restarts {
            blocked: if h.o.restart {
                systemd_unreachable(h.root.dir())
            } else {
                Some("--no-restart".into())
            },
            skipped: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, plan: &mut Plan, what: &str, args: &[&'static str]) {
        match self.blocked {
            None => plan.step(
                format!("{what}: systemctl {} on the host", args.join(" ")),
                Action::Systemctl(args.to_vec()),
            ),
            Some(_) => self.skipped.push(format!("systemctl {}", args.join(" "))),
        }
    }

    pub(crate) fn finish(self, plan: &mut Plan) {
        if let (Some(why), false) = (self.blocked, self.skipped.is_empty()) {
            plan.warnings.push(format!(
                "not restarting anything ({why}); on the node run: {}",
                self.skipped.join(" && ")
            ));
        }
    }
}

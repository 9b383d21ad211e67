//! The container's init, created from the bundle by the runtime recorded in options.json.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::CreateTaskRequest;
use containerd_shim::TtrpcResult;
use vordr_shim_api::CreateOptions;

use super::io::init_stdio;
use super::reply::{internal, invalid};
use super::state::{Proc, TaskService};
use crate::crilog::CriLog;
use crate::runtime::{self, OciRuntime};

impl TaskService {
    /// Creates the container's init from `req.bundle` with `opts`; returns
    /// its pid, the init waiting for Start.
    pub(super) fn create_init(
        &self,
        req: &CreateTaskRequest,
        opts: CreateOptions,
    ) -> TtrpcResult<i32> {
        let bundle = PathBuf::from(&req.bundle);
        let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .map_err(|e| invalid(format!("config.json: {e}")))?;
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_default();
        std::fs::write(
            bundle.join("options.json"),
            serde_json::to_vec(&opts).map_err(|e| internal(e.to_string()))?,
        )
        .map_err(|e| internal(format!("options.json: {e}")))?;
        let rt: Arc<dyn OciRuntime> = Arc::from(runtime::from_options(&opts));
        let log = match &opts.log_path {
            Some(p) => Some(
                CriLog::open(p, opts.max_log_line)
                    .map_err(|e| invalid(format!("log path {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let stdio = init_stdio(&self.state, &req.id, &req.stdin, req.terminal, &opts, &log)?;
        {
            let mut st = self.lock();
            st.bundle = bundle.clone();
            st.options = opts;
            // The directory, whichever form the spec names it in.
            st.cgroups_path = crate::cgroup::fs_path(&cgroups_path);
            st.log = log;
            st.stdin = stdio.stdin;
            st.attach = stdio.attach;
        }
        let pid = match rt.create(&req.id, &bundle, stdio.io) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = rt.delete(&req.id, true);
                return Err(internal(e.to_string()));
            }
        };
        let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        p.pid = pid;
        p.reaped_pid = pid;
        let mut st = self.lock();
        match crate::cgroup::watch_oom(&st.cgroups_path, st.oom_seen.clone()) {
            Ok(watched) => st.oom_watched = watched,
            Err(e) => eprintln!("vordr shim: watching for OOM kills: {e}"),
        }
        st.copiers = stdio.copiers;
        st.init = Some(p);
        let early = st.early.remove(&pid).map(|(code, _)| code);
        drop(st);
        *self.runtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt);
        if let Some(code) = early {
            self.exited(pid, code);
        }
        Ok(pid)
    }
}

/// Force-deletes the container with the runtime recorded in the bundle.
pub fn force_delete(id: &str, bundle: &Path) {
    if let Ok(data) = std::fs::read(bundle.join("options.json")) {
        if let Ok(opts) = serde_json::from_slice::<CreateOptions>(&data) {
            let _ = runtime::from_options(&opts).delete(id, true);
        }
    }
}

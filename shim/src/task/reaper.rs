//! The exit loop: each exit recorded and published; an idle shim trimmed, an abandoned one ended.

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use vordr_shim_api::ExitRecord;

use super::reply::protobuf_timestamp;
use super::state::{lock, PState, Shared, State, TaskService, EARLY_KEEP};
use crate::exit::{now_ns, write_record};

/// How often an idle shim trims its working set.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Where exits are published: the daemon's events socket, for this
/// container in this namespace.
struct Events<'a> {
    id: &'a str,
    ns: &'a str,
    addr: &'a str,
}

impl TaskService {
    /// Handles every exit the reaper sees.
    pub(super) fn spawn_exit_loop(&self) {
        let sub = match monitor_subscribe(Topic::All) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vordr shim: cannot watch exits: {e}");
                return;
            }
        };
        let state = self.state.clone();
        let id = self.id.clone();
        let ns = self.namespace.clone();
        let addr = self.events_address.clone();
        let exit = self.exit.clone();
        // The shim starts in the container's bundle.
        let bundle = std::env::current_dir().unwrap_or_default();
        std::thread::spawn(move || loop {
            let events = Events {
                id: &id,
                ns: &ns,
                addr: &addr,
            };
            // Between exits, now and then, give back what serving RPCs
            // brought into the working set.
            match sub.rx.recv_timeout(TRIM_EVERY) {
                Ok(ExitEvent { subject, exit_code }) => {
                    let Subject::Pid(pid) = subject else { continue };
                    on_exit(&state, &events, pid, exit_code);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if abandoned(&state, &bundle) {
                        exit.signal();
                        break;
                    }
                    crate::trim::trim_working_set()
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        });
    }

    /// Records the exit of `pid`, which the reaper saw before its pid was known.
    pub(super) fn exited(&self, pid: i32, code: i32) {
        let events = Events {
            id: &self.id,
            ns: &self.namespace,
            addr: &self.events_address,
        };
        on_exit(&self.state, &events, pid, code);
    }
}

/// Collected behind its back (the daemon's state was wiped): with nothing
/// left running and the bundle gone, the shim goes too.
fn abandoned(state: &Shared, bundle: &Path) -> bool {
    let st = lock(state);
    let idle = st.init.as_ref().is_none_or(|p| p.exit.is_some());
    drop(st);
    idle && !bundle.as_os_str().is_empty() && !bundle.exists()
}

/// Records an exit: the init's (durably, then an event) or an exec's.
fn on_exit(state: &Shared, events: &Events, pid: i32, code: i32) {
    let at = now_ns();
    let mut st = lock(state);
    let mut event = None;
    if let Some(init) = st
        .init
        .as_mut()
        .filter(|p| p.reaped_pid == pid && p.exit.is_none())
    {
        init.exit = Some((code, at));
        init.state = PState::Stopped;
        st = init_exited(state, st, events, pid, code, at);
        event = Some((String::new(), pid, code));
    } else if let Some((eid, p)) = st
        .execs
        .iter_mut()
        .find(|(_, p)| p.reaped_pid == pid && p.exit.is_none())
    {
        p.exit = Some((code, at));
        p.state = PState::Stopped;
        event = Some((eid.clone(), p.pid, code));
    } else {
        let now = Instant::now();
        st.early
            .retain(|_, (_, seen)| now.duration_since(*seen) < EARLY_KEEP);
        st.early.insert(pid, (code, now));
    }
    drop(st);
    state.1.notify_all();
    if let Some((exec_id, pid, code)) = event {
        let mut ev = TaskExit::new();
        ev.container_id = events.id.to_string();
        ev.id = if exec_id.is_empty() {
            events.id.to_string()
        } else {
            exec_id
        };
        ev.pid = pid as u32;
        ev.exit_status = code as u32;
        ev.exited_at = protobuf_timestamp(at);
        publish(events, "/tasks/exit", Box::new(ev));
    }
}

/// The init exited (marked so under `st`): its exit record is written, the log gets what the
/// container wrote last, attached clients read end of file, and an OOM kill
/// is published.
fn init_exited<'a>(
    state: &'a Shared,
    mut st: MutexGuard<'a, State>,
    events: &Events,
    pid: i32,
    code: i32,
    at: i64,
) -> MutexGuard<'a, State> {
    let bundle = st.bundle.clone();
    let cgroups = st.cgroups_path.clone();
    let seen = st.oom_seen.clone();
    let oom = crate::cgroup::oom_at_exit(&cgroups, &seen, st.oom_watched, code);
    let rec = ExitRecord {
        pid: pid as u32,
        exit_code: code,
        exited_at_ns: at,
        oom_killed: oom,
    };
    if let Err(e) = write_record(&bundle, &rec) {
        eprintln!("vordr shim: exit record: {e}");
    }
    let copiers = std::mem::take(&mut st.copiers);
    let attach = st.attach.clone();
    drop(st);
    // Let the log take what the container wrote last.
    let deadline = Instant::now() + Duration::from_secs(2);
    for c in copiers {
        while !c.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Attached clients have all there is: they read end of file.
    attach.close_all();
    let st = lock(state);
    if oom {
        let mut ev = TaskOOM::new();
        ev.container_id = events.id.to_string();
        publish(events, "/tasks/oom", Box::new(ev));
    }
    st
}

/// Publishes to the daemon, connecting anew each time: the daemon may have
/// restarted since. A daemon that is down reads the exit file later.
fn publish(events: &Events, topic: &str, ev: Box<dyn MessageDyn>) {
    let (addr, ns) = (events.addr, events.ns);
    if addr.is_empty() {
        return;
    }
    match RemotePublisher::new(addr) {
        Ok(p) => {
            if let Err(e) = p.publish(Context::default(), topic, ns, ev) {
                eprintln!("vordr shim: publish {topic}: {e}");
            }
        }
        Err(e) => eprintln!("vordr shim: events endpoint {addr}: {e}"),
    }
}

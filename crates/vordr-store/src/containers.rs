//! Container rows: one per CRI container, whatever its state.

use rusqlite::{params, OptionalExtension, Row};

use crate::pods::is_unique_violation;
use crate::{Lookup, Result, Store, StoreError};

/// Lifecycle state of a container row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// CreateContainer is under way (restart undoes it).
    Creating,
    /// The shim holds a created container.
    Created,
    Running,
    Exited,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Creating => "creating",
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        }
    }

    fn parse(s: &str) -> Option<ContainerState> {
        Some(match s {
            "creating" => ContainerState::Creating,
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "exited" => ContainerState::Exited,
            _ => return None,
        })
    }
}

/// What CreateContainer records before it touches the machine.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    pub created_at: i64,
    pub image_ref: String,
    pub image_id: String,
    /// The CRI ContainerConfig as JSON.
    pub config: String,
    pub labels: String,
    pub annotations: String,
    pub log_path: String,
    /// The runtime handler's runtime: "youki" or "runc".
    pub runtime: String,
    pub stop_signal: String,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

/// A container as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: u32,
    pub image_ref: String,
    pub image_id: String,
    pub config: String,
    pub labels: String,
    pub annotations: String,
    pub log_path: String,
    pub runtime: String,
    pub shim_address: String,
    pub stop_signal: String,
}

const COLUMNS: &str = "id, pod_id, name, attempt, state, created_at, started_at, finished_at,
    exit_code, reason, message, pid, image_ref, image_id, config, labels, annotations,
    log_path, runtime, shim_address, stop_signal";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(ContainerRecord, String)> {
    Ok((
        ContainerRecord {
            id: r.get(0)?,
            pod_id: r.get(1)?,
            name: r.get(2)?,
            attempt: r.get(3)?,
            state: ContainerState::Creating,
            created_at: r.get(5)?,
            started_at: r.get(6)?,
            finished_at: r.get(7)?,
            exit_code: r.get(8)?,
            reason: r.get(9)?,
            message: r.get(10)?,
            pid: r.get(11)?,
            image_ref: r.get(12)?,
            image_id: r.get(13)?,
            config: r.get(14)?,
            labels: r.get(15)?,
            annotations: r.get(16)?,
            log_path: r.get(17)?,
            runtime: r.get(18)?,
            shim_address: r.get(19)?,
            stop_signal: r.get(20)?,
        },
        r.get(4)?,
    ))
}

fn finish((mut c, state): (ContainerRecord, String)) -> Result<ContainerRecord> {
    c.state = ContainerState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        table: "containers",
        reason: format!("container {} has unknown state {state:?}", c.id),
    })?;
    Ok(c)
}

impl Store {
    /// Records a container in state `creating`. Fails with
    /// [`StoreError::ContainerExists`] for a duplicate name and attempt in the pod.
    pub fn insert_container(&self, c: &NewContainer) -> Result<()> {
        let res = self.lock().execute(
            "INSERT INTO containers (id, pod_id, name, attempt, state, created_at, image_ref,
                image_id, config, labels, annotations, log_path, runtime, stop_signal)
             VALUES (?1, ?2, ?3, ?4, 'creating', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                c.id,
                c.pod_id,
                c.name,
                c.attempt,
                c.created_at,
                c.image_ref,
                c.image_id,
                c.config,
                c.labels,
                c.annotations,
                c.log_path,
                c.runtime,
                c.stop_signal
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::ContainerExists(format!(
                "{} (attempt {})",
                c.name, c.attempt
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The shim serving the container is up: state `created`.
    pub fn set_container_created(&self, id: &str, shim_address: &str, pid: u32) -> Result<()> {
        self.lock().execute(
            "UPDATE containers SET state = 'created', shim_address = ?2, pid = ?3 WHERE id = ?1",
            params![id, shim_address, pid],
        )?;
        Ok(())
    }

    /// The signal that stops the container (the image's, or SIGTERM).
    pub fn set_container_stop_signal(&self, id: &str, signal: &str) -> Result<()> {
        self.lock().execute(
            "UPDATE containers SET stop_signal = ?2 WHERE id = ?1",
            params![id, signal],
        )?;
        Ok(())
    }

    /// The container's CRI config (JSON) after a change kubelet asked for
    /// (UpdateContainerResources' new resources).
    pub fn set_container_config(&self, id: &str, config: &str) -> Result<()> {
        self.lock().execute(
            "UPDATE containers SET config = ?2 WHERE id = ?1",
            params![id, config],
        )?;
        Ok(())
    }

    /// StartContainer succeeded.
    pub fn set_container_running(&self, id: &str, started_at: i64) -> Result<()> {
        self.lock().execute(
            "UPDATE containers SET state = 'running', started_at = ?2
             WHERE id = ?1 AND state = 'created'",
            params![id, started_at],
        )?;
        Ok(())
    }

    /// Records the container's exit, once: a later report does not change it.
    pub fn set_container_exited(&self, id: &str, exit: &ContainerExit) -> Result<bool> {
        let n = self.lock().execute(
            "UPDATE containers SET state = 'exited', finished_at = ?2, exit_code = ?3,
                reason = ?4, message = ?5
             WHERE id = ?1 AND state != 'exited'",
            params![
                id,
                exit.finished_at,
                exit.exit_code,
                exit.reason,
                exit.message
            ],
        )?;
        Ok(n == 1)
    }

    pub fn get_container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"))?;
        let row = stmt.query_row([id], from_row).optional()?;
        row.map(finish).transpose()
    }

    /// The one container whose id starts with `prefix`.
    pub fn find_container(&self, prefix: &str) -> Result<Lookup<ContainerRecord>> {
        if prefix.is_empty() {
            return Ok(Lookup::NotFound);
        }
        if let Some(c) = self.get_container(prefix)? {
            return Ok(Lookup::Found(c));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM containers WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2"
        ))?;
        let mut rows = stmt
            .query_map([prefix], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match rows.len() {
            0 => Ok(Lookup::NotFound),
            1 => Ok(Lookup::Found(finish(rows.remove(0))?)),
            _ => Ok(Lookup::Ambiguous),
        }
    }

    /// Every container, oldest first.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM containers ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish).collect()
    }

    /// The containers of one pod.
    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM containers WHERE pod_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([pod_id], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish).collect()
    }

    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Image ids some container uses (their images must not be collected).
    pub fn container_image_ids(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT image_id FROM containers")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, name: &str) -> NewContainer {
        NewContainer {
            id: id.into(),
            pod_id: "pod1".into(),
            name: name.into(),
            attempt: 0,
            created_at: 1,
            image_ref: "docker.io/library/busybox:latest".into(),
            image_id: "sha256:aa".into(),
            config: "{}".into(),
            labels: "{}".into(),
            annotations: "{}".into(),
            log_path: "/var/log/pods/x/c/0.log".into(),
            runtime: "youki".into(),
            stop_signal: "SIGTERM".into(),
        }
    }

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.insert_container(&new("abc1", "c")).unwrap();
        assert!(matches!(
            s.insert_container(&new("abc2", "c")),
            Err(StoreError::ContainerExists(_))
        ));
        s.insert_container(&new("abd3", "d")).unwrap();
        assert!(matches!(s.find_container("ab"), Ok(Lookup::Ambiguous)));
        assert!(matches!(s.find_container("abc"), Ok(Lookup::Found(c)) if c.id == "abc1"));
        s.set_container_created("abc1", "unix:///s.sock", 42)
            .unwrap();
        s.set_container_running("abc1", 7).unwrap();
        let exit = ContainerExit {
            finished_at: 9,
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: String::new(),
        };
        assert!(s.set_container_exited("abc1", &exit).unwrap());
        let mut later = exit.clone();
        later.exit_code = 0;
        assert!(!s.set_container_exited("abc1", &later).unwrap());
        let c = s.get_container("abc1").unwrap().unwrap();
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!((c.exit_code, c.pid, c.started_at), (137, 42, 7));
        assert_eq!(c.shim_address, "unix:///s.sock");
        s.set_container_config("abc1", r#"{"x":1}"#).unwrap();
        assert_eq!(
            s.get_container("abc1").unwrap().unwrap().config,
            r#"{"x":1}"#
        );
        assert_eq!(s.get_container("abd3").unwrap().unwrap().config, "{}");
        assert_eq!(s.pod_containers("pod1").unwrap().len(), 2);
        s.delete_container("abc1").unwrap();
        assert_eq!(s.list_containers().unwrap().len(), 1);
        assert_eq!(
            s.container_image_ids().unwrap(),
            vec!["sha256:aa".to_string()]
        );
    }
}

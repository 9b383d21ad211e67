//! Pod sandbox rows and their IP allocations.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rusqlite::{params, OptionalExtension, Row};

use crate::{Result, Store, StoreError};

/// Lifecycle state of a pod sandbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// RunPodSandbox is under way (or crashed half-way; restart undoes it).
    Creating,
    /// Namespaces pinned and the network attached.
    Ready,
    /// Stopped: network detached, namespaces released.
    NotReady,
    /// A pre-attached network namespace being prepared for the warm pool.
    PoolCreating,
    /// A pre-attached network namespace waiting in the warm pool for a pod.
    Pooled,
}

impl PodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Creating => "creating",
            PodState::Ready => "ready",
            PodState::NotReady => "notready",
            PodState::PoolCreating => "pool-creating",
            PodState::Pooled => "pooled",
        }
    }

    /// Whether the row is a warm-pool slot rather than a pod.
    pub fn is_pool(self) -> bool {
        matches!(self, PodState::PoolCreating | PodState::Pooled)
    }

    fn parse(s: &str) -> Option<PodState> {
        Some(match s {
            "creating" => PodState::Creating,
            "ready" => PodState::Ready,
            "notready" => PodState::NotReady,
            "pool-creating" => PodState::PoolCreating,
            "pooled" => PodState::Pooled,
            _ => return None,
        })
    }
}

/// What RunPodSandbox records before it touches the machine.
#[derive(Debug, Clone)]
pub struct NewPod {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub created_at: i64,
    pub runtime_handler: String,
    /// The CRI PodSandboxConfig as JSON.
    pub config: String,
    /// Labels and annotations as JSON objects.
    pub labels: String,
    pub annotations: String,
    pub host_network: bool,
    pub cgroup_parent: String,
    /// Name of the network the pod attaches to.
    pub network: String,
}

/// A pod sandbox as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub state: PodState,
    pub created_at: i64,
    pub runtime_handler: String,
    pub config: String,
    pub labels: String,
    pub annotations: String,
    pub host_network: bool,
    pub netns_path: Option<String>,
    pub ipc_path: Option<String>,
    pub uts_path: Option<String>,
    /// netavark setup ran and teardown has not yet.
    pub network_attached: bool,
    pub cgroup_parent: String,
    pub network: String,
    pub ip: Option<IpAddr>,
}

const POD_COLUMNS: &str = "p.id, p.name, p.namespace, p.uid, p.attempt, p.state, p.created_at,
    p.runtime_handler, p.config, p.labels, p.annotations, p.host_network, p.netns_path,
    p.ipc_path, p.uts_path, p.network_attached, p.cgroup_parent, p.network,
    (SELECT ip FROM ip_allocations a WHERE a.pod_id = p.id ORDER BY a.rowid LIMIT 1)";

fn pod_from_row(r: &Row<'_>) -> rusqlite::Result<(PodRecord, String, Option<String>)> {
    let state: String = r.get(5)?;
    let ip: Option<String> = r.get(18)?;
    Ok((
        PodRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            namespace: r.get(2)?,
            uid: r.get(3)?,
            attempt: r.get(4)?,
            state: PodState::Creating,
            created_at: r.get(6)?,
            runtime_handler: r.get(7)?,
            config: r.get(8)?,
            labels: r.get(9)?,
            annotations: r.get(10)?,
            host_network: r.get(11)?,
            netns_path: r.get(12)?,
            ipc_path: r.get(13)?,
            uts_path: r.get(14)?,
            network_attached: r.get(15)?,
            cgroup_parent: r.get(16)?,
            network: r.get(17)?,
            ip: None,
        },
        state,
        ip,
    ))
}

fn finish(row: (PodRecord, String, Option<String>)) -> Result<PodRecord> {
    let (mut pod, state, ip) = row;
    pod.state = PodState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        table: "pods",
        reason: format!("pod {} has unknown state {state:?}", pod.id),
    })?;
    pod.ip = match ip {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| StoreError::Corrupt {
            table: "ip_allocations",
            reason: format!("pod {} has unparsable IP {s:?}", pod.id),
        })?),
    };
    Ok(pod)
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Outcome of an ID-prefix lookup.
#[derive(Debug, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    NotFound,
    Ambiguous,
}

impl Store {
    /// Records a pod in state `creating`. Fails with [`StoreError::PodExists`]
    /// when a pod with the same name, namespace, uid and attempt exists.
    pub fn insert_pod(&self, p: &NewPod) -> Result<()> {
        let res = self.lock().execute(
            "INSERT INTO pods (id, name, namespace, uid, attempt, state, created_at,
                runtime_handler, config, labels, annotations, host_network, cgroup_parent, network)
             VALUES (?1, ?2, ?3, ?4, ?5, 'creating', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                p.id,
                p.name,
                p.namespace,
                p.uid,
                p.attempt,
                p.created_at,
                p.runtime_handler,
                p.config,
                p.labels,
                p.annotations,
                p.host_network,
                p.cgroup_parent,
                p.network
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::PodExists(format!(
                "{}_{}_{}_{}",
                p.name, p.namespace, p.uid, p.attempt
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Records a warm-pool slot in state `pool-creating`: a network
    /// namespace that will be attached to `network` ahead of any pod.
    pub fn insert_pool_slot(&self, id: &str, created_at: i64, network: &str) -> Result<()> {
        self.lock().execute(
            "INSERT INTO pods (id, name, namespace, uid, attempt, state, created_at,
                runtime_handler, config, labels, annotations, host_network, cgroup_parent, network)
             VALUES (?1, 'pool-' || ?1, '', ?1, 0, 'pool-creating', ?2, '', '{}', '{}', '{}', 0, '', ?3)",
            params![id, created_at, network],
        )?;
        Ok(())
    }

    /// Turns one ready warm-pool slot attached to `p.network` into the pod
    /// `p` (state `creating`), in one transaction, and returns its id (the
    /// slot's; `p.id` is ignored). `None` when the pool has no such slot.
    pub fn claim_pool_slot(&self, p: &NewPod) -> Result<Option<String>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM pods WHERE state = 'pooled' AND network = ?1
                 ORDER BY created_at LIMIT 1",
                [&p.network],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        let res = tx.execute(
            "UPDATE pods SET name = ?2, namespace = ?3, uid = ?4, attempt = ?5, created_at = ?6,
                runtime_handler = ?7, config = ?8, labels = ?9, annotations = ?10,
                host_network = 0, cgroup_parent = ?11, state = 'creating'
             WHERE id = ?1",
            params![
                id,
                p.name,
                p.namespace,
                p.uid,
                p.attempt,
                p.created_at,
                p.runtime_handler,
                p.config,
                p.labels,
                p.annotations,
                p.cgroup_parent
            ],
        );
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::PodExists(format!(
                    "{}_{}_{}_{}",
                    p.name, p.namespace, p.uid, p.attempt
                )))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(Some(id))
    }

    /// Records where the pod's namespaces are pinned.
    pub fn set_pod_namespaces(
        &self,
        id: &str,
        netns: Option<&str>,
        ipc: Option<&str>,
        uts: Option<&str>,
    ) -> Result<()> {
        self.lock().execute(
            "UPDATE pods SET netns_path = ?2, ipc_path = ?3, uts_path = ?4 WHERE id = ?1",
            params![id, netns, ipc, uts],
        )?;
        Ok(())
    }

    /// Records whether netavark's setup for the pod is in place.
    pub fn set_pod_network_attached(&self, id: &str, attached: bool) -> Result<()> {
        self.lock().execute(
            "UPDATE pods SET network_attached = ?2 WHERE id = ?1",
            params![id, attached],
        )?;
        Ok(())
    }

    /// Moves a pod to `state`.
    pub fn set_pod_state(&self, id: &str, state: PodState) -> Result<()> {
        self.lock().execute(
            "UPDATE pods SET state = ?2 WHERE id = ?1",
            params![id, state.as_str()],
        )?;
        Ok(())
    }

    /// Moves a pod from `from` to `to` only if it is in `from`; returns
    /// whether it was.
    pub fn set_pod_state_if(&self, id: &str, from: PodState, to: PodState) -> Result<bool> {
        let n = self.lock().execute(
            "UPDATE pods SET state = ?3 WHERE id = ?1 AND state = ?2",
            params![id, from.as_str(), to.as_str()],
        )?;
        Ok(n == 1)
    }

    /// The pod with exactly this id.
    pub fn get_pod(&self, id: &str) -> Result<Option<PodRecord>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {POD_COLUMNS} FROM pods p WHERE p.id = ?1"))?;
        let row = stmt.query_row([id], pod_from_row).optional()?;
        row.map(finish).transpose()
    }

    /// The one pod whose id starts with `prefix` (as crictl allows short ids).
    pub fn find_pod(&self, prefix: &str) -> Result<Lookup<PodRecord>> {
        if prefix.is_empty() {
            return Ok(Lookup::NotFound);
        }
        if let Some(p) = self.get_pod(prefix)? {
            return Ok(Lookup::Found(p));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {POD_COLUMNS} FROM pods p WHERE substr(p.id, 1, length(?1)) = ?1 LIMIT 2"
        ))?;
        let rows = stmt
            .query_map([prefix], pod_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match rows.len() {
            0 => Ok(Lookup::NotFound),
            1 => Ok(Lookup::Found(finish(rows.into_iter().next().unwrap())?)),
            _ => Ok(Lookup::Ambiguous),
        }
    }

    /// Every pod, oldest first.
    pub fn list_pods(&self) -> Result<Vec<PodRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {POD_COLUMNS} FROM pods p ORDER BY p.created_at, p.id"
        ))?;
        let rows = stmt
            .query_map([], pod_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish).collect()
    }

    /// Deletes a pod row and, with it, its IP allocations.
    pub fn delete_pod(&self, id: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM pods WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Allocates one address on `network` for pod `id`, in one transaction:
    /// `pick` gets the addresses already in use and the last one handed out
    /// and returns a free one, or `None` when the range is exhausted.
    pub fn allocate_ip(
        &self,
        id: &str,
        network: &str,
        pick: impl FnOnce(&BTreeSet<IpAddr>, Option<IpAddr>) -> Option<IpAddr>,
    ) -> Result<Option<IpAddr>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let used = {
            let mut stmt = tx.prepare_cached("SELECT ip FROM ip_allocations WHERE network = ?1")?;
            let rows = stmt
                .query_map([network], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .filter_map(|s| s.parse().ok())
                .collect::<BTreeSet<IpAddr>>()
        };
        let last_key = format!("ipam.last.{network}");
        let last: Option<IpAddr> = tx
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [&last_key],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|s| s.parse().ok());
        let Some(ip) = pick(&used, last) else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO ip_allocations (network, ip, pod_id) VALUES (?1, ?2, ?3)",
            params![network, ip.to_string(), id],
        )?;
        tx.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![last_key, ip.to_string()],
        )?;
        tx.commit()?;
        Ok(Some(ip))
    }

    /// Records addresses another IPAM gave pod `id` (a CNI plugin's), in
    /// the order given; that IPAM is the authority, so a row it contradicts
    /// is replaced.
    pub fn record_ips(&self, id: &str, network: &str, ips: &[IpAddr]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for ip in ips {
            tx.execute(
                "INSERT OR REPLACE INTO ip_allocations (network, ip, pod_id) VALUES (?1, ?2, ?3)",
                params![network, ip.to_string(), id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The addresses pod `id` holds, in the order they were recorded.
    pub fn pod_ips(&self, id: &str) -> Result<Vec<IpAddr>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT ip FROM ip_allocations WHERE pod_id = ?1 ORDER BY rowid")?;
        let rows = stmt
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Releases every address held by pod `id`.
    pub fn release_ips(&self, id: &str) -> Result<usize> {
        Ok(self
            .lock()
            .execute("DELETE FROM ip_allocations WHERE pod_id = ?1", [id])?)
    }

    /// Every allocation as (network, ip, pod id).
    pub fn list_ip_allocations(&self) -> Result<Vec<(String, String, String)>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT network, ip, pod_id FROM ip_allocations ORDER BY ip")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_pod(id: &str, name: &str) -> NewPod {
        NewPod {
            id: id.into(),
            name: name.into(),
            namespace: "ns".into(),
            uid: "uid".into(),
            attempt: 0,
            created_at: 1,
            runtime_handler: String::new(),
            config: "{}".into(),
            labels: "{}".into(),
            annotations: "{}".into(),
            host_network: false,
            cgroup_parent: String::new(),
            network: "net".into(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        (d, s)
    }

    fn first_free(used: &BTreeSet<IpAddr>, _last: Option<IpAddr>) -> Option<IpAddr> {
        (2..=4u8)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .find(|ip| !used.contains(ip))
    }

    #[test]
    fn pod_lifecycle_rows() {
        let (_d, s) = store();
        s.insert_pod(&new_pod("abc1", "a")).unwrap();
        let p = s.get_pod("abc1").unwrap().unwrap();
        assert_eq!(p.state, PodState::Creating);
        assert_eq!(p.ip, None);
        s.set_pod_namespaces("abc1", Some("/run/n"), None, Some("/run/u"))
            .unwrap();
        s.set_pod_network_attached("abc1", true).unwrap();
        s.set_pod_state("abc1", PodState::Ready).unwrap();
        let p = s.get_pod("abc1").unwrap().unwrap();
        assert_eq!(p.state, PodState::Ready);
        assert_eq!(p.netns_path.as_deref(), Some("/run/n"));
        assert_eq!(p.ipc_path, None);
        assert!(p.network_attached);
        s.delete_pod("abc1").unwrap();
        assert_eq!(s.get_pod("abc1").unwrap(), None);
    }

    #[test]
    fn duplicate_name_is_refused() {
        let (_d, s) = store();
        s.insert_pod(&new_pod("a1", "same")).unwrap();
        let e = s.insert_pod(&new_pod("b2", "same")).unwrap_err();
        assert!(
            matches!(e, StoreError::PodExists(ref n) if n == "same_ns_uid_0"),
            "{e}"
        );
        let mut other_attempt = new_pod("c3", "same");
        other_attempt.attempt = 1;
        s.insert_pod(&other_attempt).unwrap();
    }

    #[test]
    fn pool_slots_are_claimed_once_by_matching_network() {
        let (_d, s) = store();
        s.insert_pool_slot("slot1", 1, "net-a").unwrap();
        s.insert_pool_slot("slot2", 2, "net-a").unwrap();
        assert_eq!(
            s.get_pod("slot1").unwrap().unwrap().state,
            PodState::PoolCreating
        );
        let mut p = new_pod("ignored", "pod");
        p.network = "net-a".into();
        // Only ready (pooled) slots can be claimed.
        assert_eq!(s.claim_pool_slot(&p).unwrap(), None);
        s.set_pod_state("slot2", PodState::Pooled).unwrap();
        s.set_pod_state("slot1", PodState::Pooled).unwrap();
        assert_eq!(s.claim_pool_slot(&p).unwrap().as_deref(), Some("slot1"));
        let claimed = s.get_pod("slot1").unwrap().unwrap();
        assert_eq!(claimed.state, PodState::Creating);
        assert_eq!(claimed.name, "pod");
        // Same pod again: the name is taken.
        assert!(matches!(
            s.claim_pool_slot(&p),
            Err(StoreError::PodExists(_))
        ));
        assert_eq!(s.get_pod("slot2").unwrap().unwrap().state, PodState::Pooled);
        // Another network's pod finds nothing.
        let mut q = new_pod("ignored", "other");
        q.network = "net-b".into();
        assert_eq!(s.claim_pool_slot(&q).unwrap(), None);
    }

    #[test]
    fn prefix_lookup() {
        let (_d, s) = store();
        s.insert_pod(&new_pod("abcdef", "a")).unwrap();
        s.insert_pod(&new_pod("abcxyz", "b")).unwrap();
        assert!(matches!(s.find_pod("abcd").unwrap(), Lookup::Found(p) if p.id == "abcdef"));
        assert_eq!(s.find_pod("abc").unwrap(), Lookup::Ambiguous);
        assert_eq!(s.find_pod("zz").unwrap(), Lookup::NotFound);
        assert_eq!(s.find_pod("").unwrap(), Lookup::NotFound);
        // An exact id wins even when it is also a prefix of another id.
        s.insert_pod(&new_pod("abc", "c")).unwrap();
        assert!(matches!(s.find_pod("abc").unwrap(), Lookup::Found(p) if p.id == "abc"));
    }

    #[test]
    fn addresses_from_another_ipam_are_recorded_in_order() {
        let (_d, s) = store();
        s.insert_pod(&new_pod("p1", "a")).unwrap();
        let v4: IpAddr = "10.1.0.5".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        s.record_ips("p1", "cni:net", &[v4, v6]).unwrap();
        assert_eq!(s.pod_ips("p1").unwrap(), [v4, v6]);
        assert_eq!(s.get_pod("p1").unwrap().unwrap().ip, Some(v4));
        // Recording again (a retried ADD) changes nothing.
        s.record_ips("p1", "cni:net", &[v4, v6]).unwrap();
        assert_eq!(s.pod_ips("p1").unwrap().len(), 2);
        s.delete_pod("p1").unwrap();
        assert!(s.list_ip_allocations().unwrap().is_empty());
    }

    #[test]
    fn ips_are_never_handed_out_twice_and_freed_with_the_pod() {
        let (_d, s) = store();
        for (id, name) in [("p1", "a"), ("p2", "b"), ("p3", "c"), ("p4", "d")] {
            s.insert_pod(&new_pod(id, name)).unwrap();
        }
        let a = s.allocate_ip("p1", "net", first_free).unwrap().unwrap();
        let b = s.allocate_ip("p2", "net", first_free).unwrap().unwrap();
        let c = s.allocate_ip("p3", "net", first_free).unwrap().unwrap();
        assert_eq!(
            [a, b, c],
            [
                IpAddr::from([10u8, 0, 0, 2]),
                IpAddr::from([10u8, 0, 0, 3]),
                IpAddr::from([10u8, 0, 0, 4])
            ]
        );
        assert_eq!(s.allocate_ip("p4", "net", first_free).unwrap(), None);
        assert_eq!(s.get_pod("p2").unwrap().unwrap().ip, Some(b));
        s.delete_pod("p2").unwrap();
        assert_eq!(s.list_ip_allocations().unwrap().len(), 2);
        assert_eq!(s.allocate_ip("p4", "net", first_free).unwrap(), Some(b));
        assert_eq!(s.release_ips("p4").unwrap(), 1);
        // A picker that returns a taken address violates the primary key.
        assert!(s.allocate_ip("p4", "net", |_, _| Some(a)).is_err());
    }

    #[test]
    fn last_allocated_ip_is_remembered_per_network() {
        let (_d, s) = store();
        s.insert_pod(&new_pod("p1", "a")).unwrap();
        s.insert_pod(&new_pod("p2", "b")).unwrap();
        s.allocate_ip("p1", "net", first_free).unwrap();
        let mut seen = None;
        s.allocate_ip("p2", "net", |_, last| {
            seen = last;
            first_free(&BTreeSet::new(), None).map(|_| IpAddr::from([10, 0, 0, 9]))
        })
        .unwrap();
        assert_eq!(seen, Some(IpAddr::from([10, 0, 0, 2])));
    }
}

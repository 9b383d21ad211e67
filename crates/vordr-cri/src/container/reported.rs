//! What ContainerStatus reports beyond the store's row (Kubernetes 1.32 to
//! 1.35 fields): the user the process runs as, read from the OCI spec Vordr
//! built; the resources last applied; the stop signal.

use std::path::Path;

use k8s_cri::v1::{
    ContainerConfig, ContainerResources, ContainerUser, LinuxContainerResources,
    LinuxContainerUser, Signal,
};
use tonic::Status;
use vordr_store::ContainerRecord;

use crate::state::errors::internal;
use crate::state::Runtime;

/// The largest spec file read for the user (Vordr writes a few KiB).
const SPEC_CAP: u64 = 4 << 20;

/// The uid, gid and supplementary groups of the container's process, from
/// `process.user` of the spec at `spec_file`; `None` when the spec is gone
/// (the bundle goes with the container's removal or a reboot).
pub fn user_of(spec_file: &Path) -> Option<ContainerUser> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(spec_file)
        .ok()?
        .take(SPEC_CAP)
        .read_to_end(&mut data)
        .ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let u = spec.get("process")?.get("user")?;
    let id = |k: &str| u.get(k).and_then(|v| v.as_i64());
    Some(ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: id("uid")?,
            gid: id("gid")?,
            supplemental_groups: u
                .get("additionalGids")
                .and_then(|g| g.as_array())
                .map(|g| g.iter().filter_map(|v| v.as_i64()).collect())
                .unwrap_or_default(),
        }),
    })
}

/// The container's resources as last set: the config's at create, replaced
/// by each UpdateContainerResources.
pub fn resources_of(cfg: &ContainerConfig) -> Option<ContainerResources> {
    let linux = cfg.linux.as_ref()?.resources.clone()?;
    Some(ContainerResources {
        linux: Some(linux),
        windows: None,
    })
}

/// The CRI signal the container is stopped with.
pub fn stop_signal_of(c: &ContainerRecord) -> Signal {
    vordr_spec::signal::to_cri(&c.stop_signal)
}

/// Records `r` as the container's resources once they are applied, so that
/// ContainerStatus reports them.
pub fn remember_resources(
    rt: &Runtime,
    c: &ContainerRecord,
    r: &LinuxContainerResources,
) -> Result<(), Status> {
    let mut cfg: ContainerConfig = serde_json::from_str(&c.config).unwrap_or_default();
    cfg.linux.get_or_insert_with(Default::default).resources = Some(r.clone());
    let json = serde_json::to_string(&cfg).expect("CRI types serialise");
    rt.store
        .set_container_config(&c.id, &json)
        .map_err(|e| internal("recording the container's resources", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_from_the_spec() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config.json");
        std::fs::write(
            &f,
            r#"{"process":{"user":{"uid":1000,"gid":3000,"additionalGids":[3000,4000]}}}"#,
        )
        .unwrap();
        let u = user_of(&f).unwrap().linux.unwrap();
        assert_eq!((u.uid, u.gid), (1000, 3000));
        assert_eq!(u.supplemental_groups, vec![3000, 4000]);
        std::fs::write(&f, r#"{"process":{"user":{"uid":0,"gid":0}}}"#).unwrap();
        let u = user_of(&f).unwrap().linux.unwrap();
        assert_eq!((u.uid, u.gid, u.supplemental_groups.len()), (0, 0, 0));
        std::fs::write(&f, r#"{"process":{}}"#).unwrap();
        assert!(user_of(&f).is_none());
        assert!(user_of(&d.path().join("missing")).is_none());
    }

    #[test]
    fn resources_from_the_config() {
        assert!(resources_of(&ContainerConfig::default()).is_none());
        let mut cfg = ContainerConfig::default();
        cfg.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        });
        let r = resources_of(&cfg).unwrap().linux.unwrap();
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    }
}

//! Which namespaces the container creates, joins or shares with the host.

use std::path::PathBuf;

use k8s_cri::v1::{LinuxContainerSecurityContext, NamespaceMode};
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
};

use crate::{invalid, PodPaths, SpecError, UserNamespace};

/// Namespaces and, with a user namespace, its (uid, gid) mappings.
#[derive(Debug)]
pub(crate) struct Namespaces {
    pub namespaces: Vec<LinuxNamespace>,
    pub id_mappings: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

/// containerd's order: pid, ipc, uts, mount, network, then cgroup and user.
/// A namespace shared with the host is left out; a pod namespace is joined
/// by path; the rest are new.
pub(crate) fn build(
    sc: &LinuxContainerSecurityContext,
    pod: &PodPaths,
    cgroup_ns: bool,
) -> Result<Namespaces, SpecError> {
    let opts = sc.namespace_options.clone().unwrap_or_default();
    let is = |mode: i32, want: NamespaceMode| mode == want as i32;
    let mut out = Vec::new();

    // PID: CONTAINER is private; NODE is the host's; POD (and TARGET) join
    // the pod's shared namespace when there is one.
    if !is(opts.pid, NamespaceMode::Node) {
        let path = if is(opts.pid, NamespaceMode::Container) {
            None
        } else {
            pod.pid_ns_path.clone()
        };
        out.push(ns(LinuxNamespaceType::Pid, path));
    }
    if let Some(path) = pod
        .ipcns
        .clone()
        .filter(|_| !is(opts.ipc, NamespaceMode::Node))
    {
        out.push(ns(LinuxNamespaceType::Ipc, Some(path)));
    }
    if let Some(path) = pod.utsns.clone() {
        out.push(ns(LinuxNamespaceType::Uts, Some(path)));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    if let Some(path) = pod
        .netns
        .clone()
        .filter(|_| !is(opts.network, NamespaceMode::Node))
    {
        out.push(ns(LinuxNamespaceType::Network, Some(path)));
    }
    if cgroup_ns {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    let id_mappings = match &pod.userns {
        Some(userns) => {
            out.push(ns(LinuxNamespaceType::User, userns.path.clone()));
            Some(mappings(userns)?)
        }
        None => None,
    };
    Ok(Namespaces {
        namespaces: out,
        id_mappings,
    })
}

fn mappings(
    userns: &UserNamespace,
) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>), SpecError> {
    const FIELD: &str = "linux.security_context.namespace_options.userns_options";
    if userns.uid_mappings.is_empty() || userns.gid_mappings.is_empty() {
        return Err(invalid(
            FIELD,
            "a user namespace needs both uid and gid mappings",
        ));
    }
    let convert = |list: &[(u32, u32, u32)]| -> Result<Vec<LinuxIdMapping>, SpecError> {
        list.iter()
            .map(|&(container_id, host_id, size)| {
                if size == 0 {
                    return Err(invalid(FIELD, "an id mapping has size 0"));
                }
                Ok(LinuxIdMappingBuilder::default()
                    .container_id(container_id)
                    .host_id(host_id)
                    .size(size)
                    .build()?)
            })
            .collect()
    };
    Ok((
        convert(&userns.uid_mappings)?,
        convert(&userns.gid_mappings)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::NamespaceOption;

    fn sc(
        network: NamespaceMode,
        pid: NamespaceMode,
        ipc: NamespaceMode,
    ) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: network as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod() -> PodPaths {
        PodPaths {
            netns: Some("/run/netns/pod".into()),
            ipcns: Some("/proc/10/ns/ipc".into()),
            utsns: Some("/proc/10/ns/uts".into()),
            pid_ns_path: Some("/proc/10/ns/pid".into()),
            ..Default::default()
        }
    }

    fn summary(n: &Namespaces) -> Vec<(LinuxNamespaceType, Option<String>)> {
        n.namespaces
            .iter()
            .map(|n| {
                (
                    n.typ(),
                    n.path().as_ref().map(|p| p.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn pod_namespaces_are_joined() {
        use LinuxNamespaceType::*;
        let n = build(
            &sc(
                NamespaceMode::Pod,
                NamespaceMode::Container,
                NamespaceMode::Pod,
            ),
            &pod(),
            false,
        )
        .expect("ns");
        assert_eq!(
            summary(&n),
            vec![
                (Pid, None),
                (Ipc, Some("/proc/10/ns/ipc".into())),
                (Uts, Some("/proc/10/ns/uts".into())),
                (Mount, None),
                (Network, Some("/run/netns/pod".into())),
            ]
        );
        assert!(n.id_mappings.is_none());
    }

    #[test]
    fn pid_modes() {
        use LinuxNamespaceType::*;
        let pid_of = |mode, p: &PodPaths| {
            let n = build(&sc(NamespaceMode::Pod, mode, NamespaceMode::Pod), p, false).expect("ns");
            summary(&n).into_iter().find(|(t, _)| *t == Pid)
        };
        assert_eq!(
            pid_of(NamespaceMode::Pod, &pod()),
            Some((Pid, Some("/proc/10/ns/pid".into())))
        );
        assert_eq!(
            pid_of(NamespaceMode::Target, &pod()),
            Some((Pid, Some("/proc/10/ns/pid".into())))
        );
        assert_eq!(pid_of(NamespaceMode::Container, &pod()), Some((Pid, None)));
        assert_eq!(pid_of(NamespaceMode::Node, &pod()), None);
        let no_shared = PodPaths {
            pid_ns_path: None,
            ..pod()
        };
        assert_eq!(pid_of(NamespaceMode::Pod, &no_shared), Some((Pid, None)));
        // No namespace options at all: POD, i.e. the shared namespace if any.
        let n = build(&LinuxContainerSecurityContext::default(), &pod(), false).expect("ns");
        assert_eq!(summary(&n)[0], (Pid, Some("/proc/10/ns/pid".into())));
    }

    #[test]
    fn host_namespaces_are_left_out() {
        use LinuxNamespaceType::*;
        let host = PodPaths::default();
        let n = build(
            &sc(
                NamespaceMode::Node,
                NamespaceMode::Node,
                NamespaceMode::Node,
            ),
            &host,
            false,
        )
        .expect("ns");
        assert_eq!(summary(&n), vec![(Mount, None)]);
        // NODE in the container's options wins over a pod path.
        let n = build(
            &sc(
                NamespaceMode::Node,
                NamespaceMode::Container,
                NamespaceMode::Node,
            ),
            &pod(),
            false,
        )
        .expect("ns");
        let types: Vec<_> = summary(&n).into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, vec![Pid, Uts, Mount]);
    }

    #[test]
    fn cgroup_and_user_namespaces() {
        use LinuxNamespaceType::*;
        let p = PodPaths {
            userns: Some(UserNamespace {
                uid_mappings: vec![(0, 100_000, 65_536)],
                gid_mappings: vec![(0, 200_000, 65_536)],
                path: Some("/run/vordr/ns/pod/user".into()),
            }),
            ..pod()
        };
        let n = build(&LinuxContainerSecurityContext::default(), &p, true).expect("ns");
        let types: Vec<_> = summary(&n).into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, vec![Pid, Ipc, Uts, Mount, Network, Cgroup, User]);
        assert_eq!(
            summary(&n).last().unwrap().1.as_deref(),
            Some("/run/vordr/ns/pod/user")
        );
        let (uids, gids) = n.id_mappings.expect("mappings");
        assert_eq!(
            (uids[0].container_id(), uids[0].host_id(), uids[0].size()),
            (0, 100_000, 65_536)
        );
        assert_eq!(gids[0].host_id(), 200_000);

        let bad = PodPaths {
            userns: Some(UserNamespace {
                uid_mappings: vec![(0, 1, 1)],
                gid_mappings: vec![],
                path: None,
            }),
            ..pod()
        };
        let err = build(&LinuxContainerSecurityContext::default(), &bad, false).unwrap_err();
        assert!(err.is_invalid_argument());
    }
}

//! SupplementalGroupsPolicy (KEP-3619): Status offers it; Merge (the
//! default) gives the process the groups the image's /etc/group lists its
//! user in, the primary gid and the requested groups, Strict only the last
//! two; exec'd processes get the same groups; ContainerStatus.user reports
//! them; an unknown policy is refused.
//!
//! The busybox image's /etc/group lists user 1000 ("app", primary group
//! 1000) in group 2000 ("extra").

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A container running as uid 1000 with group 1234 requested under
/// `policy`, printing its groups first.
fn groups_container(s: &Setup, name: &str, policy: i32) -> cri::ContainerConfig {
    let mut cfg = s.config(
        name,
        &["sh", "-c", "echo \"groups: $(id -G)\"; exec sleep 1000"],
    );
    let sc = cfg
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default);
    sc.run_as_user = Some(cri::Int64Value { value: 1000 });
    sc.supplemental_groups = vec![1234];
    sc.supplemental_groups_policy = policy;
    cfg
}

/// The gids `id -G` printed, sorted.
fn gids(out: &str) -> Vec<i64> {
    let mut v: Vec<i64> = out
        .split_whitespace()
        .map(|g| {
            g.parse()
                .unwrap_or_else(|_| panic!("id -G printed {out:?}"))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The groups the container's first process printed to its log.
async fn logged_gids(s: &Setup, pod: &str, name: &str) -> Vec<i64> {
    let log = s.wait_log(pod, name, "groups:").await;
    let line = log
        .lines()
        .find_map(|l| l.split_once("groups:").map(|(_, g)| g.to_string()))
        .expect("a groups line");
    gids(&line)
}

#[tokio::test]
async fn merge_and_strict_supplemental_groups() {
    let Some(mut s) = setup("sgp").await else {
        return;
    };
    let status =
        s.c.runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        status.features.map(|f| f.supplemental_groups_policy),
        Some(true)
    );

    let pod = s.pod("sgp", "").await;
    let cases = [
        (
            "merge",
            cri::SupplementalGroupsPolicy::Merge,
            vec![1000, 1234, 2000],
        ),
        (
            "strict",
            cri::SupplementalGroupsPolicy::Strict,
            vec![1000, 1234],
        ),
    ];
    for (name, policy, want) in cases {
        let id = s.run(&pod, groups_container(&s, name, policy as i32)).await;
        assert_eq!(logged_gids(&s, "sgp", name).await, want, "{name}: init");

        // An exec gets the container's groups.
        let out = s.exec(&id, &["id", "-G"], 10).await.unwrap();
        assert_eq!(out.exit_code, 0, "{name}: {out:?}");
        assert_eq!(
            gids(&String::from_utf8_lossy(&out.stdout)),
            want,
            "{name}: exec"
        );
        let out = s.exec(&id, &["id", "-u"], 10).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");

        let user = s
            .status(&id)
            .await
            .user
            .and_then(|u| u.linux)
            .expect("a user");
        assert_eq!((user.uid, user.gid), (1000, 1000), "{name}");
        let mut reported = user.supplemental_groups.clone();
        reported.sort_unstable();
        assert_eq!(reported, want, "{name}: ContainerStatus.user");
        s.stop_remove(&id).await;
    }

    // A policy outside the enum is refused, naming the field.
    let e = s
        .create(&pod, groups_container(&s, "bad", 7))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message()
            .contains("linux.security_context.supplemental_groups_policy"),
        "{e}"
    );
}

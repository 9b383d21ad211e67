//! The systemd driver's pod slices as transient units over systemd's
//! D-Bus API (org.freedesktop.systemd1.Manager on the system bus): started
//! with the pod (kubelet may have started it already), stopped with it.
//! The containers' scopes (`cri-vordr-<id>.scope`) are the runtime's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zbus::zvariant::Value;

use super::CgroupError;

/// How long a slice gets to appear or to go away once asked.
const UNIT_WAIT: Duration = Duration::from_secs(10);
/// A D-Bus call's own limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

fn err(what: &str) -> impl Fn(zbus::Error) -> CgroupError + '_ {
    move |e| CgroupError::Systemd(format!("{what}: {e}"))
}

/// The D-Bus error name of a method error (`org.freedesktop.systemd1.UnitExists`...).
fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        _ => None,
    }
}

/// Where systemd says it is the init system (as sd_booted(3) checks).
const BOOTED: &str = "/run/systemd/system";

/// Whether the systemd driver can work here: systemd must be the init
/// system. Checked when the daemon starts, and again before each call.
pub fn available() -> Result<(), CgroupError> {
    if Path::new(BOOTED).is_dir() {
        return Ok(());
    }
    Err(CgroupError::Unavailable(format!(
        "the systemd cgroup driver needs systemd as the init system ({BOOTED} is missing): \
         set [cgroup] driver = \"cgroupfs\""
    )))
}

async fn connect() -> Result<zbus::Connection, CgroupError> {
    available()?;
    tokio::time::timeout(CALL_TIMEOUT, zbus::Connection::system())
        .await
        .map_err(|_| CgroupError::Systemd("connecting to the system bus timed out".into()))?
        .map_err(err("connecting to the system bus"))
}

async fn call<B>(conn: &zbus::Connection, method: &str, body: &B) -> Result<(), zbus::Error>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    match tokio::time::timeout(
        CALL_TIMEOUT,
        conn.call_method(Some(DEST), PATH, Some(MANAGER), method, body),
    )
    .await
    {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(zbus::Error::Failure(format!("{method} timed out"))),
    }
}

/// The slice's unit name from its expanded path (its last component).
pub fn unit_name(slice_path: &str) -> Result<&str, CgroupError> {
    slice_path
        .rsplit('/')
        .next()
        .filter(|n| n.ends_with(".slice") && *n != "-.slice")
        .ok_or_else(|| CgroupError::Invalid(format!("{slice_path:?} is not a pod slice")))
}

/// Where systemd keeps the slice's cgroup: the unified tree, or the
/// `name=systemd` hierarchy on v1 and hybrid hosts.
fn cgroup_dir(root: &Path, slice_path: &str) -> PathBuf {
    let rel = slice_path.trim_start_matches('/');
    if super::mode::host() == super::mode::Mode::Unified {
        root.join(rel)
    } else {
        root.join("systemd").join(rel)
    }
}

async fn wait_for(dir: &Path, present: bool) -> Result<(), CgroupError> {
    let deadline = Instant::now() + UNIT_WAIT;
    while dir.is_dir() != present {
        if Instant::now() > deadline {
            return Err(CgroupError::Busy(format!(
                "{} did not {} within {}s",
                dir.display(),
                if present { "appear" } else { "go away" },
                UNIT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts the pod's slice (its parents are implied by its name), with
/// accounting on for every controller, as kubelet starts it. A slice that
/// already exists (kubelet's) is success.
pub async fn start_slice(slice_path: &str) -> Result<(), CgroupError> {
    let name = unit_name(slice_path)?;
    let conn = connect().await?;
    let props: Vec<(&str, Value<'_>)> = vec![
        (
            "Description",
            Value::from(format!("Vordr pod slice {name}")),
        ),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("IOAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
    ];
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    match call(&conn, "StartTransientUnit", &(name, "replace", props, aux)).await {
        Ok(()) => {}
        Err(e) if error_name(&e).as_deref() == Some("org.freedesktop.systemd1.UnitExists") => {}
        Err(e) => return Err(err("starting the pod slice")(e)),
    }
    wait_for(&cgroup_dir(Path::new(super::ROOT), slice_path), true).await
}

/// Stops the pod's slice: systemd stops (kills) every unit in it and
/// removes its cgroup. A slice systemd does not know is success.
pub async fn stop_slice(slice_path: &str) -> Result<(), CgroupError> {
    let name = unit_name(slice_path)?;
    let conn = connect().await?;
    match call(&conn, "StopUnit", &(name, "replace")).await {
        Ok(()) => {}
        Err(e) if error_name(&e).as_deref() == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
        Err(e) => return Err(err("stopping the pod slice")(e)),
    }
    wait_for(&cgroup_dir(Path::new(super::ROOT), slice_path), false).await
}

/// Sets the slice's resource properties (runtime only, as kubelet does),
/// so systemd keeps the limits Vordr also writes to the files.
pub async fn set_slice_properties(
    slice_path: &str,
    res: &k8s_cri::v1::LinuxContainerResources,
) -> Result<(), CgroupError> {
    let name = unit_name(slice_path)?;
    let mut props: Vec<(&str, Value<'_>)> = Vec::new();
    if res.cpu_shares > 0 {
        let weight = vordr_spec::cgroup::cpu_weight_from_shares(res.cpu_shares as u64);
        props.push(("CPUWeight", Value::from(weight)));
    }
    if res.cpu_quota > 0 {
        let period = if res.cpu_period > 0 {
            res.cpu_period as u64
        } else {
            100_000
        };
        // systemd takes quota per second of time.
        let per_sec = (res.cpu_quota as u64).saturating_mul(1_000_000) / period;
        props.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
    }
    if res.memory_limit_in_bytes > 0 {
        props.push(("MemoryMax", Value::from(res.memory_limit_in_bytes as u64)));
    }
    if props.is_empty() {
        return Ok(());
    }
    let conn = connect().await?;
    call(&conn, "SetUnitProperties", &(name, true, props))
        .await
        .map_err(err("setting the pod slice's properties"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_from_slice_paths() {
        assert_eq!(
            unit_name("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice")
                .unwrap(),
            "kubepods-burstable-pod1.slice"
        );
        assert!(unit_name("/").is_err());
        assert!(unit_name("/kubepods/pod1").is_err());
    }

    #[tokio::test]
    async fn without_systemd_the_error_says_so() {
        if Path::new(BOOTED).is_dir() {
            eprintln!("skipped: systemd runs here (the guest suite covers it)");
            return;
        }
        let e = start_slice("/vordr.slice/vordr-test.slice")
            .await
            .unwrap_err();
        assert!(matches!(e, CgroupError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("driver = \"cgroupfs\""), "{e}");
    }
}

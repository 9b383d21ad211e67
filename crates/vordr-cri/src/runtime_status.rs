//! Status: RuntimeReady and NetworkReady, with reasons, and with `verbose`
//! the effective configuration as `crictl info` shows it.

use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};

use crate::state::{Runtime, POD_CIDR_KEY};

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

fn condition(kind: &str, res: Result<(), (String, String)>) -> RuntimeCondition {
    match res {
        Ok(()) => RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Err((reason, message)) => RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason,
            message,
        },
    }
}

/// How long Status waits for the state database before it reports the
/// runtime not ready (a hung disk must not hang kubelet's node status).
const DB_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the schema version and the pod CIDR, on a blocking thread when
/// the runtime lives in an `Arc` (always, once serving).
async fn probe_db(rt: &Runtime) -> Result<Option<String>, (String, String)> {
    let read = |rt: &Runtime| {
        rt.store
            .schema_version()
            .map(|_| rt.store.get_setting(POD_CIDR_KEY).ok().flatten())
            .map_err(|e| {
                (
                    "StateStoreUnavailable".to_string(),
                    format!("the state database cannot be read: {e}"),
                )
            })
    };
    let Some(arc) = rt.arc() else {
        return read(rt);
    };
    match tokio::time::timeout(DB_PROBE, tokio::task::spawn_blocking(move || read(&arc))).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(("StateStoreUnavailable".into(), e.to_string())),
        Err(_) => Err((
            "StateStoreUnresponsive".into(),
            format!("the state database did not answer within {DB_PROBE:?}"),
        )),
    }
}

pub async fn status(rt: &Runtime, req: StatusRequest) -> StatusResponse {
    let db = probe_db(rt).await;
    let runtime = db.as_ref().map(|_| ()).map_err(Clone::clone);
    let net_health = rt.network_health().await;
    let network = net_health.as_ref().map(|_| ()).map_err(|e| {
        (
            "NetworkPluginNotReady".to_string(),
            format!("netavark is not usable: {e}"),
        )
    });
    let mut info = HashMap::new();
    if req.verbose {
        let pod_cidr = db.as_ref().ok().cloned().flatten();
        let v = serde_json::json!({
            "config": rt.config,
            "network": rt.network(),
            "podCIDR": pod_cidr,
            "netavark": match &net_health { Ok(v) => v.clone(), Err(e) => format!("error: {e}") },
            "database": {
                "path": rt.store.path(),
                "journalMode": format!("{:?}", rt.store.journal_mode()),
            },
            "streaming": rt.streaming.get().map(|s| s.addr().to_string()),
            "idmappedMounts": match rt.idmap_support() { Ok(v) => v.clone(), Err(e) => format!("error: {e}") },
            "gatekeeper": {
                "profile": rt.config.gatekeeper.profile.as_str(),
                "policyVersion": vordr_gatekeeper::version(),
            },
        });
        // `crictl info` prints each value as JSON, so each key holds JSON.
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                info.insert(k, v.to_string());
            }
        }
    }
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![
                condition(RUNTIME_READY, runtime),
                condition(NETWORK_READY, network),
            ],
        }),
        info,
        runtime_handlers: std::iter::once(String::new())
            .chain(rt.config.runtime.handlers.keys().cloned())
            .map(|name| RuntimeHandler {
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: rt.rro_support(&name),
                    // User-namespaced pods need idmapped layers and volumes.
                    user_namespaces: rt.idmap_support().is_ok(),
                }),
                name,
            })
            .collect(),
        features: Some(RuntimeFeatures {
            // Merge and Strict (vordr-spec's user module); ContainerStatus
            // reports the user from the spec.
            supplemental_groups_policy: true,
        }),
    }
}

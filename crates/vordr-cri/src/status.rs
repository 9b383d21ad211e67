//! Status: RuntimeReady and NetworkReady, with reasons, and with `verbose`
//! the effective configuration as `crictl info` shows it.

use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};

use crate::runtime::{Runtime, POD_CIDR_KEY};

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

pub async fn status(rt: &Runtime, req: StatusRequest) -> StatusResponse {
    let runtime = match rt.store.schema_version() {
        Ok(_) => Ok(()),
        Err(e) => Err((
            "StateStoreUnavailable".to_string(),
            format!("the state database cannot be read: {e}"),
        )),
    };
    let net_health = rt.network_health().await;
    let network = net_health.as_ref().map(|_| ()).map_err(|e| {
        (
            "NetworkPluginNotReady".to_string(),
            format!("netavark is not usable: {e}"),
        )
    });
    let mut info = HashMap::new();
    if req.verbose {
        let pod_cidr = rt.store.get_setting(POD_CIDR_KEY).ok().flatten();
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
                name,
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: true,
                }),
            })
            .collect(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: false,
        }),
    }
}

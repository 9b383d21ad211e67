//! UpdateRuntimeConfig: kubelet's pod CIDR, stored durably; new pods use it
//! when the config says so (`network.use_pod_cidr`).

use k8s_cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use tonic::Status;

use crate::state::errors::{internal, invalid};
use crate::state::{bridge_network, first_cidr, Runtime, POD_CIDR_KEY};

pub async fn update_runtime_config(
    rt: &Runtime,
    req: UpdateRuntimeConfigRequest,
) -> Result<UpdateRuntimeConfigResponse, Status> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    if cidr.is_empty() {
        return Ok(UpdateRuntimeConfigResponse {});
    }
    first_cidr(&cidr).map_err(|e| invalid("runtime_config.network_config.pod_cidr", e))?;
    rt.store
        .set_setting(POD_CIDR_KEY, &cidr)
        .map_err(|e| internal("storing the pod CIDR", e))?;
    let net = bridge_network(&rt.config, Some(&cidr));
    tracing::info!(pod_cidr = %cidr, subnet = %net.subnet, "runtime config updated");
    rt.set_network(net);
    // Slots attached to the old network are dropped and replaced.
    rt.pool_notify.notify_one();
    Ok(UpdateRuntimeConfigResponse {})
}

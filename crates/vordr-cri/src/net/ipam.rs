//! Vordr's own IPAM for the netavark driver: a pod's addresses, one per
//! family, allocated round-robin in the bridge network's subnets and kept
//! in the store.

use vordr_net::ipam;

use crate::state::Runtime;

/// Why no address could be allocated.
pub enum AllocError {
    Exhausted(String),
    Store(String),
}

/// An address for pod `id` in `network`'s subnet and, when dual-stack, one
/// in its second subnet (allocated under `<name>/6`, so each family keeps
/// its own round-robin position).
pub fn allocate_addresses(
    rt: &Runtime,
    id: &str,
    network: &vordr_net::netavark::BridgeNetwork,
) -> Result<(std::net::IpAddr, Option<std::net::IpAddr>), AllocError> {
    let one = |key: &str, subnet: ipnet::IpNet| {
        rt.store
            .allocate_ip(id, key, |used, last| ipam::pick(&subnet, used, last))
            .map_err(|e| AllocError::Store(e.to_string()))?
            .ok_or_else(|| AllocError::Exhausted(format!("no free IP address left in {subnet}")))
    };
    let addr = one(&network.name, network.subnet)?;
    let addr6 = match network.subnet6 {
        Some(s6) => Some(one(&format!("{}/6", network.name), s6)?),
        None => None,
    };
    Ok((addr, addr6))
}

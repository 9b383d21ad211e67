//! Pod networking for Vordr: pinning a pod's namespaces without a pause
//! process, applying namespaced sysctls, allocating addresses, driving
//! netavark, and writing the pod's resolv.conf.

pub mod ipam;
pub mod link;
pub mod mtu;
pub mod netavark;
pub mod netns;
pub mod resolv;
pub mod sysctl;

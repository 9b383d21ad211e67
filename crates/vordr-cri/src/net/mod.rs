//! Pod networking beside netavark (in vordr-net): the CNI driver and the
//! warm pool of pre-attached network namespaces.

pub(crate) mod cni;
pub(crate) mod ipam;
pub(crate) mod pool;

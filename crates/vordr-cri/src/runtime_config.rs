//! RuntimeConfig: the cgroup driver, so kubelet can match it.

use k8s_cri::v1::{CgroupDriver as CriDriver, LinuxRuntimeConfiguration, RuntimeConfigResponse};
use vordr_config::CgroupDriver;

use crate::state::Runtime;

pub fn runtime_config(rt: &Runtime) -> RuntimeConfigResponse {
    let driver = match rt.config.cgroup.driver {
        CgroupDriver::Cgroupfs => CriDriver::Cgroupfs,
        CgroupDriver::Systemd => CriDriver::Systemd,
    };
    RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    }
}

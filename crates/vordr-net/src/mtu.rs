//! The node's MTU: that of the interface its default route leaves by, so
//! that pod traffic fits the node's network (1400 on many clouds and
//! overlays, where 1500 would fragment or black-hole).

use std::path::Path;

/// The interface of the default route with the lowest metric, from the
/// text of /proc/net/route.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let up = u32::from_str_radix(flags, 16).ok()? & 1 == 1;
            (up && *dest == "00000000" && *mask == "00000000")
                .then(|| (metric.parse::<u64>().unwrap_or(u64::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The MTU of the node's default-route interface, if it has one.
pub fn node_mtu() -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = default_route_interface(&table)?;
    if iface.contains('/') || iface.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(Path::new("/sys/class/net").join(iface).join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|m| (576..=65536).contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        ens3\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        ens3\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
        down0\t00000000\t010200C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n";

    #[test]
    fn the_default_route_with_the_lowest_metric() {
        assert_eq!(default_route_interface(TABLE).as_deref(), Some("ens3"));
        let no_default = "Iface\tDestination\n eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(default_route_interface(no_default), None);
    }

    #[test]
    fn this_node_has_an_mtu_when_it_has_a_default_route() {
        let table = std::fs::read_to_string("/proc/net/route").unwrap();
        if default_route_interface(&table).is_some() {
            assert!(node_mtu().is_some());
        }
    }
}

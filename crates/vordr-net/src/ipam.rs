//! Address selection inside a pod subnet. The allocation itself is recorded
//! by the store in one transaction; this module only decides which address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The gateway of `subnet`: its first host address (what the bridge gets).
pub fn gateway(subnet: &IpNet) -> IpAddr {
    offset(subnet.network(), 1)
}

fn offset(ip: IpAddr, by: u128) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(by as u32))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(by))),
    }
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Picks a free address in `subnet`, round-robin after `last` (as CNI's
/// host-local does, so a released address is not reused at once). Skips the
/// network address, the gateway and, for IPv4, the broadcast address.
/// Returns `None` when every address is taken.
pub fn pick(subnet: &IpNet, used: &BTreeSet<IpAddr>, last: Option<IpAddr>) -> Option<IpAddr> {
    let first = as_u128(subnet.network()) + 2; // network, gateway
    let end = match subnet {
        IpNet::V4(_) => as_u128(subnet.broadcast()) - 1,
        IpNet::V6(_) => as_u128(subnet.broadcast()),
    };
    if first > end {
        return None;
    }
    let span = end - first + 1;
    let start = match last {
        Some(l) if subnet.contains(&l) && as_u128(l) >= first && as_u128(l) <= end => {
            (as_u128(l) - first + 1) % span
        }
        _ => 0,
    };
    // Bound the scan: the subnet may be huge (IPv6), the used set is not.
    let limit = span.min(used.len() as u128 + 1);
    (0..limit)
        .map(|i| offset(subnet.network(), 2 + (start + i) % span))
        .find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn gateway_is_first_host() {
        assert_eq!(
            gateway(&"10.88.0.0/16".parse().unwrap()).to_string(),
            "10.88.0.1"
        );
        assert_eq!(
            gateway(&"fd00::/64".parse().unwrap()).to_string(),
            "fd00::1"
        );
    }

    #[test]
    fn first_pick_skips_network_and_gateway() {
        let n = "10.88.0.0/16".parse().unwrap();
        assert_eq!(pick(&n, &set(&[]), None).unwrap().to_string(), "10.88.0.2");
    }

    #[test]
    fn round_robin_after_last() {
        let n = "10.88.0.0/16".parse().unwrap();
        let last = Some("10.88.0.7".parse().unwrap());
        assert_eq!(
            pick(&n, &set(&["10.88.0.2"]), last).unwrap().to_string(),
            "10.88.0.8"
        );
    }

    #[test]
    fn wraps_and_skips_used_and_broadcast() {
        let n: IpNet = "192.168.5.0/29".parse().unwrap(); // hosts .2 to .6
        let last = Some("192.168.5.6".parse().unwrap());
        assert_eq!(
            pick(&n, &set(&["192.168.5.2"]), last).unwrap().to_string(),
            "192.168.5.3"
        );
        let full = set(&[
            "192.168.5.2",
            "192.168.5.3",
            "192.168.5.4",
            "192.168.5.5",
            "192.168.5.6",
        ]);
        assert_eq!(pick(&n, &full, last), None);
        let all_but_5 = set(&["192.168.5.2", "192.168.5.3", "192.168.5.4", "192.168.5.6"]);
        assert_eq!(
            pick(&n, &all_but_5, last).unwrap().to_string(),
            "192.168.5.5"
        );
    }

    #[test]
    fn last_outside_subnet_restarts_at_first() {
        let n = "10.1.0.0/24".parse().unwrap();
        let last = Some("10.88.0.9".parse().unwrap());
        assert_eq!(pick(&n, &set(&[]), last).unwrap().to_string(), "10.1.0.2");
    }

    #[test]
    fn every_address_once_until_exhausted() {
        let n: IpNet = "10.9.0.0/26".parse().unwrap();
        let mut used = BTreeSet::new();
        let mut last = None;
        while let Some(ip) = pick(&n, &used, last) {
            assert!(n.contains(&ip));
            assert!(used.insert(ip), "{ip} handed out twice");
            last = Some(ip);
        }
        assert_eq!(used.len(), 64 - 3);
    }

    #[test]
    fn ipv6_works() {
        let n = "fd00:88::/64".parse().unwrap();
        assert_eq!(
            pick(&n, &set(&["fd00:88::2"]), None).unwrap().to_string(),
            "fd00:88::3"
        );
    }
}

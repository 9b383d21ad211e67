//! The pod's resolv.conf, from the CRI DNSConfig or the host's file.

/// Renders a resolv.conf from DNS servers, search domains and options, in
/// the order and form containerd and CRI-O write it.
pub fn render(servers: &[String], searches: &[String], options: &[String]) -> String {
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str("search ");
        out.push_str(&searches.join(" "));
        out.push('\n');
    }
    for s in servers {
        out.push_str("nameserver ");
        out.push_str(s);
        out.push('\n');
    }
    if !options.is_empty() {
        out.push_str("options ");
        out.push_str(&options.join(" "));
        out.push('\n');
    }
    out
}

/// Checks one DNS config entry: no whitespace that would break the file.
pub fn valid_entry(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_parts() {
        let s = render(
            &["10.0.0.10".into(), "8.8.8.8".into()],
            &["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            &["ndots:5".into()],
        );
        assert_eq!(
            s,
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"
        );
    }

    #[test]
    fn empty_config_is_empty_file() {
        assert_eq!(render(&[], &[], &[]), "");
    }

    #[test]
    fn entries_with_spaces_are_invalid() {
        assert!(valid_entry("ndots:5"));
        assert!(!valid_entry("a b"));
        assert!(!valid_entry("a\nnameserver 1.1.1.1"));
        assert!(!valid_entry(""));
    }
}

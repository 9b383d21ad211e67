//! Stop signals: the CRI `Signal` enum (Kubernetes 1.33's container stop
//! signals) and image `StopSignal` strings as names and numbers.
//!
//! Names are the canonical ones ("SIGTERM", "SIGRTMIN+3", "SIGRTMAX-2");
//! numbers are those of the C library the containers' tools use (glibc and
//! Go both put SIGRTMIN at 34, SIGRTMAX at 64).

use k8s_cri::v1::Signal;

/// glibc's (and Go's) first real-time signal: the kernel's 32, less the two
/// the C library keeps for itself.
const RTMIN: i32 = 34;
/// The last real-time signal.
const RTMAX: i32 = 64;

/// The canonical name of a CRI signal; `None` for `RUNTIME_DEFAULT`.
pub fn cri_name(s: Signal) -> Option<String> {
    let n = s.as_str_name();
    if s == Signal::RuntimeDefault {
        return None;
    }
    if let Some(k) = n.strip_prefix("SIGRTMINPLUS") {
        return Some(format!("SIGRTMIN+{k}"));
    }
    if let Some(k) = n.strip_prefix("SIGRTMAXMINUS") {
        return Some(format!("SIGRTMAX-{k}"));
    }
    Some(n.to_string())
}

/// The stop signal a ContainerConfig asks for: its name, `None` when the
/// runtime chooses, InvalidArgument-worthy text for a value outside the enum.
pub fn requested(stop_signal: i32) -> Result<Option<String>, String> {
    let s = Signal::try_from(stop_signal)
        .map_err(|_| format!("{stop_signal} is not a known signal"))?;
    Ok(cri_name(s))
}

/// The number of a signal given as a name ("SIGTERM", "TERM", "sigquit",
/// "SIGRTMIN+3") or a number ("15"); `None` when it names no signal.
pub fn number(name: &str) -> Option<i32> {
    let n = name.trim();
    if let Ok(v) = n.parse::<i32>() {
        return (1..=RTMAX).contains(&v).then_some(v);
    }
    let up = n.to_ascii_uppercase();
    let up = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rest) = up.strip_prefix("SIGRTMIN") {
        return realtime(rest, RTMIN, 1);
    }
    if let Some(rest) = up.strip_prefix("SIGRTMAX") {
        return realtime(rest, RTMAX, -1);
    }
    let canonical = match up.as_str() {
        "SIGIOT" => "SIGABRT",
        "SIGCLD" => "SIGCHLD",
        "SIGPOLL" => "SIGIO",
        other => other,
    };
    canonical
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// "" or "+k" after SIGRTMIN (`dir` 1), "" or "-k" after SIGRTMAX (`dir` -1).
fn realtime(rest: &str, base: i32, dir: i32) -> Option<i32> {
    if rest.is_empty() {
        return Some(base);
    }
    let sign = if dir > 0 { '+' } else { '-' };
    let k: i32 = rest.strip_prefix(sign)?.parse().ok()?;
    let v = base + dir * k;
    (RTMIN..=RTMAX).contains(&v).then_some(v)
}

/// The CRI signal for a signal name or number, `RUNTIME_DEFAULT` when it
/// names none. Aliases come back as their first name (SIGIOT as SIGABRT).
pub fn to_cri(name: &str) -> Signal {
    let Some(v) = number(name) else {
        return Signal::RuntimeDefault;
    };
    if v >= RTMIN {
        let name = if v - RTMIN <= 15 {
            match v - RTMIN {
                0 => "SIGRTMIN".to_string(),
                k => format!("SIGRTMINPLUS{k}"),
            }
        } else {
            match RTMAX - v {
                0 => "SIGRTMAX".to_string(),
                k => format!("SIGRTMAXMINUS{k}"),
            }
        };
        return Signal::from_str_name(&name).unwrap_or(Signal::RuntimeDefault);
    }
    (1..=34)
        .filter_map(|i| Signal::try_from(i).ok())
        .find(|s| cri_name(*s).and_then(|n| number(&n)) == Some(v))
        .unwrap_or(Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("SIGTERM"), Some(15));
        assert_eq!(number("quit"), Some(3));
        assert_eq!(number("9"), Some(9));
        assert_eq!(number("SIGIOT"), Some(6));
        assert_eq!(number("SIGPOLL"), Some(29));
        assert_eq!(number("SIGRTMIN"), Some(34));
        assert_eq!(number("SIGRTMIN+3"), Some(37));
        assert_eq!(number("RTMAX-2"), Some(62));
        assert_eq!(number("SIGRTMAX"), Some(64));
        for bad in ["", "SIGNOPE", "SIGRTMIN+31", "SIGRTMIN-1", "0", "65", "-3"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_cri_signal_has_a_number_and_comes_back() {
        for i in 1..=65 {
            let s = Signal::try_from(i).unwrap();
            let name = cri_name(s).unwrap();
            let n = number(&name).unwrap_or_else(|| panic!("{name} has no number"));
            let back = to_cri(&name);
            // Aliases come back under their first name, with the same number.
            assert_eq!(number(&cri_name(back).unwrap()), Some(n), "{name}");
        }
        assert_eq!(to_cri("SIGCLD"), Signal::Sigchld);
        assert_eq!(to_cri("SIGRTMIN+15"), Signal::Sigrtminplus15);
        assert_eq!(to_cri("SIGRTMAX-14"), Signal::Sigrtmaxminus14);
        assert_eq!(to_cri("15"), Signal::Sigterm);
        assert_eq!(to_cri("bogus"), Signal::RuntimeDefault);
    }

    #[test]
    fn requested_signal() {
        assert_eq!(requested(0), Ok(None));
        assert_eq!(
            requested(Signal::Sigusr1 as i32),
            Ok(Some("SIGUSR1".into()))
        );
        assert_eq!(
            requested(Signal::Sigrtminplus3 as i32),
            Ok(Some("SIGRTMIN+3".into()))
        );
        assert!(requested(66).is_err());
        assert!(requested(-1).is_err());
    }
}

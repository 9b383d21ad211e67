//! Single-use tokens for streaming URLs: random, removed on first use,
//! worthless after [`TOKEN_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// What an Exec URL was handed out for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// What a PortForward URL was handed out for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardTarget {
    pub pod_id: String,
    /// The ports the request named; empty allows any.
    pub ports: Vec<u16>,
}

/// What a URL leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Exec(ExecTarget),
    /// Attach to the container's main process (`cmd` is empty).
    Attach(ExecTarget),
    PortForward(PortForwardTarget),
}

pub struct Tokens<T = Target> {
    map: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Default for Tokens<T> {
    fn default() -> Self {
        Tokens {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Tokens<T> {
    /// A fresh token for `target`.
    pub fn insert(&self, target: T) -> String {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the kernel's random source works");
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_TTL);
        map.insert(token.clone(), (now, target));
        token
    }

    /// Takes the token's target: `None` if unknown, used or expired.
    pub fn take(&self, token: &str) -> Option<T> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (at, target) = map.remove(token)?;
        (at.elapsed() < TOKEN_TTL).then_some(target)
    }

    #[cfg(test)]
    fn age(&self, token: &str, by: Duration) {
        let mut map = self.map.lock().unwrap();
        if let Some((at, _)) = map.get_mut(token) {
            *at -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ExecTarget {
        ExecTarget {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        }
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let t = Tokens::<ExecTarget>::default();
        let a = t.insert(target());
        let b = t.insert(target());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(t.take(&a), Some(target()));
        assert_eq!(t.take(&a), None);
        t.age(&b, TOKEN_TTL + Duration::from_secs(1));
        assert_eq!(t.take(&b), None);
        assert_eq!(t.take("nope"), None);
    }
}

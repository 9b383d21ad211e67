//! The process's environment, checked and de-duplicated like runc's, HOME from /etc/passwd.

/// runc's `prepareEnv`: validate NAME=VALUE entries, drop duplicates (the last one wins, in the
/// position of the last one), drop an empty HOME. Returns (env, HOME present, PATH value).
pub(super) fn prepare_env(env: &[String]) -> Result<(Vec<String>, bool, Option<String>), String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut seen = std::collections::HashSet::new();
    let mut has_home = false;
    let mut path = None;
    for kv in env.iter().rev() {
        let Some((key, value)) = kv.split_once('=') else {
            return Err(format!("environment entry {kv:?} has no '='"));
        };
        if key.is_empty() {
            return Err(format!("environment entry {kv:?} has an empty name"));
        }
        if kv.contains('\0') {
            return Err(format!("environment variable {key} contains a NUL byte"));
        }
        if !seen.insert(key.to_string()) {
            continue;
        }
        if key == "PATH" {
            path = Some(value.to_string());
        }
        if key == "HOME" {
            if value.is_empty() {
                continue;
            }
            has_home = true;
        }
        out.push(kv.clone());
    }
    out.reverse();
    Ok((out, has_home, path))
}

/// HOME for a process without one: the uid's home in the container's /etc/passwd, else "/".
pub(super) fn passwd_home(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|content| home_from_passwd(&content, uid))
        .unwrap_or_else(|| "/".to_string())
}

fn home_from_passwd(content: &str, uid: u32) -> Option<String> {
    content.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let home = fields.get(5).copied().unwrap_or("");
        if fields.len() >= 7
            && fields[2].parse::<u32>().ok() == Some(uid)
            && !home.is_empty()
            && !home.contains('\0')
        {
            Some(home.to_string())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsexec_prepare_env_like_runc() {
        let env: Vec<String> = ["A=1", "PATH=/x", "HOME=", "A=2", "B=b=c", "PATH=/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (out, has_home, path) = prepare_env(&env).unwrap();
        assert_eq!(out, vec!["A=2", "B=b=c", "PATH=/y"]);
        assert!(!has_home);
        assert_eq!(path.as_deref(), Some("/y"));
        let (_, has_home, path) = prepare_env(&["HOME=/h".to_string()]).unwrap();
        assert!(has_home);
        assert_eq!(path, None);
        assert!(prepare_env(&["NOEQUALS".to_string()]).is_err());
        assert!(prepare_env(&["=x".to_string()]).is_err());
        assert!(prepare_env(&["A=\0".to_string()]).is_err());
    }

    #[test]
    fn nsexec_home_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad line\nu:x:1000:1000::/home/u:/bin/sh\n\
                      nohome:x:7:7:::/bin/sh\nnul:x:8:8::/a\0b:/bin/sh\n";
        assert_eq!(home_from_passwd(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(home_from_passwd(passwd, 1000).as_deref(), Some("/home/u"));
        assert_eq!(home_from_passwd(passwd, 7), None);
        assert_eq!(home_from_passwd(passwd, 8), None);
        assert_eq!(home_from_passwd(passwd, 42), None);
    }
}

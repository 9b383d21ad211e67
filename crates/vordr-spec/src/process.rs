//! The container process: argv, environment and working directory.

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};

use crate::{invalid, io_error, ImageConfig, PodPaths, SpecError};

/// PATH every container starts with; the image's PATH replaces it.
pub(crate) const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv from the CRI command/args and the image's entrypoint/cmd, with
/// docker's rules: a CRI command replaces the entrypoint and drops the image
/// cmd; CRI args replace the image cmd; an entrypoint of `[""]` is no
/// entrypoint.
pub(crate) fn args(
    config: &ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    let mut argv = config.command.clone();
    let mut rest = config.args.clone();
    if argv.is_empty() {
        if rest.is_empty() {
            rest = image.cmd.clone();
        }
        let no_entrypoint = image.entrypoint.len() == 1 && image.entrypoint[0].is_empty();
        if !no_entrypoint {
            argv = image.entrypoint.clone();
        }
    }
    argv.extend(rest);
    if argv.is_empty() {
        return Err(invalid(
            "command",
            "no command specified: the container config and the image set neither a command nor args",
        ));
    }
    Ok(argv)
}

/// The value of HOSTNAME=: the pod's hostname, the sandbox config's, or the host's.
pub(crate) fn hostname(pod: &PodPaths, sandbox: &PodSandboxConfig) -> Result<String, SpecError> {
    if !pod.hostname.is_empty() {
        return Ok(pod.hostname.clone());
    }
    if !sandbox.hostname.is_empty() {
        return Ok(sandbox.hostname.clone());
    }
    let name = nix::unistd::gethostname()
        .map_err(|e| io_error("reading the host's hostname", e.into()))?;
    Ok(name.to_string_lossy().into_owned())
}

/// The environment: default PATH, TERM=xterm for a tty, HOSTNAME, then the
/// image's variables, then the CRI's, each replacing an earlier one of the
/// same name in place.
pub(crate) fn env(config: &ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env = Env::default();
    env.apply(DEFAULT_PATH_ENV);
    if config.tty {
        env.apply("TERM=xterm");
    }
    env.apply(&format!("HOSTNAME={hostname}"));
    for entry in &image.env {
        env.apply(entry);
    }
    for kv in &config.envs {
        env.apply(&format!("{}={}", kv.key, kv.value));
    }
    env.into_vec()
}

/// The working directory: the CRI's, the image's, or "/".
pub(crate) fn cwd(config: &ContainerConfig, image: &ImageConfig) -> String {
    if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".to_string()
    }
}

/// An ordered environment where setting a present key replaces it in place
/// and an entry without '=' removes its key.
#[derive(Default)]
struct Env {
    entries: Vec<Option<String>>,
}

impl Env {
    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.as_deref()
                .is_some_and(|e| e.split_once('=').map_or(e, |(k, _)| k) == key)
        })
    }

    fn apply(&mut self, entry: &str) {
        match entry.split_once('=') {
            None => {
                if let Some(i) = self.position(entry) {
                    self.entries[i] = None;
                }
            }
            Some((key, _)) => match self.position(key) {
                Some(i) => self.entries[i] = Some(entry.to_string()),
                None => self.entries.push(Some(entry.to_string())),
            },
        }
    }

    fn into_vec(self) -> Vec<String> {
        self.entries.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::KeyValue;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: strings(entrypoint),
            cmd: strings(cmd),
            ..Default::default()
        }
    }

    fn config(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: strings(command),
            args: strings(args),
            ..Default::default()
        }
    }

    /// (CRI command, CRI args, image entrypoint, image cmd, expected argv).
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn entrypoint_cmd_table() {
        let table: &[Case] = &[
            (&[], &[], &["/ep"], &["c1", "c2"], &["/ep", "c1", "c2"]),
            (
                &[],
                &[],
                &[],
                &["/bin/sh", "-c", "x"],
                &["/bin/sh", "-c", "x"],
            ),
            (&[], &[], &["/ep"], &[], &["/ep"]),
            (&[], &["a1"], &["/ep"], &["c1"], &["/ep", "a1"]),
            (&["/cmd"], &[], &["/ep"], &["c1"], &["/cmd"]),
            (
                &["/cmd"],
                &["a1", "a2"],
                &["/ep"],
                &["c1"],
                &["/cmd", "a1", "a2"],
            ),
            (&[], &["a1"], &[], &["c1"], &["a1"]),
            (&[], &[], &[""], &["c1"], &["c1"]),
            (&[], &["a1"], &[""], &["c1"], &["a1"]),
            (&[], &[], &["/ep", ""], &[], &["/ep", ""]),
        ];
        for (cmd, args_in, ep, img_cmd, want) in table {
            let got = args(&config(cmd, args_in), &image(ep, img_cmd)).expect("argv");
            assert_eq!(
                got,
                strings(want),
                "command={cmd:?} args={args_in:?} entrypoint={ep:?} cmd={img_cmd:?}"
            );
        }
    }

    #[test]
    fn no_command_anywhere_is_invalid() {
        let err = args(&config(&[], &[]), &image(&[], &[])).unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(err.to_string().starts_with("command:"), "{err}");
        let err = args(&config(&[], &[]), &image(&[""], &[])).unwrap_err();
        assert!(err.is_invalid_argument());
    }

    #[test]
    fn env_image_then_cri_override() {
        let img = ImageConfig {
            env: strings(&["PATH=/img/bin", "A=1", "B=2"]),
            ..Default::default()
        };
        let cfg = ContainerConfig {
            envs: vec![
                KeyValue {
                    key: "B".into(),
                    value: "cri".into(),
                },
                KeyValue {
                    key: "C".into(),
                    value: "x=y".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            env(&cfg, &img, "pod-a"),
            strings(&["PATH=/img/bin", "HOSTNAME=pod-a", "A=1", "B=cri", "C=x=y"])
        );
    }

    #[test]
    fn env_defaults_tty_and_unset() {
        let cfg = ContainerConfig {
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            env(&cfg, &ImageConfig::default(), "h"),
            strings(&[DEFAULT_PATH_ENV, "TERM=xterm", "HOSTNAME=h"])
        );
        // An image entry without '=' removes the variable; image can override HOSTNAME.
        let img = ImageConfig {
            env: strings(&["TERM", "HOSTNAME=img", "EMPTY="]),
            ..Default::default()
        };
        assert_eq!(
            env(&cfg, &img, "h"),
            strings(&[DEFAULT_PATH_ENV, "HOSTNAME=img", "EMPTY="])
        );
    }

    #[test]
    fn cwd_order() {
        let mut cfg = ContainerConfig::default();
        let mut img = ImageConfig::default();
        assert_eq!(cwd(&cfg, &img), "/");
        img.working_dir = "/img".into();
        assert_eq!(cwd(&cfg, &img), "/img");
        cfg.working_dir = "/cri".into();
        assert_eq!(cwd(&cfg, &img), "/cri");
    }

    #[test]
    fn hostname_fallbacks() {
        let mut pod = PodPaths::default();
        let mut sandbox = PodSandboxConfig::default();
        let host = hostname(&pod, &sandbox).expect("host hostname");
        assert!(!host.is_empty());
        sandbox.hostname = "from-sandbox".into();
        assert_eq!(hostname(&pod, &sandbox).expect("h"), "from-sandbox");
        pod.hostname = "from-pod".into();
        assert_eq!(hostname(&pod, &sandbox).expect("h"), "from-pod");
    }
}

//! The operator verbs (`vordr ps`, `run`, `exec`, `logs`, `inspect`,
//! `stop`, `rm`, `stats`, `pods`) run as a person would run them, against
//! a real daemon: their output, exit codes and error messages.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vordr_e2e::*;

/// One test's daemon with the busybox image, and its pods' log
/// directories (under the temporary directory) removed at the end.
struct Cli {
    _reg: registry::Registry,
    d: Daemon,
    image: String,
    /// The namespace this test's pods are run in.
    ns: String,
}

impl Drop for Cli {
    fn drop(&mut self) {
        // `{ns}_name_uid`, or `{ns}-more_name_uid` for a second namespace.
        let prefix = self.ns.clone();
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

async fn cli(tag: &str) -> Option<Cli> {
    cli_with(tag, "").await
}

/// [`cli`] with `[gatekeeper]` TOML lines.
async fn cli_with(tag: &str, gatekeeper: &str) -> Option<Cli> {
    let (reg, d, image) = daemon_with_busybox_and(tag, gatekeeper).await?;
    Some(Cli {
        _reg: reg,
        d,
        image,
        ns: format!("cli-{tag}-{}", std::process::id()),
    })
}

/// What a run of `vordr` gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Ran {
    fn ok(self) -> Ran {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Cli {
    /// `vordr VERB -r SOCKET ARGS...`, stdin empty.
    fn command(&self, verb: &str, args: &[&str]) -> Command {
        let mut c = Command::new(vordr_bin());
        c.arg(verb)
            .arg("-r")
            .arg(&self.d.socket)
            .args(args)
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, verb: &str, args: &[&str]) -> Ran {
        self.command(verb, args).output().unwrap().into()
    }

    /// With `input` on stdin.
    fn run_in(&self, verb: &str, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Ran {
        let mut child = self
            .command(verb, args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap().into()
    }

    /// `vordr run -d` in this test's namespace; the container id.
    fn run_detached(&self, name: &str, extra: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["-d", "--name", name, "--namespace", &self.ns];
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.push("--");
        args.extend_from_slice(cmd);
        let r = self.run("run", &args).ok();
        let id = r.stdout.trim().to_string();
        assert!(
            id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{r:?}"
        );
        id
    }

    /// The string fields `keys` of each row `vordr VERB --json ARGS` lists.
    fn rows(&self, verb: &str, args: &[&str], keys: &[&str]) -> Vec<Vec<String>> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let v = self.run(verb, &a).ok().json();
        let row = |r: &serde_json::Value| -> Vec<String> {
            keys.iter()
                .map(|k| r[k].as_str().unwrap().to_string())
                .collect()
        };
        v.as_array().unwrap().iter().map(row).collect()
    }

    /// `ps -a --json`, as (id, name, state).
    fn containers(&self) -> Vec<(String, String, String)> {
        let rows = self.rows("ps", &["-a"], &["id", "name", "state"]);
        rows.into_iter()
            .map(|mut r| (r.remove(0), r.remove(0), r.remove(0)))
            .collect()
    }

    /// `pods --json`, as (id, name).
    fn pods(&self) -> Vec<(String, String)> {
        let rows = self.rows("pods", &[], &["id", "name"]);
        rows.into_iter()
            .map(|mut r| (r.remove(0), r.remove(0)))
            .collect()
    }

    /// Waits until `vordr logs ID` prints `needle`; that output.
    fn wait_logs(&self, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.run("logs", &[id]);
            if r.stdout.contains(needle) {
                return r.stdout;
            }
            assert!(Instant::now() < deadline, "never logged {needle:?}: {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_state(&self, id: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self.containers();
            if all.iter().any(|(i, _, s)| i == id && s == state) {
                return;
            }
            assert!(Instant::now() < deadline, "{id} never {state}: {all:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn is_unknown(r: &Ran, what: &str) {
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stderr,
        format!("vordr: no container or pod matches '{what}'\n"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_detached_ps_inspect_stop_rm_and_resolution() {
    let Some(t) = cli("ps").await else {
        return;
    };
    let web = t.run_detached("web", &["--label", "app=web"], &["sleep", "300"]);
    let other = t.run_detached("other", &["-e", "GREETING=hi there"], &["sleep", "300"]);

    // The table: a header, one row per running container, short ids.
    let table = t.run("ps", &[]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("CONTAINER") && lines[0].contains("POD ID"),
        "{table}"
    );
    let row = lines.iter().find(|l| l.starts_with(&web[..13])).unwrap();
    assert!(row.contains("Running") && row.contains(" web "), "{table}");
    assert!(row.contains(&t.image), "{table}");

    // Filters: labels, the pod (by name: the pod, not its container).
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["-q"];
        a.extend_from_slice(args);
        let out = t.run("ps", &a).ok().stdout;
        out.lines().map(String::from).collect()
    };
    assert_eq!(ids(&["--label", "app=web"]), [web.as_str()]);
    assert!(ids(&["--label", "app=nope"]).is_empty());
    assert_eq!(ids(&["--pod", "other"]), [other.as_str()]);
    let pods = t.pods();
    let web_pod = pods.iter().find(|(_, n)| n == "web").unwrap().0.clone();
    assert_eq!(ids(&["--pod", &web_pod[..12]]), [web.as_str()]);
    let r = t.run("ps", &["--pod", "nothing"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no pod matches 'nothing'"), "{r:?}");

    // Inspect: by name, by prefix, a pod; JSON with the verbose info.
    let c = t.run("inspect", &["web"]).ok().json();
    assert_eq!(c["kind"], "container");
    assert_eq!(c["id"], web.as_str());
    assert_eq!(c["status"]["metadata"]["name"], "web");
    assert!(c["info"]["info"].is_object(), "{c}");
    let envs = t.run("inspect", &[&other[..10]]).ok().json();
    assert_eq!(envs["id"], other.as_str());
    assert!(envs.to_string().contains("GREETING=hi there"), "{envs}");
    let p = t.run("inspect", &[&web_pod]).ok().json();
    assert_eq!(p["kind"], "pod");
    assert_eq!(p["status"]["metadata"]["namespace"], t.ns.as_str());

    // Unknown ids, in every verb that takes one.
    is_unknown(&t.run("inspect", &["xyz"]), "xyz");
    is_unknown(&t.run("logs", &["xyz"]), "xyz");
    is_unknown(&t.run("exec", &["xyz", "--", "true"]), "xyz");
    is_unknown(&t.run("stop", &["xyz"]), "xyz");
    is_unknown(&t.run("rm", &["-f", "xyz"]), "xyz");
    is_unknown(&t.run("stats", &["--no-stream", "xyz"]), "xyz");

    // One hex digit: none, one or several ids start with it.
    let mut all: Vec<String> = t.containers().into_iter().map(|c| c.0).collect();
    all.extend(t.pods().into_iter().map(|p| p.0));
    for digit in "0123456789abcdef".chars() {
        let q = digit.to_string();
        let matching: Vec<&String> = all.iter().filter(|id| id.starts_with(digit)).collect();
        let r = t.run("inspect", &[&q]);
        match matching.len() {
            0 => is_unknown(&r, &q),
            1 => assert_eq!(r.ok().json()["id"], matching[0].as_str()),
            n => {
                assert_eq!(r.code, 1, "{r:?}");
                let head = format!("vordr: '{q}' is ambiguous: as id prefix it matches {n}:");
                assert!(r.stderr.starts_with(&head), "{r:?}");
                for id in matching {
                    assert!(r.stderr.contains(&id[..13]), "{id} not listed: {r:?}");
                }
            }
        }
    }
    // A name two containers share (in two pods) is ambiguous.
    let twin_ns = format!("{}-twin", t.ns);
    let twin = t
        .run(
            "run",
            &[
                "-d",
                "--name",
                "web",
                "--namespace",
                &twin_ns,
                &t.image,
                "--",
                "sleep",
                "300",
            ],
        )
        .ok();
    let r = t.run("exec", &["web", "--", "true"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("vordr: 'web' is ambiguous: as name it matches 4:"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains(&format!("container {} (web)", &web[..13])),
        "{r:?}"
    );
    t.run("rm", &["-f", twin.stdout.trim()]).ok();

    // Stop: the container leaves `ps`, stays in `ps -a` as Exited.
    let r = t.run("stop", &["-t", "0", "web"]).ok();
    assert_eq!(r.stdout.trim(), web);
    assert!(!ids(&[]).contains(&web));
    assert!(ids(&["-a"]).contains(&web));
    t.wait_state(&web, "Exited");

    // rm: a running container needs -f; the pod `run` made goes with it.
    let r = t.run("rm", &["other"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("container other (")
            && r.stderr.contains("is running: stop it first or use rm -f"),
        "{r:?}"
    );
    assert!(t.containers().iter().any(|c| c.0 == other));
    let r = t.run("rm", &["-f", "--json", "other"]).ok().json();
    assert_eq!(r[0]["kind"], "container");
    assert_eq!(r[0]["id"], other.as_str());
    assert!(r[0]["pod_id"].is_string(), "{r}");
    assert!(!t.pods().iter().any(|p| p.1 == "other"));
    t.run("rm", &["web"]).ok();
    assert!(t.containers().is_empty());
    assert!(t.pods().is_empty(), "{:?}", t.pods());

    // A pod by itself: ready ones need -f.
    let keep = t.run_detached("keep", &[], &["sleep", "300"]);
    let pod = t.pods()[0].0.clone();
    let r = t.run("rm", &[&pod[..8]]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is ready: stop it first or use rm -f"),
        "{r:?}"
    );
    t.run("stop", &[&pod]).ok();
    assert!(t
        .containers()
        .iter()
        .any(|c| c.0 == keep && c.2 == "Exited"));
    t.run("rm", &[&pod]).ok();
    assert!(t.pods().is_empty() && t.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_attached_returns_the_exit_code() {
    let Some(t) = cli("att").await else {
        return;
    };
    // Output followed from the log until the container exits; its code.
    let script = "echo out; echo err >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; exit 3";
    let r = t.run(
        "run",
        &[
            "--rm",
            "--name",
            "att",
            "--namespace",
            &t.ns,
            &t.image,
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(r.code, 3, "{r:?}");
    // The long line was cut into partial records and comes back whole.
    assert_eq!(r.stdout, format!("out\n{}\n", "x".repeat(20000)), "{r:?}");
    assert_eq!(r.stderr, "err\n", "{r:?}");
    assert!(t.pods().is_empty(), "--rm left {:?}", t.pods());

    // Without --rm the container stays, Exited; a command without `--`,
    // an environment variable.
    let r = t.run(
        "run",
        &[
            "--name",
            "kept",
            "--namespace",
            &t.ns,
            "-e",
            "X=42",
            &t.image,
            "sh",
            "-c",
            "echo $X",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "42\n"), "{r:?}");
    let kept = t.containers();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].1.as_str(), kept[0].2.as_str()), ("kept", "Exited"));
    t.run("rm", &["kept"]).ok();

    // -i: our stdin to the container's, closed at its end (cat ends).
    let r = t.run_in(
        "run",
        &[
            "-i",
            "--rm",
            "--namespace",
            &t.ns,
            &t.image,
            "--",
            "sh",
            "-c",
            "cat; echo done >&2",
        ],
        b"piped\nin\n",
        &[],
    );
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "piped\nin\n", "done\n"),
        "{r:?}"
    );
    // -it: a terminal, stdin fed from ours; the container's exit code.
    let r = t.run_in(
        "run",
        &[
            "-it",
            "--rm",
            "--namespace",
            &t.ns,
            &t.image,
            "--",
            "sh",
            "-c",
            "read x; echo got-$x; tty; exit 4",
        ],
        b"hello\n",
        &[],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains("got-hello\r\n"), "{r:?}");
    assert!(r.stdout.contains("/dev/pts/"), "{r:?}");
    assert!(t.pods().is_empty(), "{:?}", t.pods());
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_and_without_a_terminal() {
    let Some(t) = cli("exec").await else {
        return;
    };
    let id = t.run_detached("box", &[], &["sleep", "300"]);
    // Streams apart, the command's exit code, by name.
    let r = t.run(
        "exec",
        &["box", "--", "sh", "-c", "echo out; echo err >&2; exit 5"],
    );
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (5, "out\n", "err\n"),
        "{r:?}"
    );
    // By prefix, without `--`.
    let r = t.run("exec", &[&id[..12], "hostname"]).ok();
    assert_eq!(r.stdout, "box\n");
    // -i: stdin through, closed at its end (cat ends).
    let r = t
        .run_in("exec", &["-i", "box", "--", "cat"], b"piped\nlines\n", &[])
        .ok();
    assert_eq!(r.stdout, "piped\nlines\n");
    // -it: a terminal the size of ours (from $COLUMNS x $LINES here).
    let r = t.run_in(
        "exec",
        &[
            "-it",
            "box",
            "--",
            "sh",
            "-c",
            "read x; echo got-$x; tty; stty size; exit 6",
        ],
        b"abc\n",
        &[("COLUMNS", "100"), ("LINES", "30")],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stdout.contains("got-abc\r\n"), "{r:?}");
    assert!(r.stdout.contains("/dev/pts/"), "{r:?}");
    assert!(r.stdout.contains("30 100"), "{r:?}");
    // --json: ExecSync's captured output.
    let r = t.run(
        "exec",
        &[
            "--json",
            "box",
            "--",
            "sh",
            "-c",
            "echo hi; echo no >&2; exit 2",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    let j = r.json();
    assert_eq!(
        (
            j["exit_code"].as_i64(),
            j["stdout"].as_str(),
            j["stderr"].as_str()
        ),
        (Some(2), Some("hi\n"), Some("no\n"))
    );
    // A command that is not there: 127 (as a shell says) and the reason.
    let r = t.run("exec", &["box", "--", "/no/such/binary"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("/no/such/binary"), "{r:?}");
    // A stopped container: a clear refusal.
    t.run("stop", &["-t", "0", "box"]).ok();
    let r = t.run("exec", &["box", "--", "true"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("vordr: exec in box ("), "{r:?}");
    assert!(r.stderr.contains("not running"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_tail_since_and_follow() {
    let Some(t) = cli("logs").await else {
        return;
    };
    // stdout and stderr are copied apart: a pause keeps their order.
    let script = "for i in 1 2 3 4 5; do echo line$i; done; sleep 1; echo e >&2; sleep 3; echo late; sleep 1; echo last";
    let id = t.run_detached("logger", &[], &["sh", "-c", script]);
    let all = t.wait_logs("logger", "line5");
    assert!(!all.contains("late"), "{all}");
    // Follow from now: what is there, then what comes, until the exit.
    let follow = t
        .command("logs", &["-f", "logger"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let out = follow.wait_with_output().unwrap();
    let r: Ran = out.into();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout, "line1\nline2\nline3\nline4\nline5\nlate\nlast\n",
        "{r:?}"
    );
    assert_eq!(r.stderr, "e\n");
    // It ended on its own once the container exited (within seconds).
    assert!(started.elapsed() < Duration::from_secs(15));
    t.wait_state(&id, "Exited");

    // --tail counts lines of both streams.
    let r = t.run("logs", &["--tail", "3", "logger"]).ok();
    assert_eq!(r.stdout, "late\nlast\n");
    assert_eq!(r.stderr, "e\n");
    let r = t.run("logs", &["--tail", "0", &id[..8]]).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    // --since: a duration or a time.
    let r = t.run("logs", &["--since", "1h", "logger"]).ok();
    assert_eq!(r.stdout.lines().count(), 7);
    let future = humantime_rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    let r = t.run("logs", &["--since", &future, "logger"]).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    // The time of "late" leaves it and what followed.
    let j = t.run("logs", &["--json", "logger"]).ok().json();
    let lines = j["lines"].as_array().unwrap();
    let late = lines.iter().find(|l| l["text"] == "late").unwrap();
    let r = t
        .run(
            "logs",
            &["--since", late["time"].as_str().unwrap(), "-t", "logger"],
        )
        .ok();
    let shown: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(shown, ["late", "last"], "{r:?}");
    assert_eq!(j["container_id"], id.as_str());
    assert_eq!(lines[5]["stream"], "stderr");
    // A --since that is neither.
    let r = t.run("logs", &["--since", "yesterday", "logger"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("--since 'yesterday' is neither a duration"),
        "{r:?}"
    );
}

fn humantime_rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    // Via `date`, to keep the test's own formatting out of the check.
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", d.as_secs()),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_once_and_a_gatekeeper_denial() {
    let Some(t) = cli("stats").await else {
        return;
    };
    let id = t.run_detached("busy", &[], &["sh", "-c", "while :; do :; done"]);
    t.run_detached("idle", &[], &["sleep", "300"]);
    let rows = t.run("stats", &["--no-stream", "--json"]).ok().json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let busy = rows.iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!(busy["name"], "busy");
    assert!(
        busy["memory_working_set_bytes"].as_u64().unwrap() > 0,
        "{busy}"
    );
    // A spinning shell uses a good part of a core.
    let cpu = busy["cpu_percent"].as_f64().unwrap();
    assert!(cpu > 10.0 && cpu < 250.0, "{busy}");
    let table = t.run("stats", &["--no-stream", "idle"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("CONTAINER") && lines[0].contains("CPU %"),
        "{table}"
    );
    assert!(lines[1].contains(" idle "), "{table}");
    // The live view refreshes until interrupted.
    let mut live = t
        .command("stats", &["--interval", "1", "busy"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(live.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut out = String::new();
    live.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(live.wait().unwrap().success());
    assert!(out.matches("\x1b[2J").count() >= 1, "{out:?}");
    assert!(out.contains(" busy "), "{out:?}");
    t.run("rm", &["-f", "busy", "idle"]).ok();

    // The baseline profile (the harness's default) refuses a privileged
    // pod; the message names the rule; nothing is left.
    let r = t.run(
        "run",
        &["--privileged", "--namespace", &t.ns, &t.image, "--", "true"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "denied by the gatekeeper: rule 1 (privileged containers need a namespace allowed to run them)"
        ),
        "{r:?}"
    );
    assert!(r.stderr.contains("profile \"baseline\""), "{r:?}");
    // So are host ports and host paths.
    for (args, rule) in [
        (["-p", "18080:80"], "rule 6 (host ports are not allowed)"),
        (
            ["-v", "/etc:/host-etc"],
            "rule 5 (host path volumes are not allowed)",
        ),
    ] {
        let mut a = vec!["--namespace", &t.ns];
        a.extend_from_slice(&args);
        a.extend_from_slice(&[&t.image, "true"]);
        let r = t.run("run", &a);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr
                .contains(&format!("denied by the gatekeeper: {rule}")),
            "{r:?}"
        );
    }
    assert!(t.pods().is_empty() && t.containers().is_empty());
}

/// Where the profile allows them: a host port reaches the container, a
/// read-only host path is there and read-only, a privileged container runs.
#[tokio::test(flavor = "multi_thread")]
async fn ports_and_mounts_where_the_profile_allows_them() {
    let Some(t) = cli_with("port", PRIVILEGED).await else {
        return;
    };
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hello from the host\n").unwrap();
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = format!("{host_port}:8080");
    let mount = format!("{}:/site:ro", site.path().display());
    let extra = ["--privileged", "-p", &port, "-v", &mount];
    t.run_detached(
        "site",
        &extra,
        &["busybox", "httpd", "-f", "-p", "8080", "-h", "/site"],
    );
    let addr = format!("{}:{host_port}", t.d.gateway());
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let got = std::net::TcpStream::connect(&addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        match got {
            Ok(p) if p.contains("200 OK") => break p,
            other => assert!(Instant::now() < deadline, "{addr}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.ends_with("hello from the host\n"), "{page:?}");
    let r = t.run("exec", &["site", "--", "sh", "-c", "echo x > /site/x"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    // Privileged: every capability this (root) test has.
    let caps = |status: &str| {
        let line = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let ours = caps(&std::fs::read_to_string("/proc/self/status").unwrap());
    let r = t
        .run("exec", &["site", "--", "cat", "/proc/self/status"])
        .ok();
    assert_eq!(caps(&r.stdout), ours);
    t.run("rm", &["-f", "site"]).ok();
    assert!(t.pods().is_empty());
}

#[test]
fn an_unreachable_endpoint() {
    let out: Ran = Command::new(vordr_bin())
        .args(["ps", "-r", "/nonexistent/vordr.sock"])
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        "vordr: connecting to /nonexistent/vordr.sock: No such file or directory (os error 2)\n"
    );
}

/// `exec -it` on a real terminal (a pty here): ours goes raw for the
/// session and back after, the container's terminal gets our size.
#[tokio::test(flavor = "multi_thread")]
async fn exec_on_a_real_terminal() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::sync::{Arc, Mutex};
    let Some(t) = cli("pty").await else {
        return;
    };
    t.run_detached("term", &[], &["sleep", "300"]);
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 111,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = pty.slave;
    let mut child = t
        .command(
            "exec",
            &[
                "-it",
                "term",
                "--",
                "sh",
                "-c",
                "stty size; read x; echo got-$x; exit 7",
            ],
        )
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let mut m = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once no one holds the terminal any more.
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text =
        |seen: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text(&seen).contains("33 111") {
        assert!(Instant::now() < deadline, "no size: {:?}", text(&seen));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Raw while the session runs: no line editing, no local echo.
    let during = tcgetattr(&slave).unwrap();
    assert!(!during
        .local_flags
        .intersects(LocalFlags::ICANON | LocalFlags::ECHO));
    master.write_all(b"abc\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{:?}", text(&seen));
    let after = tcgetattr(&slave).unwrap();
    assert!(after
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    drop(slave);
    reader.join().unwrap();
    let out = text(&seen);
    assert!(out.contains("got-abc\r\n"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn images_pull_list_and_remove() {
    let Some(t) = cli("img").await else {
        return;
    };
    let pulled = t.run("pull", &["--json", &t.image]).ok().json();
    assert_eq!(pulled["image"], t.image.as_str());
    let id = pulled["image_ref"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{pulled}");
    let listed = t.run("images", &["--json"]).ok().json();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row["size"].as_u64().unwrap() > 0);
    let table = t.run("images", &[]).ok().stdout;
    let (repo, tag) = t.image.rsplit_once(':').unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with(repo))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(tag) && line.contains(&id[7..20]), "{table}");
    let r = t.run("rmi", &[&t.image]).ok();
    assert_eq!(r.stdout.trim(), t.image);
    assert_eq!(
        t.run("images", &["--json"]).ok().json(),
        serde_json::json!([])
    );
    let r = t.run("rmi", &["nothing.example/none:1"]);
    // CRI's RemoveImage succeeds for an image that is not there.
    assert_eq!(r.code, 0, "{r:?}");
    // `run` pulls what is missing again.
    let r = t
        .run(
            "run",
            &["--rm", "--namespace", &t.ns, &t.image, "--", "echo", "back"],
        )
        .ok();
    assert_eq!(r.stdout, "back\n");
}

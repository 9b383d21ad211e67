//! Minimal, line-based edits of kubelet's files: a top-level key of the
//! KubeletConfiguration YAML and a flag in kubeadm's `kubeadm-flags.env`.
//! Every byte outside the edited line is kept, so a file can be restored
//! byte for byte and an admin's comments and layout survive.

/// Why a file cannot be edited line by line (the admin edits it instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("it is JSON, not block YAML")]
    Json,
    #[error("it holds more than one YAML document")]
    MultipleDocuments,
    #[error("it sets {0} more than once")]
    DuplicateKey(String),
    #[error("{0} has a value this edit does not understand ({1})")]
    Unsupported(String, String),
}

/// The lines of `text` with their endings (the last may have none).
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn ending(line: &str) -> &str {
    if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    }
}

/// The file's line ending: that of its first line, else `\n`.
fn file_ending(text: &str) -> &'static str {
    match lines(text).first().map(|l| ending(l)) {
        Some("\r\n") => "\r\n",
        _ => "\n",
    }
}

/// If `line` sets top-level `key`, the rest of the line after the colon.
fn key_rest<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim_end_matches(['\n', '\r']);
    let after = [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .find_map(|k| line.strip_prefix(k.as_str()))?;
    let after = after.trim_start_matches([' ', '\t']);
    let rest = after.strip_prefix(':')?;
    if rest.is_empty() || rest.starts_with([' ', '\t']) {
        Some(rest)
    } else {
        None
    }
}

/// A scalar as written after `key:`: comment dropped, quotes removed.
fn scalar(rest: &str, key: &str) -> Result<String, EditError> {
    let rest = rest.trim();
    let unsupported = |why: &str| Err(EditError::Unsupported(key.into(), why.into()));
    if let Some(q @ ('"' | '\'')) = rest.chars().next() {
        let body = &rest[1..];
        let Some(end) = body.find(q) else {
            return unsupported("a quoted value spanning lines");
        };
        let tail = body[end + 1..].trim();
        if !(tail.is_empty() || tail.starts_with('#')) {
            return unsupported("text after the quoted value");
        }
        let v = &body[..end];
        if q == '"' && v.contains('\\') {
            return unsupported("escapes in a quoted value");
        }
        return Ok(v.to_string());
    }
    let v = match rest.find(" #").or_else(|| rest.find("\t#")) {
        Some(i) => rest[..i].trim_end(),
        None if rest.starts_with('#') => "",
        None => rest,
    };
    if v.starts_with(['|', '>', '[', '{', '&', '*', '!']) {
        return unsupported("a block, flow, anchored or tagged value");
    }
    Ok(v.to_string())
}

/// Refuses what a line edit cannot handle safely: JSON and multi-document
/// files.
fn check_block_yaml(text: &str) -> Result<(), EditError> {
    let mut content = false;
    for l in lines(text) {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !content && t.starts_with(['{', '[']) {
            return Err(EditError::Json);
        }
        let marker = l.starts_with("---") || l.starts_with("...");
        if marker && content {
            return Err(EditError::MultipleDocuments);
        }
        if !marker {
            content = true;
        }
    }
    Ok(())
}

/// Where top-level `key` is set: the index of its line and how many
/// following lines continue its value.
fn find_key(ls: &[&str], key: &str) -> Result<Option<(usize, usize)>, EditError> {
    let mut found = None;
    for (i, l) in ls.iter().enumerate() {
        if key_rest(l, key).is_some() {
            if found.is_some() {
                return Err(EditError::DuplicateKey(key.into()));
            }
            let cont = ls[i + 1..]
                .iter()
                .take_while(|n| n.starts_with([' ', '\t']) && !n.trim().is_empty())
                .count();
            found = Some((i, cont));
        }
    }
    Ok(found)
}

/// The value of the top-level `key` of a block YAML document, or `None`
/// when the key is not set.
pub fn yaml_get(text: &str, key: &str) -> Result<Option<String>, EditError> {
    check_block_yaml(text)?;
    let ls = lines(text);
    let Some((i, cont)) = find_key(&ls, key)? else {
        return Ok(None);
    };
    let rest = key_rest(ls[i], key).unwrap_or_default();
    if cont > 0 {
        if !rest.trim().is_empty() && !rest.trim().starts_with('#') {
            return Err(EditError::Unsupported(
                key.into(),
                "a value spanning lines".into(),
            ));
        }
        // `key:` with the plain scalar on the next, indented line.
        if cont > 1 {
            return Err(EditError::Unsupported(
                key.into(),
                "a value spanning lines".into(),
            ));
        }
        return scalar(ls[i + 1], key).map(Some);
    }
    scalar(rest, key).map(Some)
}

/// `text` with the top-level `key` set to `value` (`None` removes the key):
/// the key's line (and an indented value line under it) is replaced, or a
/// line is appended at the end. Every other byte is kept.
pub fn yaml_set(text: &str, key: &str, value: Option<&str>) -> Result<String, EditError> {
    // Reading the current value first refuses what the edit cannot handle.
    yaml_get(text, key)?;
    let ls = lines(text);
    let new_line = |end: &str| value.map(|v| format!("{key}: {v}{end}"));
    let mut out = String::with_capacity(text.len() + 64);
    match find_key(&ls, key)? {
        Some((i, cont)) => {
            let last = ls[i + cont];
            for l in &ls[..i] {
                out.push_str(l);
            }
            if let Some(l) = new_line(ending(last)) {
                out.push_str(&l);
            }
            for l in &ls[i + cont + 1..] {
                out.push_str(l);
            }
        }
        None => {
            out.push_str(text);
            if let Some(l) = new_line(file_ending(text)) {
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push_str(file_ending(text));
                }
                out.push_str(&l);
            }
        }
    }
    Ok(out)
}

/// Where `flag` appears as a whole word in `line`: the byte range of the
/// flag and of its value (`--flag=value` or `--flag value`).
fn find_flag(line: &str, flag: &str) -> Option<(usize, std::ops::Range<usize>)> {
    let mut from = 0;
    while let Some(off) = line[from..].find(flag) {
        let start = from + off;
        let end = start + flag.len();
        let before_ok = start == 0 || line[..start].ends_with([' ', '\t', '"', '\'', '=']);
        let after = &line[end..];
        let sep = match after.chars().next() {
            Some('=') => Some(1),
            Some(' ' | '\t') => Some(after.len() - after.trim_start_matches([' ', '\t']).len()),
            _ => None,
        };
        if let (true, Some(sep)) = (before_ok, sep) {
            let vstart = end + sep;
            let vlen = line[vstart..]
                .find([' ', '\t', '"', '\'', '\n', '\r'])
                .unwrap_or(line.len() - vstart);
            return Some((start, vstart..vstart + vlen));
        }
        from = end;
    }
    None
}

fn non_comment(line: &str) -> bool {
    !line.trim_start().starts_with('#')
}

/// The value of `flag` in an environment file of kubelet flags, or `None`.
pub fn flag_get(text: &str, flag: &str) -> Option<String> {
    lines(text)
        .into_iter()
        .filter(|l| non_comment(l))
        .find_map(|l| find_flag(l, flag).map(|(_, v)| l[v].to_string()))
}

/// `text` with `flag` set to `value` where it appears (as `--flag=value`
/// or `--flag value`); absent, it is added at the front of `var`'s quoted
/// value (a `var="..."` line is appended if there is none) when
/// `add` is set. `None` removes the flag and its value.
pub fn flag_set(text: &str, flag: &str, value: Option<&str>, add: bool, var: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut done = false;
    for l in lines(text) {
        match find_flag(l, flag) {
            Some((start, v)) if !done && non_comment(l) => {
                done = true;
                match value {
                    Some(value) => {
                        out.push_str(&l[..v.start]);
                        out.push_str(value);
                        out.push_str(&l[v.end..]);
                    }
                    None => {
                        // The flag, its value and one space beside them.
                        let mut end = v.end;
                        let mut start = start;
                        if l[end..].starts_with([' ', '\t']) {
                            end += 1;
                        } else if l[..start].ends_with([' ', '\t']) {
                            start -= 1;
                        }
                        out.push_str(&l[..start]);
                        out.push_str(&l[end..]);
                    }
                }
            }
            _ => out.push_str(l),
        }
    }
    if done || !add {
        return out;
    }
    let Some(value) = value else { return out };
    let word = format!("{flag}={value}");
    let prefix = format!("{var}=\"");
    let mut added = String::with_capacity(out.len() + word.len() + 1);
    let mut inserted = false;
    for l in lines(&out) {
        if !inserted && l.starts_with(&prefix) {
            inserted = true;
            added.push_str(&prefix);
            let rest = &l[prefix.len()..];
            added.push_str(&word);
            if !rest.starts_with('"') {
                added.push(' ');
            }
            added.push_str(rest);
        } else {
            added.push_str(l);
        }
    }
    if !inserted {
        let end = file_ending(&added);
        if !added.is_empty() && !added.ends_with('\n') {
            added.push_str(end);
        }
        added.push_str(&format!("{prefix}{word}\"{end}"));
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
        authentication:\n  anonymous:\n    enabled: false\n\
        cgroupDriver: systemd\n\
        # the runtime\n\
        containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock # kubeadm\n\
        kind: KubeletConfiguration\n\
        rotateCertificates: true\n";

    #[test]
    fn yaml_value_is_read_without_comment_or_quotes() {
        let ep = "containerRuntimeEndpoint";
        assert_eq!(
            yaml_get(KUBEADM, ep).unwrap().as_deref(),
            Some("unix:///var/run/containerd/containerd.sock")
        );
        assert_eq!(
            yaml_get("containerRuntimeEndpoint: \"unix:///a.sock\" # x\n", ep).unwrap(),
            Some("unix:///a.sock".into())
        );
        assert_eq!(
            yaml_get("'containerRuntimeEndpoint' : 'unix:///b'\n", ep).unwrap(),
            Some("unix:///b".into())
        );
        assert_eq!(
            yaml_get("containerRuntimeEndpoint:\n  unix:///c\nkind: X\n", ep).unwrap(),
            Some("unix:///c".into())
        );
        assert_eq!(
            yaml_get("containerRuntimeEndpoint:\n", ep).unwrap(),
            Some("".into())
        );
        // Nested keys and longer names are not the top-level key.
        assert_eq!(
            yaml_get(
                "x:\n  containerRuntimeEndpoint: a\ncontainerRuntimeEndpointX: b\n",
                ep
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn yaml_set_replaces_only_the_key_line() {
        let ep = "containerRuntimeEndpoint";
        let out = yaml_set(KUBEADM, ep, Some("unix:///run/vordr/vordr.sock")).unwrap();
        assert_eq!(
            out,
            KUBEADM.replace(
                "unix:///var/run/containerd/containerd.sock # kubeadm",
                "unix:///run/vordr/vordr.sock"
            )
        );
        // Setting the value read back restores the file exactly but for the comment.
        let back = yaml_set(&out, ep, Some("unix:///var/run/containerd/containerd.sock")).unwrap();
        assert_eq!(back, KUBEADM.replace(" # kubeadm", ""));
        // An indented value line goes with its key.
        let two = "a: 1\ncontainerRuntimeEndpoint:\n  unix:///c\nkind: X\n";
        assert_eq!(
            yaml_set(two, ep, Some("unix:///v")).unwrap(),
            "a: 1\ncontainerRuntimeEndpoint: unix:///v\nkind: X\n"
        );
        // Removal drops the line.
        assert_eq!(yaml_set(two, ep, None).unwrap(), "a: 1\nkind: X\n");
    }

    #[test]
    fn yaml_set_appends_a_missing_key_keeping_line_endings() {
        let ep = "containerRuntimeEndpoint";
        assert_eq!(
            yaml_set("kind: KubeletConfiguration\n", ep, Some("unix:///v")).unwrap(),
            "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///v\n"
        );
        assert_eq!(
            yaml_set("kind: K", ep, Some("unix:///v")).unwrap(),
            "kind: K\ncontainerRuntimeEndpoint: unix:///v\n"
        );
        assert_eq!(
            yaml_set("---\r\nkind: K\r\n", ep, Some("unix:///v")).unwrap(),
            "---\r\nkind: K\r\ncontainerRuntimeEndpoint: unix:///v\r\n"
        );
        assert_eq!(
            yaml_set(
                "a: 1\r\ncontainerRuntimeEndpoint: x\r\nb: 2\r\n",
                ep,
                Some("y")
            )
            .unwrap(),
            "a: 1\r\ncontainerRuntimeEndpoint: y\r\nb: 2\r\n"
        );
        // Removing an absent key changes nothing.
        assert_eq!(yaml_set("kind: K\n", ep, None).unwrap(), "kind: K\n");
    }

    #[test]
    fn yaml_edits_refuse_what_a_line_edit_cannot_do() {
        let ep = "containerRuntimeEndpoint";
        assert_eq!(
            yaml_set("{\"kind\": \"KubeletConfiguration\"}\n", ep, Some("x")),
            Err(EditError::Json)
        );
        assert_eq!(
            yaml_set("kind: A\n---\nkind: B\n", ep, Some("x")),
            Err(EditError::MultipleDocuments)
        );
        assert_eq!(
            yaml_set(&format!("{ep}: a\n{ep}: b\n"), ep, Some("x")),
            Err(EditError::DuplicateKey(ep.into()))
        );
        assert!(matches!(
            yaml_set(&format!("{ep}: |\n  a\n"), ep, Some("x")),
            Err(EditError::Unsupported(..))
        ));
        assert!(matches!(
            yaml_set(&format!("{ep}: \"a\\tb\"\n"), ep, Some("x")),
            Err(EditError::Unsupported(..))
        ));
        // A leading document marker and comments are fine.
        assert!(yaml_set("# c\n---\nkind: K\n", ep, Some("x")).is_ok());
    }

    const FLAGS: &str = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n";
    const FLAG: &str = "--container-runtime-endpoint";
    const VAR: &str = "KUBELET_KUBEADM_ARGS";

    #[test]
    fn flags_are_read_and_replaced_in_place() {
        assert_eq!(
            flag_get(FLAGS, FLAG).as_deref(),
            Some("unix:///var/run/containerd/containerd.sock")
        );
        let out = flag_set(
            FLAGS,
            FLAG,
            Some("unix:///run/vordr/vordr.sock"),
            false,
            VAR,
        );
        assert_eq!(
            out,
            FLAGS.replace(
                "unix:///var/run/containerd/containerd.sock",
                "unix:///run/vordr/vordr.sock"
            )
        );
        // The space-separated form and a flag at the end of the quotes.
        let spaced = "KUBELET_KUBEADM_ARGS=\"--v=2 --container-runtime-endpoint unix:///a\"\n";
        assert_eq!(flag_get(spaced, FLAG).as_deref(), Some("unix:///a"));
        assert_eq!(
            flag_set(spaced, FLAG, Some("unix:///b"), false, VAR),
            "KUBELET_KUBEADM_ARGS=\"--v=2 --container-runtime-endpoint unix:///b\"\n"
        );
        // Longer flags and comments are not the flag.
        let other = "# --container-runtime-endpoint=x\nA=\"--container-runtime-endpoint-x=y\"\n";
        assert_eq!(flag_get(other, FLAG), None);
        assert_eq!(flag_set(other, FLAG, Some("z"), false, VAR), other);
    }

    #[test]
    fn flags_are_added_and_removed() {
        let none = "KUBELET_KUBEADM_ARGS=\"--v=2\"\n";
        let added = flag_set(none, FLAG, Some("unix:///v"), true, VAR);
        assert_eq!(
            added,
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///v --v=2\"\n"
        );
        assert_eq!(flag_set(&added, FLAG, None, false, VAR), none);
        let empty = "KUBELET_KUBEADM_ARGS=\"\"\n";
        let added = flag_set(empty, FLAG, Some("unix:///v"), true, VAR);
        assert_eq!(
            added,
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///v\"\n"
        );
        assert_eq!(flag_set(&added, FLAG, None, false, VAR), empty);
        assert_eq!(
            flag_set("OTHER=1", FLAG, Some("unix:///v"), true, VAR),
            "OTHER=1\nKUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///v\"\n"
        );
        // Not asked to add: nothing changes.
        assert_eq!(flag_set(none, FLAG, Some("unix:///v"), false, VAR), none);
    }
}

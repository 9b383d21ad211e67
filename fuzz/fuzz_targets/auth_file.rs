//! Docker-style auth files (config.json / auth.json), parsed as Vordr
//! loads them when kubelet sends no credentials.
//!
//! Invariants beyond "no panic": parsing is deterministic (the same text
//! gives the same credentials, whatever order a hash map visits its
//! keys in), and every registry named in an accepted file gets an answer
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vordr_image::auth::AuthFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = AuthFile::parse(text, "fuzz");
    assert_eq!(parsed, AuthFile::parse(text, "fuzz"), "parsed twice");
    let Ok(file) = parsed else {
        return;
    };
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let Some(serde_json::Value::Object(auths)) = doc.get("auths") else {
        return;
    };
    for key in auths.keys() {
        let _ = file.for_registry(key);
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let _ = file.for_registry(host);
    }
});

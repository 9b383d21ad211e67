//! containers-registries.conf v2 files (TOML), parsed and validated as
//! Vordr loads them, then used to resolve image names: fixed ones and
//! ones built from the file's own prefixes, locations and search
//! registries, so that prefix matching and rewriting are exercised.
//!
//! Invariants beyond "no panic": an accepted file has non-empty, unique
//! prefixes, a location for every non-wildcard entry and for every mirror;
//! a resolved plan has at least one source and ends with a primary (not a
//! mirror) location; resolving is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vordr_image::registries::RegistriesConf;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(conf) = RegistriesConf::parse(text, "fuzz") else {
        return;
    };
    let mut prefixes = Vec::new();
    for r in &conf.registries {
        assert!(!r.prefix.is_empty(), "{r:?}");
        assert!(
            r.prefix.starts_with("*.") || !r.location.is_empty(),
            "{r:?}"
        );
        assert!(r.mirrors.iter().all(|m| !m.location.is_empty()), "{r:?}");
        prefixes.push(r.prefix.as_str());
    }
    prefixes.sort();
    assert!(prefixes.windows(2).all(|w| w[0] != w[1]), "{prefixes:?}");

    let mut images: Vec<String> = [
        "busybox",
        "library/busybox:1.36",
        "docker.io/library/busybox:latest",
        "registry.k8s.io/pause:3.9",
        "localhost:5000/app",
        "a.corp.example/team/app:v1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    images.push(format!("quay.io/app@{DIGEST}"));
    let bases = conf
        .registries
        .iter()
        .flat_map(|r| {
            let wild = r.prefix.strip_prefix("*.").map(|d| format!("x.{d}"));
            [Some(r.prefix.clone()), Some(r.location.clone()), wild]
        })
        .chain(
            conf.unqualified_search_registries
                .iter()
                .map(|s| Some(s.clone())),
        )
        .flatten()
        .take(32);
    for base in bases {
        images.push(format!("{base}/app:v1"));
        images.push(format!("{base}/app@{DIGEST}"));
        images.push(base);
    }
    for image in &images {
        let plan = conf.resolve(image);
        assert_eq!(plan, conf.resolve(image), "resolving {image:?} twice");
        let Ok(plan) = plan else {
            continue;
        };
        assert!(!plan.sources.is_empty(), "{image:?}: {plan:?}");
        assert!(
            !plan.sources.last().unwrap().mirror,
            "{image:?} ends with a mirror: {plan:?}"
        );
    }
});

//! Builds the Ada/SPARK policy (ada/gatekeeper.gpr) with gprbuild into a
//! static standalone library under OUT_DIR and links it, with GNAT's static
//! position-independent runtime, into whatever uses this crate.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let (obj, lib) = (out.join("ada-obj"), out.join("ada-lib"));
    for d in [&obj, &lib] {
        std::fs::create_dir_all(d).expect("creating the Ada build directories");
    }
    let project = manifest.join("ada/gatekeeper.gpr");
    println!("cargo:rerun-if-changed={}", manifest.join("ada").display());
    let status = Command::new("gprbuild")
        .arg("-q")
        .arg("-p")
        .arg("-P")
        .arg(&project)
        .env("GATEKEEPER_OBJ", &obj)
        .env("GATEKEEPER_LIB", &lib)
        .status()
        .expect("running gprbuild (Debian packages gnat-12 and gprbuild; scripts/setup.sh installs them)");
    assert!(
        status.success(),
        "gprbuild failed to build {}",
        project.display()
    );

    let adalib = Command::new("gcc")
        .arg("-print-file-name=adalib")
        .output()
        .expect("asking gcc where GNAT's runtime is");
    let adalib = String::from_utf8(adalib.stdout)
        .expect("a path")
        .trim()
        .to_string();
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=gatekeeper");
    println!("cargo:rustc-link-search=native={adalib}");
    println!("cargo:rustc-link-lib=static=gnat_pic");
}

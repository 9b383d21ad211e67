#!/usr/bin/env python3
"""Validates deploy/k8s without a cluster or kustomize (`just check` runs it).

- kustomization.yaml only lists resources; every listed file exists and
  every manifest in the directory is listed;
- every object validates against the Kubernetes 1.35 OpenAPI schemas of
  kubernetes-validate (strict: unknown fields are errors; an object without
  a schema is an error too, where the library only warns);
- the wiring the installer relies on: namespace, service account, RBAC
  limited to getting and patching nodes, node selectors, privileged pods
  with hostPID and the host's root at /host, the readiness probes, and
  RuntimeClass handlers that Vordr's default configuration defines.

A deliberately broken DaemonSet must fail validation first, so a validator
that accepts everything cannot pass this check.
"""

import pathlib
import sys
import tomllib

import kubernetes_validate
import kubernetes_validate.utils as kv
import yaml

K8S = "1.35.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "k8s"
DEFAULT_TOML = ROOT / "crates" / "vordr-config" / "src" / "default.toml"
NAMESPACE = "vordr-system"
SERVICE_ACCOUNT = "vordr-installer"

errors = []


def fail(msg):
    errors.append(msg)


def validate(obj, where):
    """Strict schema validation; returns an error message or None."""
    try:
        kv.validate(obj, K8S, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return f"{where}: {kv.kn(obj)}: {path}: {e.message}"
    except kv.SchemaNotFoundError as e:
        return f"{where}: {e.message}"
    except kv.VersionNotSupportedError:
        return f"kubernetes-validate {kubernetes_validate.__version__} has no {K8S} schemas"
    return None


def container(ds):
    cs = ds["spec"]["template"]["spec"]["containers"]
    if len(cs) != 1:
        fail(f"{kv.kn(ds)}: one container expected, found {len(cs)}")
    return cs[0]


def check_daemonset(ds, verb, label):
    name = kv.kn(ds)
    spec = ds["spec"]["template"]["spec"]
    if spec.get("nodeSelector") != {label: "true"}:
        fail(f"{name}: nodeSelector must be {{{label}: \"true\"}}")
    if spec.get("serviceAccountName") != SERVICE_ACCOUNT:
        fail(f"{name}: serviceAccountName must be {SERVICE_ACCOUNT}")
    if spec.get("hostPID") is not True:
        fail(f"{name}: hostPID must be true (the host's systemd is PID 1)")
    if {"operator": "Exists"} not in spec.get("tolerations", []):
        fail(f"{name}: must tolerate every taint (operator: Exists)")
    c = container(ds)
    if not c.get("securityContext", {}).get("privileged"):
        fail(f"{name}: the container must be privileged")
    if not c.get("resources", {}).get("requests"):
        fail(f"{name}: the container needs resource requests")
    args = c.get("command", []) + c.get("args", [])
    if args != ["/usr/local/bin/vordr", verb, "--host-root", "/host", "--wait"]:
        fail(f"{name}: runs {args}")
    probe = c.get("readinessProbe", {}).get("exec", {}).get("command")
    if probe != ["/usr/local/bin/vordr", verb, "--host-root", "/host", "--check"]:
        fail(f"{name}: readiness probe runs {probe}")
    env = {e["name"]: e for e in c.get("env", [])}
    if env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        fail(f"{name}: NODE_NAME must come from spec.nodeName (the node it labels)")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    roots = [v["name"] for v in spec.get("volumes", []) if v.get("hostPath", {}).get("path") == "/"]
    if len(roots) != 1 or mounts.get(roots[0]) != "/host":
        fail(f"{name}: the host's / must be mounted at /host")


def main():
    # The validator must reject a broken object, or nothing below means anything.
    broken = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}},
    }
    if validate(broken, "self-test") is None:
        sys.exit("validate-manifests: kubernetes-validate accepted a DaemonSet with an unknown field")
    if validate({"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "x"}}, "self-test") is None:
        sys.exit("validate-manifests: an object without a schema was accepted")

    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    if set(kust) != {"apiVersion", "kind", "resources"}:
        fail(f"kustomization.yaml: only apiVersion, kind and resources, found {sorted(kust)}")
    if (kust.get("apiVersion"), kust.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        fail("kustomization.yaml: apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
    listed = kust.get("resources", [])
    present = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    for r in listed:
        if not (DEPLOY / r).is_file():
            fail(f"kustomization.yaml lists {r}, which does not exist")
    for p in present:
        if p not in listed:
            fail(f"{p} is not listed in kustomization.yaml")
    if len(set(listed)) != len(listed):
        fail("kustomization.yaml lists a file twice")

    objects = {}
    for r in listed:
        path = DEPLOY / r
        if not path.is_file():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            err = validate(doc, r)
            if err:
                fail(err)
                continue
            key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            if key in objects:
                fail(f"{r}: {key} is defined twice")
            objects[key] = doc
            print(f"ok {r}: {kv.kn(doc)} (Kubernetes {K8S} schema, strict)")

    namespaces = {n for (k, _, n) in objects if k == "Namespace"}
    if NAMESPACE not in namespaces:
        fail(f"no Namespace {NAMESPACE}")
    for (kind, ns, name) in objects:
        if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "RuntimeClass") and ns != NAMESPACE:
            fail(f"{kind}/{name} must be in namespace {NAMESPACE}, not {ns}")
    if ("ServiceAccount", NAMESPACE, SERVICE_ACCOUNT) not in objects:
        fail(f"no ServiceAccount {SERVICE_ACCOUNT}")
    roles = [o for (k, _, _), o in objects.items() if k == "ClusterRole"]
    rules = [r for role in roles for r in role.get("rules", [])]
    if rules != [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]:
        fail(f"the ClusterRole may only get and patch nodes: {rules}")
    for (k, _, name), b in objects.items():
        if k == "ClusterRoleBinding":
            subjects = b.get("subjects", [])
            if subjects != [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]:
                fail(f"ClusterRoleBinding {name} binds {subjects}")
            if ("ClusterRole", None, b["roleRef"]["name"]) not in objects:
                fail(f"ClusterRoleBinding {name} refers to a missing ClusterRole")

    handlers = set(tomllib.loads(DEFAULT_TOML.read_text())["runtime"]["handlers"])
    classes = {n: o for (k, _, n), o in objects.items() if k == "RuntimeClass"}
    if set(classes) != {"vordr-youki", "vordr-runc"}:
        fail(f"RuntimeClasses vordr-youki and vordr-runc expected, found {sorted(classes)}")
    for name, rc in classes.items():
        if rc["handler"] not in handlers:
            fail(f"RuntimeClass {name}: handler {rc['handler']} is not in default.toml ({sorted(handlers)})")
        if "podFixed" not in rc.get("overhead", {}):
            fail(f"RuntimeClass {name}: no overhead.podFixed")

    dss = {n: o for (k, _, n), o in objects.items() if k == "DaemonSet"}
    if set(dss) != {"vordr-install", "vordr-cleanup"}:
        fail(f"DaemonSets vordr-install and vordr-cleanup expected, found {sorted(dss)}")
    if "vordr-install" in dss:
        check_daemonset(dss["vordr-install"], "install", "vordr.io/install")
    if "vordr-cleanup" in dss:
        check_daemonset(dss["vordr-cleanup"], "uninstall", "vordr.io/uninstall")
        if container(dss["vordr-cleanup"])["image"] != container(dss.get("vordr-install", dss["vordr-cleanup"]))["image"]:
            fail("both DaemonSets must run the same image")

    if errors:
        print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
        sys.exit(1)
    print(f"deploy/k8s: {len(objects)} objects valid against Kubernetes {K8S}")


if __name__ == "__main__":
    main()

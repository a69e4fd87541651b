#!/usr/bin/env python3
"""Checks deploy/kubernetes offline, as .ci/run does: no cluster, no kubectl.

  python3 -m pip install --quiet kubernetes-validate
  scripts/check-kubernetes.py [path/to/connector-probe]

1. Every manifest a kustomization.yaml lists exists, and every manifest in its directory is
   listed (none forgotten).
2. Each validates against the Kubernetes API schemas bundled with kubernetes-validate, in
   strict mode (an unknown or misspelt field is an error). The PodMonitor, a CRD with no
   bundled schema, is checked by hand below.
3. The pieces agree: the Service, the PodDisruptionBudget and the PodMonitor select the
   StatefulSet's pods and name its port; the ConfigMap's `shard = "ordinal/N"` has N equal
   to the replicas; the pods are hardened (non-root, read-only root, no capabilities,
   seccomp RuntimeDefault).
4. Given the binary, the ConfigMap's configuration passes `check-config` as each pod would
   load it (HOSTNAME=connector-probe-K), and the shards' listings cover every connector once.
"""

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
VERSION = "1.30.0"
CRDS = {("monitoring.coreos.com/v1", "PodMonitor")}


def fail(message):
    sys.exit(f"check-kubernetes: {message}")


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def resources(directory):
    """The manifests of a kustomization, recursively, as (path, document)."""
    kustomization = documents(directory / "kustomization.yaml")[0]
    listed = kustomization.get("resources", [])
    out = []
    for entry in listed:
        path = (directory / entry).resolve()
        if path.is_dir():
            out += resources(path)
        elif path.is_file():
            out += [(path, d) for d in documents(path)]
        else:
            fail(f"{directory}/kustomization.yaml lists {entry}, which does not exist")
    for path in directory.glob("*.yaml"):
        if path.name != "kustomization.yaml" and path.name not in listed:
            fail(f"{path} is not listed in {directory}/kustomization.yaml")
    return out


def validate(path, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRDS:
        return
    try:
        kubernetes_validate.validate(doc, VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{path}: {'.'.join(map(str, e.path))}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        fail(f"{path}: no schema for {key}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_together(docs):
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (sts,) = by_kind["StatefulSet"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    if not selects(sts["spec"]["selector"], labels):
        fail("the StatefulSet's selector does not select its own pods")
    (svc,) = by_kind["Service"]
    if svc["spec"].get("clusterIP") != "None" or svc["metadata"]["name"] != sts["spec"]["serviceName"]:
        fail("the StatefulSet's serviceName must be a headless Service")
    if not all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
        fail("the Service does not select the pods")
    for pdb in by_kind["PodDisruptionBudget"]:
        if not selects(pdb["spec"]["selector"], labels):
            fail("the PodDisruptionBudget does not select the pods")
    for pm in by_kind.get("PodMonitor", []):
        if not selects(pm["spec"]["selector"], labels):
            fail("the PodMonitor does not select the pods")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            if ep["port"] not in ports:
                fail(f"the PodMonitor scrapes port {ep['port']!r}, which the pods lack")

    security = pod["spec"]["securityContext"]
    if not security.get("runAsNonRoot") or security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail("the pods must run as non-root with seccomp RuntimeDefault")
    for c in pod["spec"]["containers"]:
        sc = c.get("securityContext", {})
        if not (
            sc.get("readOnlyRootFilesystem")
            and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
        ):
            fail(f"container {c['name']} is not hardened (read-only root, no escalation, drop ALL)")

    (cm,) = by_kind["ConfigMap"]
    text = cm["data"]["connector-probe.toml"]
    shard = tomllib.loads(text)["daemon"]["shard"]
    kind, _, n = shard.partition("/")
    if kind != "ordinal" or int(n) != sts["spec"]["replicas"]:
        fail(f'the ConfigMap\'s shard = "{shard}" must be "ordinal/{sts["spec"]["replicas"]}" (the replicas)')
    return sts, text


def check_config(binary, sts, text):
    """Loads the configuration as each pod would and checks the shards cover it."""
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    connectors = [c["name"] for c in tomllib.loads(text).get("connector", [])]
    owned = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "connector-probe.toml"
        path.write_text(text, encoding="utf-8")
        for k in range(replicas):
            env = dict(os.environ, HOSTNAME=f"{name}-{k}")
            out = subprocess.run(
                [binary, "check-config", "--config", str(path)],
                env=env, capture_output=True, text=True,
            )
            if out.returncode != 0:
                fail(f"check-config as pod {name}-{k}: {out.stderr.strip()}")
            listing = out.stdout.split(f"# shard {k}/{replicas} owns", 1)
            if len(listing) != 2:
                fail(f"check-config as pod {name}-{k} names no shard {k}/{replicas}")
            owned += [line[1:].strip() for line in listing[1].splitlines()[1:] if line.startswith("#")]
    if sorted(owned) != sorted(connectors):
        fail(f"the shards own {sorted(owned)}, the configuration has {sorted(connectors)}")


def main():
    docs = resources(ROOT / "prometheus-operator")
    for path, doc in docs:
        validate(path, doc)
    sts, text = check_together(docs)
    if len(sys.argv) > 1:
        check_config(sys.argv[1], sts, text)
    print(f"check-kubernetes: {len(docs)} manifests valid and consistent")


if __name__ == "__main__":
    main()

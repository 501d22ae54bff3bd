"""Tools that check deploy/: kubeconform (built from its Go module by
deploy/local/install-go-tools.sh), and the Kubernetes JSON schemas it validates against.

The schemas come from the `kubernetes-validate` package on PyPI, which bundles them per
Kubernetes version: no schema is fetched at test time (CI reaches package registries only).
Its files point at a shared `/api/_definitions.json` that only its own resolver understands, so
each kind's schema is rewritten here into a standalone file, as kubeconform expects.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate

from writeback_dev.localstack.paths import deploy_dir

_REF = re.compile(r'"\$ref":\s*"/api/_definitions\.json#/\$defs/')


def tools_bin() -> Path:
    return deploy_dir() / "tools" / "bin"


def kubeconform() -> Path:
    """The kubeconform binary, built on first use (`go install` through the module proxy)."""
    binary = tools_bin() / "kubeconform"
    if not binary.exists():
        subprocess.run(["bash", str(deploy_dir() / "install-go-tools.sh")], check=True, timeout=900)
    return binary


def bundled_versions() -> list[str]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return sorted(
        (p.name.removesuffix("-local-strict") for p in root.glob("v*-local-strict")),
        key=lambda v: tuple(int(n) for n in v.lstrip("v").split(".")),
    )


def standalone_schemas(version: str, kinds: list[str], dest: Path) -> Path:
    """`dest/<version>-standalone-strict/<kind>.json` for each kind file name (e.g.
    `deployment-apps-v1`), with the shared definitions inlined; returns kubeconform's
    `-schema-location` template for that directory."""
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"{version}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    out = dest / f"{version}-standalone-strict"
    out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        text = _REF.sub('"$ref": "#/$defs/', (source / f"{kind}.json").read_text())
        schema = json.loads(text)
        schema.pop("$id", None)
        schema["$defs"] = json.loads(_REF.sub('"$ref": "#/$defs/', json.dumps(definitions)))
        (out / f"{kind}.json").write_text(json.dumps(schema))
    return os.fspath(dest) + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"

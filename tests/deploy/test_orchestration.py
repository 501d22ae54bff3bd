"""deploy/compose.yaml against the Compose Specification's JSON schema (the copy check-jsonschema
vendors, `vendor.compose-spec`), and deploy/k8s against Kubernetes' own schemas with kubeconform
(built from its Go module; schemas from the kubernetes-validate package), plus what the files
promise: probes, resources, a disruption budget, secrets by reference, the migration first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from writeback_dev import manifests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KINDS = ["configmap-v1", "secret-v1", "service-v1", "deployment-apps-v1", "job-batch-v1", "poddisruptionbudget-policy-v1"]


def documents() -> list[dict]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def kubeconform(paths: list[Path], tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    location = manifests.standalone_schemas(version, KINDS, tmp_path / "schemas")
    return subprocess.run(
        [str(manifests.kubeconform()), "-strict", "-summary", "-kubernetes-version", version.lstrip("v"),
         "-skip", "Kustomization", "-schema-location", location, *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_compose_file_is_valid_compose_spec():
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_runs_every_part_and_the_files_it_mounts_and_builds_exist():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "registry", "postgres", "prometheus", "migrate", "writeback"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["writeback"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["salesforce-sim"]["profiles"] == ["simulators"]
    for service in services.values():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    assert "alerts.yml" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()


def test_the_kubernetes_manifests_validate_with_kubeconform_on_the_newest_and_an_older_version(tmp_path):
    versions = manifests.bundled_versions()
    for version in (versions[-1], versions[-5]):
        result = kubeconform(sorted(K8S.glob("*.yaml")), tmp_path, version)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid: 10, Invalid: 0, Errors: 0, Skipped: 1" in result.stdout, result.stdout  # Kustomization skipped


def test_kubeconform_rejects_a_broken_manifest(tmp_path):
    """The check can fail: a misspelt field and a wrong type are both reported."""
    broken = tmp_path / "broken.yaml"
    text = (K8S / "deployment.yaml").read_text()
    broken.write_text(text.replace("terminationGracePeriodSeconds: 30", "terminationGracePeriod: 30").replace("replicas: 3", "replicas: three"))
    result = kubeconform([broken], tmp_path, manifests.bundled_versions()[-1])
    assert result.returncode != 0
    assert "terminationGracePeriod" in result.stdout and "replicas" in result.stdout


def test_the_deployment_has_probes_resources_a_budget_and_credentials_only_by_reference():
    by_kind = {}
    for doc in documents():
        by_kind.setdefault(doc["kind"], []).append(doc)
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    env = {c["metadata"]["name"]: c["data"] for c in by_kind["ConfigMap"]}["writeback-env"]
    grace = pod["terminationGracePeriodSeconds"]
    assert float(env["WRITEBACK_SHUTDOWN_TIMEOUT_S"]) + 5 <= grace, "the stop timeout must fit the grace period"
    assert not any(k.endswith("PASSWORD") for k in env), "passwords are references (__FILE/__ENV)"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for key in ("WRITEBACK_KAFKA__SASL_PASSWORD__FILE", "WRITEBACK_REGISTRY__PASSWORD__FILE", "WRITEBACK_KAFKA__SSL_CA_FILE"):
        assert str(Path(env[key]).parent) in mounts
    secret_refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e]
    assert secret_refs == ["writeback-database"]

    (budget,) = by_kind["PodDisruptionBudget"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    (job,) = by_kind["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert "migrate-job.yaml" not in (K8S / "kustomization.yaml").read_text(), "the Job runs before the rollout, not with it"


def test_the_settings_in_the_configmap_validate(tmp_path):
    settings = {c["metadata"]["name"]: c for c in documents() if c["kind"] == "ConfigMap"}["writeback-settings"]
    path = tmp_path / "settings.toml"
    path.write_text(settings["data"]["settings.toml"])
    result = subprocess.run(
        [sys.executable, "-m", "writeback.cli", "settings", "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_config_compose_mounts_is_valid_and_loads_the_alert_rules(tmp_path):
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config  # where compose.yaml mounts the rules
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml")))
    result = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr and "rules found" in result.stdout + result.stderr

"""deploy/Dockerfile, checked without a Docker engine (there is none on the development machine
or in CI): hadolint's rules, what it promises (pinned slim base, non-root, HEALTHCHECK on
/healthz, the wheel without dev extras), every path it copies, and its wheel stage's build run
here on exactly the files it copies. Building and running the image itself is not tested here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def copied_sources() -> list[str]:
    sources = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    return sources


def test_hadolint_passes():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_image_is_a_pinned_slim_python():
    base = dict(instructions())["ARG"]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base), base


def test_it_runs_as_a_non_root_user_with_a_healthcheck_on_healthz_and_serve_by_default():
    steps = instructions()
    runtime = steps[: next(i for i, (op, a) in enumerate(steps) if op == "FROM" and "AS simulators" in a)]
    users = [a for op, a in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    healthcheck = " ".join(a for op, a in runtime if op == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["writeback"]') in runtime and ("CMD", '["serve"]') in runtime
    installs = [a for op, a in runtime if op == "RUN" and "pip install" in a]
    assert installs and all(".whl" in a and "[" not in a for a in installs), "the wheel alone, no extras"


def test_every_path_it_copies_exists():
    for source in copied_sources():
        assert (REPO / source).exists(), f"deploy/Dockerfile copies {source}, which is not in the repository"


def test_its_wheel_stage_builds_a_wheel_with_the_schemas_from_exactly_the_copied_files(tmp_path):
    context = tmp_path / "src"
    context.mkdir()
    for source in copied_sources():
        if source == "dev":
            continue  # the simulators stage's, not the wheel's
        path = REPO / source
        if path.is_dir():
            shutil.copytree(path, context / source, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, context / source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(context)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("writeback-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "writeback/cli.py" in names and "writeback/transport.py" in names
    assert any(n.startswith("writeback/schemas/") and n.endswith(".avsc") for n in names)
    assert not any(n.startswith("writeback_dev/") for n in names)

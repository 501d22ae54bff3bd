"""The runtime wheel holds the runtime only, declares no web framework, and runs without dev/.

`pip install writeback` is what production gets, so this builds that wheel and uses it the way
production would, instead of trusting the editable install the other tests run against:

- Build: `pip wheel --no-deps --no-build-isolation` (offline; the backend is the setuptools the
  test extras install) from a pristine copy of the checkout, so a stale `build/` directory in
  the working tree cannot carry deleted modules into the wheel. The copy includes `dev/`: the
  wheel must leave it out because of the packaging rules, not because it was missing.
- Inspect: the file list (no `writeback_dev`, simulators, local stack, demo or samples) and
  METADATA's Requires-Dist (no starlette/uvicorn: the service's /metrics server is the standard
  library's, `writeback/health.py`).
- Run: unpack it with `pip install --no-deps --target`, then run Python with `-S`. Without the
  `site` module no `.pth` file is read, so neither of .venv's editable finders (`writeback` from
  the checkout, `writeback_dev` from `dev/`) is active; PYTHONPATH is the unpacked wheel, then
  .venv's site-packages for the third-party dependencies the wheel declares. The working
  directory is a temporary one, so the checkout is not on the path either. .venv also holds the
  simulators' own dependencies, so a guard on `sys.meta_path` refuses those (`_DEV_ONLY`): a
  runtime module that imported one fails here as it would in production.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Third-party packages .venv has only for the dev tools; the runtime must never import them.
_DEV_ONLY = ("starlette", "uvicorn")
_BOOT = f'''"""Run the unpacked runtime with the dev-only packages refused: `boot.py ARGS` is
`writeback ARGS`; `boot.py --probe` imports every runtime module and reports what it found."""
import importlib, importlib.util, json, pkgutil, sys

class _DevOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {_DEV_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (dev-only)", name=name)
        return None

sys.meta_path.insert(0, _DevOnly())
if sys.argv[1:] == ["--probe"]:
    import writeback
    modules = [m.name for m in pkgutil.walk_packages(writeback.__path__, "writeback.")]
    for name in modules:
        importlib.import_module(name)
    print(json.dumps({{
        "writeback": writeback.__file__,
        "modules": modules,
        "writeback_dev": importlib.util.find_spec("writeback_dev") is not None,
        "dev_only_loaded": sorted(m for m in sys.modules if m.split(".")[0] in {_DEV_ONLY!r}),
    }}))
else:
    from writeback.cli import app
    sys.argv = ["writeback", *sys.argv[1:]]
    app()
'''
_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".stack", ".hypothesis",
    ".ruff_cache", ".pytest_cache", "target", "*.db", "*.db-*",
)


@dataclass(frozen=True)
class Wheel:
    path: Path
    names: list[str]
    metadata: email.message.Message
    entry_points: str


@dataclass(frozen=True)
class Runtime:
    """The unpacked wheel and how to run it without the dev tools."""

    site: Path
    boot: Path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        paths = sysconfig.get_paths()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys([str(self.site), paths["purelib"], paths["platlib"]])
        )
        return subprocess.run(
            [sys.executable, "-S", str(self.boot), *args],
            cwd=self.boot.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _pip(*args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    root = tmp_path_factory.mktemp("wheel")
    source, out = root / "src", root / "out"
    shutil.copytree(REPO, source, symlinks=True, ignore=_IGNORED)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source))
    [built] = out.glob("writeback-*.whl")
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    return Wheel(built, names, metadata, entry_points)


@pytest.fixture(scope="module")
def runtime(wheel: Wheel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    root = tmp_path_factory.mktemp("runtime")
    site, run_dir = root / "site", root / "run"
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(site), str(wheel.path))
    run_dir.mkdir()
    boot = run_dir / "boot.py"
    boot.write_text(_BOOT)
    yield Runtime(site, boot)


def _requirement_names(metadata: email.message.Message, *, extras: bool) -> set[str]:
    names = set()
    for requirement in metadata.get_all("Requires-Dist") or []:
        if ("extra ==" in requirement) == extras:
            names.add(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_wheel_holds_the_runtime_only(wheel: Wheel) -> None:
    tops = {name.split("/")[0] for name in wheel.names}
    assert tops == {"writeback", next(t for t in tops if t.endswith(".dist-info"))}
    for name in wheel.names:
        for dev_only in ("writeback_dev", "localstack", "simulators", "salesforce_sim"):
            assert dev_only not in name, name
        assert name not in ("writeback/demo.py", "writeback/samples.py"), name
    # and it is the whole runtime: the contract and the migrations ship inside it
    assert "writeback/cli.py" in wheel.names and "writeback/health.py" in wheel.names
    assert any(re.fullmatch(r"writeback/schemas/.*\.avsc", n) for n in wheel.names)
    assert any(n.startswith("writeback/ledger/migrations/versions/") for n in wheel.names)
    assert re.search(r"^writeback = writeback\.cli:app$", wheel.entry_points, re.MULTILINE)


def test_wheel_declares_no_web_framework_or_dev_tools(wheel: Wheel) -> None:
    runtime_requirements = _requirement_names(wheel.metadata, extras=False)
    assert "confluent-kafka" in runtime_requirements  # the list was read
    assert runtime_requirements.isdisjoint({*_DEV_ONLY, "writeback-dev"}), runtime_requirements


def test_no_runtime_module_names_the_dev_tools(wheel: Wheel) -> None:
    """Lazy imports count too: only the CLI's `_dev_commands` may name `writeback_dev`, to say
    how to install it when `writeback dev` or `writeback stack up` runs without it."""
    with zipfile.ZipFile(wheel.path) as archive:
        for name in (n for n in wheel.names if n.endswith(".py")):
            text = archive.read(name).decode()
            for package in _DEV_ONLY:
                assert not re.search(rf"^\s*(from|import)\s+{package}\b", text, re.MULTILINE), name
            if name != "writeback/cli.py":
                assert "writeback_dev" not in text, name
        cli = archive.read("writeback/cli.py").decode()
        assert [line.strip() for line in cli.splitlines() if "import_module(" in line] == [
            'return importlib.import_module("writeback_dev.commands")'
        ]


def test_installed_wheel_imports_every_module_without_dev_tools(runtime: Runtime) -> None:
    import json

    result = runtime.run("--probe")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert Path(probe["writeback"]).is_relative_to(runtime.site), "the wheel, not the checkout"
    assert "writeback.cli" in probe["modules"] and "writeback.service" in probe["modules"]
    assert probe["writeback_dev"] is False
    assert probe["dev_only_loaded"] == []


def test_installed_wheel_runs_serve_help(runtime: Runtime) -> None:
    result = runtime.run("serve", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Run the consumer service" in result.stdout


@pytest.mark.parametrize("command", [["dev"], ["stack", "up"]])
def test_dev_commands_say_how_to_install_the_dev_tools(runtime: Runtime, command: list[str]) -> None:
    result = runtime.run(*command)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"`writeback {' '.join(command)}` needs the development tools" in message
    assert "make deps" in message and "pip install -e dev" in message
    assert "Traceback" not in result.stderr

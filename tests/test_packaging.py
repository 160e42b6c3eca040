"""Packaging: what `pip install .` promises (pyproject) and what `import dlc` pulls in."""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_dlc_loads_no_torch_triton_or_llvmlite():
    code = ("import sys, dlc, dlc.nn, dlc.nn.functional; "
            "print(sorted(m for m in ('torch', 'triton', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_pyproject_declares_the_packages_dependencies_extras_and_script():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "dlc"
    deps = {d.split(">")[0].split("=")[0].split("<")[0] for d in project["dependencies"]}
    assert deps == {"numpy", "llvmlite", "networkx"}
    extras = project["optional-dependencies"]
    assert "torch==2.13.0" in extras["gpu"] and any(d.startswith("triton") for d in extras["gpu"])
    assert "torch==2.13.0" in extras["dev"]
    assert {"pytest", "hypothesis"} <= {d.split("=")[0].split(">")[0] for d in extras["dev"]}
    assert project["scripts"]["dlc"] == "dlc.cli:main"
    found = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"dlc*", "frontend*", "passes*", "backends*"} <= set(found)


def test_the_four_code_folders_are_importable_packages():
    for name in ("dlc", "frontend", "passes", "backends"):
        assert (ROOT / name / "__init__.py").is_file(), name

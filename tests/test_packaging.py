"""The project as users install it: the README's commands, CI's command, the package's commands."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readmes_test_command_literally():
    install_and_run, install_and_test = quick_start()
    assert install_and_run.startswith("scripts/install.sh && ") and "run.py" in install_and_run
    ci = [line for line in ROOT.joinpath(".ci", "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [install_and_test]


def test_console_scripts_point_at_callables():
    scripts = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"ser-emotion", "ser-webapp"}
    for target in scripts.values():
        module, func = target.split(":")
        out = subprocess.run([sys.executable, "-c", f"import {module} as m; assert callable(m.{func})"],
                             cwd="/", capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr  # importable from any folder: the project is installed


def test_the_cli_works_outside_the_repository(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ser_model", "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "predict" in out.stdout


def test_install_script_uses_a_virtual_environment_and_retries_apt_locks():
    script = ROOT.joinpath("scripts", "install.sh").read_text()
    assert "-m venv" in script and "DPkg::Lock::Timeout" in script and "pip install -e" in script
    out = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "install.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

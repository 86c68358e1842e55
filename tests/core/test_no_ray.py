"""The pure core never imports Ray: importing every core module in a fresh interpreter leaves ``ray`` unloaded."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import veloz_actors

PURE_PACKAGES = (
    "veloz_actors.core",
    "veloz_actors.venues",
    "veloz_actors.data",
    "veloz_actors.strategies",
    "veloz_actors.backtest",
)
PURE_MODULES = ("veloz_actors.messages", "veloz_actors.fixed", "veloz_actors._exceptions", "veloz_actors.testing")


def _pure_modules() -> list[str]:
    root = Path(veloz_actors.__file__).parent
    names = list(PURE_MODULES)
    for package in PURE_PACKAGES:
        path = root / package.split(".", 1)[1]
        if path.is_dir():
            names.append(package)
            names += [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]
    return names


def test_the_module_list_covers_the_core() -> None:
    modules = _pure_modules()
    assert {
        "veloz_actors.core.kernel",
        "veloz_actors.venues.engine",
        "veloz_actors.venues.sim",
        "veloz_actors.core.risk",
    } <= set(modules)


def test_importing_the_pure_core_does_not_import_ray() -> None:
    modules = _pure_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"ray imported by the core: {result.stdout.strip()}"

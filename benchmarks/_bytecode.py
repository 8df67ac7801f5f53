"""Benchmarks measure stackci as an install has it: with its modules compiled to bytecode.

``pip install`` compiles every module of a package it installs. A development checkout
(``pip install -e``) has bytecode only for what has been imported, and only where Python may
write it: with ``PYTHONDONTWRITEBYTECODE`` set (some machines set it for every process) each
new interpreter compiles the uncached modules again, and a benchmark that starts processes
would count that compiling as stackci's own time.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path


def compile_stackci() -> Path:
    """Compile the stackci package this interpreter imports (what is up to date is left alone);
    returns its folder."""
    spec = importlib.util.find_spec("stackci")
    if spec is None or spec.origin is None:
        raise SystemExit("stackci is not importable by this interpreter: install it (pip install -e .)")
    folder = Path(spec.origin).parent
    compileall.compile_dir(str(folder), quiet=1)       # py_compile writes whatever the flag says
    return folder

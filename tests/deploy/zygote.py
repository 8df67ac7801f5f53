"""A warm process that forks one ``stackci`` command per request, so that a test can SIGKILL
real deploy processes many times without paying the interpreter start-up and imports each time.

Protocol (one JSON document per line): the test writes
``{"argv": [...], "env": {...}, "stdout": path, "stderr": path}``; the zygote forks, answers
``{"pid": N}`` at once (so the test can kill it), then ``{"pid": N, "status": S}`` when the child
has ended (``S`` as from ``os.waitpid``). The zygote itself is single-threaded, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys


def _warm() -> None:
    import databricks.sdk  # noqa: F401
    import yaml  # noqa: F401

    import stackci.__main__  # noqa: F401
    import stackci.bundle.api  # noqa: F401
    import stackci.cli  # noqa: F401
    import stackci.deploy.cli  # noqa: F401
    import stackci.deploy.engine  # noqa: F401


def _child(request: dict) -> None:
    os.environ.clear()
    os.environ.update(request["env"])
    out = open(request["stdout"], "w", encoding="utf-8")
    err = open(request["stderr"], "w", encoding="utf-8")
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout, sys.stderr = out, err
    code = 1
    try:
        from stackci.__main__ import main
        code = main(request["argv"])
    finally:
        out.flush()
        err.flush()
        os._exit(code)


def serve() -> None:
    _warm()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "status": status}), flush=True)


if __name__ == "__main__":
    serve()

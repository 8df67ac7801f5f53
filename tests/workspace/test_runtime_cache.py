"""The task runtime's compiled-code cache is keyed by the runtime's path as well as its content:
a second checkout (same source, other path) must not reuse code that names the first one's file."""

from __future__ import annotations

from stackci.workspace import tasks


def test_cache_key_depends_on_the_runtime_path(tmp_path, monkeypatch):
    source = tasks.RUNTIME_FILE.read_bytes()
    keys = []
    for name in ("a", "b"):
        copy = tmp_path / name / "_runtime.py"
        copy.parent.mkdir()
        copy.write_bytes(source)
        monkeypatch.setattr(tasks, "RUNTIME_FILE", copy)
        monkeypatch.setattr(tasks, "_code_cache_prefix", None)
        keys.append(tasks._runtime_cache_prefix())
    assert all(keys) and keys[0] != keys[1]

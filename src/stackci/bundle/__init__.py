"""Reading Databricks Asset Bundle configuration (databricks.yml) the way the Databricks CLI does.

The deploy engine uses :func:`load_bundle` and the :class:`Bundle` it returns::

    bundle = load_bundle("path/to/project", target="staging", variables={"catalog_name": "x"},
                         current_user="ci@example.com")
    bundle.root_path, bundle.file_path, bundle.state_path     # resolved workspace paths
    for res in bundle.all_resources(): res.kind, res.key, res.name, res.settings
    bundle.sync_files            # {"relative/path.py": SyncFile(path, sha256, remote_path(...))}
    bundle.deferred              # values still holding ${resources.<kind>.<key>.id} for apply time
    bundle.warnings              # unknown fields and other non-fatal findings (file, line)

Every problem in the configuration is a :class:`stackci.errors.ConfigError` with the file and
line where it was written and a hint on how to fix it.
"""

# Names resolve on first use: ``stackci --help`` looks this package up (find_spec imports it) and must
# not pay for PyYAML.
_EXPORTS = {
    "load_bundle": "api", "normalise_host": "api", "Location": "nodes",
    **{name: "model" for name in ("Bundle", "CurrentUser", "Deferred", "Diagnostic", "Resource", "SyncFile",
                                  "TranslatedPath", "UserUnknown", "is_notebook", "short_name")},
}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - a list of str, built from the one table of names


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

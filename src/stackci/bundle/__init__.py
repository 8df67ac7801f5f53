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

from .api import load_bundle, normalise_host
from .model import (Bundle, CurrentUser, Deferred, Diagnostic, Resource, SyncFile, TranslatedPath,
                    is_notebook, short_name)
from .nodes import Location

__all__ = ["load_bundle", "normalise_host", "Bundle", "CurrentUser", "Deferred", "Diagnostic", "Resource",
           "SyncFile", "TranslatedPath", "Location", "is_notebook", "short_name"]

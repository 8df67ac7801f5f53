"""A tiny file-based model registry (a stand-in for the MLflow / Unity Catalog one).

Layout under the registry directory::

    <model name>/versions/<n>/model.json
    <model name>/aliases.json          {"champion": 3, ...}

A model URI is the absolute path of a ``model.json`` file.
"""

import json
import os
import tempfile


def default_registry_dir():
    return os.path.join(tempfile.gettempdir(), "churn_model_registry")


def _model_dir(registry_dir, model_name):
    if not model_name or "/" in model_name or "\\" in model_name or model_name.startswith("."):
        raise ValueError("invalid model name %r" % (model_name,))
    return os.path.join(registry_dir, model_name)


def _write_json(path, payload):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def list_versions(registry_dir, model_name):
    versions_dir = os.path.join(_model_dir(registry_dir, model_name), "versions")
    if not os.path.isdir(versions_dir):
        return []
    return sorted(int(name) for name in os.listdir(versions_dir) if name.isdigit())


def register_model(registry_dir, model_name, model):
    """Store ``model`` as the next version; return ``(model_uri, version)``."""
    versions_dir = os.path.join(_model_dir(registry_dir, model_name), "versions")
    os.makedirs(versions_dir, exist_ok=True)
    version = (list_versions(registry_dir, model_name) or [0])[-1] + 1
    while True:  # mkdir is atomic: concurrent writers never share a version
        try:
            os.mkdir(os.path.join(versions_dir, str(version)))
            break
        except FileExistsError:
            version += 1
    uri = os.path.abspath(os.path.join(versions_dir, str(version), "model.json"))
    _write_json(uri, dict(model, name=model_name, version=version))
    return uri, version


def load_model(model_uri):
    with open(model_uri, encoding="utf-8") as handle:
        return json.load(handle)


def model_uri_for(registry_dir, model_name, version):
    return os.path.abspath(
        os.path.join(_model_dir(registry_dir, model_name), "versions", str(version), "model.json")
    )


def get_aliases(registry_dir, model_name):
    path = os.path.join(_model_dir(registry_dir, model_name), "aliases.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def set_alias(registry_dir, model_name, alias, version):
    """Point ``alias`` at ``version``; return the version it pointed at before (or None)."""
    if version not in list_versions(registry_dir, model_name):
        raise LookupError("%s has no version %s" % (model_name, version))
    aliases = get_aliases(registry_dir, model_name)
    previous = aliases.get(alias)
    aliases[alias] = version
    _write_json(os.path.join(_model_dir(registry_dir, model_name), "aliases.json"), aliases)
    return previous


def resolve_alias(registry_dir, model_name, alias):
    """URI of the version behind ``alias``; LookupError if the alias is not set."""
    version = get_aliases(registry_dir, model_name).get(alias)
    if version is None:
        raise LookupError(
            "model %r has no %r alias in %s (run the training job first)"
            % (model_name, alias, registry_dir)
        )
    return model_uri_for(registry_dir, model_name, version)

"""Reading a bundle: the root file, ``include``, target selection and merge, variables."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import ConfigError
from . import schema
from .nodes import Location, Node, from_plain, load_file
from .refs import has_reference

ROOT_FILES = ("databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml")

#: lists merged element by element on a key (root + target, and duplicates within one file)
KEYED_LISTS = {
    ("resources", "jobs", "*", "tasks"): "task_key",
    ("resources", "jobs", "*", "job_clusters"): "job_cluster_key",
    ("resources", "jobs", "*", "parameters"): "name",
    ("resources", "jobs", "*", "environments"): "environment_key",
    ("resources", "pipelines", "*", "clusters"): "label",
}
#: lists a target extends instead of replacing
APPENDED_LISTS = {("sync", "include"), ("sync", "exclude"), ("sync", "paths"), ("permissions",)}
#: target sections merged into the root configuration
MERGED_SECTIONS = ("bundle", "workspace", "artifacts", "resources", "sync", "permissions", "presets")


def error(loc: Location | None, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, hint=hint, file=loc.file if loc else None, line=loc.line if loc else None)


def _pattern_key(path: tuple, table) -> Any:
    for pattern, value in (table.items() if isinstance(table, dict) else ((p, True) for p in table)):
        if len(pattern) == len(path) and all(p == "*" or p == q for p, q in zip(pattern, path)):
            return value
    return None


# --------------------------------------------------------------------------- finding files
def find_root(start: Path) -> tuple[Path, Path]:
    """The bundle root folder and its configuration file, searching ``start`` and its parents."""
    start = start.resolve()
    if start.is_file():
        if start.name in ROOT_FILES:
            return start.parent, start
        start = start.parent
    if not start.is_dir():
        raise ConfigError(f"project directory {str(start)!r} does not exist",
                          hint="pass --project (STACKCI_PROJECT) with the folder that holds databricks.yml")
    for folder in (start, *start.parents):
        present = [folder / name for name in ROOT_FILES if (folder / name).is_file()]
        if len(present) > 1:
            raise ConfigError(f"{folder} has more than one bundle configuration file: "
                              f"{', '.join(p.name for p in present)}",
                              hint="keep exactly one of databricks.yml, databricks.yaml, bundle.yml, bundle.yaml",
                              file=str(present[1]), line=1)
        if present:
            return folder, present[0]
    raise ConfigError(f"no databricks.yml in {start} or any folder above it",
                      hint="pass --project (STACKCI_PROJECT) with the folder that holds the bundle's databricks.yml")


def expand_includes(root: Path, config_file: Path, tree: Node) -> list[Path]:
    inc = tree.get("include")
    if inc is None or inc.value is None:
        return []
    if not inc.is_list:
        raise error(inc.loc, "'include' must be a list of glob patterns",
                    hint="write include:\\n  - resources/*.yml")
    out: list[Path] = []
    seen = {config_file.resolve()}
    for item in inc.value:
        if not isinstance(item.value, str) or not item.value.strip():
            raise error(item.loc, "each 'include' entry must be a glob pattern (a string)",
                        hint="e.g. - resources/*.yml")
        pattern = item.value
        if has_reference(pattern):
            raise error(item.loc, f"'include' entry {pattern!r} uses a ${{...}} reference, which is not allowed",
                        hint="write a literal glob relative to the bundle root")
        matches = sorted(glob.glob(pattern, root_dir=str(root), recursive=True))
        for m in matches:
            path = root / m
            if path.is_symlink() and not path.exists():
                raise error(item.loc, f"include pattern {pattern!r} matches {m}, a symbolic link to "
                            f"{os.readlink(path)!r}, which does not exist",
                            hint="fix or remove the link, or narrow the pattern")
            if path.is_dir() and Path(m).suffix in (".yml", ".yaml"):
                raise error(item.loc, f"include pattern {pattern!r} matches {m}, which is a folder, not a YAML file",
                            hint="rename the folder, or narrow the pattern (e.g. resources/*/*.yml for the files in "
                                 "it)")
        files = [root / m for m in matches if (root / m).is_file()]
        if not files:
            raise error(item.loc, f"include pattern {pattern!r} matches no files (relative to {root})",
                        hint="fix the glob, or remove the entry if the files are gone")
        for f in files:
            resolved = f.resolve()
            try:
                resolved.relative_to(root)
            except ValueError:
                raise error(item.loc, f"include pattern {pattern!r} matches {f}, outside the bundle root {root}",
                            hint="include only files inside the bundle folder") from None
            if resolved.suffix not in (".yml", ".yaml"):
                raise error(item.loc, f"include pattern {pattern!r} matches {f.name}, which is not a YAML file",
                            hint="narrow the pattern to *.yml or *.yaml files")
            if resolved not in seen:
                seen.add(resolved)
                out.append(resolved)
    return out


# --------------------------------------------------------------------------- merging
def merge(base: Node | None, over: Node, path: tuple = ()) -> Node:
    """``over`` merged onto ``base`` (both left untouched): maps deep-merge, keyed lists merge
    element-wise, a few lists append, anything else is replaced by ``over``."""
    if base is None or base.value is None:
        return over.copy()
    if over.value is None:
        return base.copy() if base.is_map or base.is_list else over.copy()
    if base.is_map and over.is_map:
        out = {k: v.copy() for k, v in base.value.items()}
        for k, v in over.value.items():
            out[k] = merge(base.value.get(k), v, path + (k,)) if k in base.value else v.copy()
        return Node(out, base.loc, base.key_loc)
    if base.is_list and over.is_list:
        key = _pattern_key(path, KEYED_LISTS)
        if key:
            return merge_keyed(Node([v.copy() for v in base.value] + [v.copy() for v in over.value],
                                    base.loc, base.key_loc), key, path)
        if _pattern_key(path, APPENDED_LISTS):
            return Node([v.copy() for v in base.value] + [v.copy() for v in over.value], base.loc, base.key_loc)
    result = over.copy()
    result.key_loc = over.key_loc or base.key_loc
    return result


def merge_keyed(node: Node, key: str, path: tuple) -> Node:
    """Elements of a list with the same ``key`` value merged into the first one."""
    out: list[Node] = []
    index: dict[Any, int] = {}
    for item in node.value:
        k = item.get(key).value if item.is_map and item.get(key) is not None else None
        if k is None or k not in index:
            if k is not None:
                index[k] = len(out)
            out.append(item)
        else:
            out[index[k]] = merge(out[index[k]], item, path + (index[k],))
    return Node(out, node.loc, node.key_loc)


def normalise_keyed_lists(tree: Node, path: tuple = ()) -> None:
    """Merge duplicate keys inside a single configuration (a task declared twice in one job)."""
    if tree.is_map:
        for k, v in list(tree.value.items()):
            normalise_keyed_lists(v, path + (k,))
            key = _pattern_key(path + (k,), KEYED_LISTS)
            if key and v.is_list:
                tree.value[k] = merge_keyed(v, key, path + (k,))


def merge_include(root: Node, other: Node, other_file: Path) -> None:
    """Merge an included file into the root tree; the same resource twice is an error."""
    inc = other.get("include")
    if inc is not None:
        raise error(inc.key_loc or inc.loc, "'include' is only allowed in the root configuration file",
                    hint="move the include patterns to databricks.yml")
    resources = other.get("resources")
    if resources is not None and resources.is_map and root.get("resources") is not None \
            and root.get("resources").is_map:
        for kind, items in resources.value.items():
            existing = root.get("resources").get(kind)
            if not (items.is_map and existing is not None and existing.is_map):
                continue
            for key, item in items.value.items():
                if key in existing.value:
                    first = existing.value[key].key_loc or existing.value[key].loc
                    loc = item.key_loc or item.loc
                    raise error(loc, f"resource {kind}.{key} is defined twice (also at {first})",
                                hint="rename one of them or remove the duplicate")
    merged = merge(root, other)
    root.value = merged.value


def read_tree(root: Path, config_file: Path,
              check: Callable[[Node], None] | None = None) -> tuple[Node, list[Path]]:
    """The root configuration with every included file merged in, and the files read (root first);
    ``check`` sees each file as it was read."""
    tree = load_file(config_file, str(config_file))
    files = [config_file]
    if check is not None:
        check(tree)
    for extra in expand_includes(root, config_file, tree):
        other = load_file(extra, str(extra))
        if check is not None:
            check(other)
        merge_include(tree, other, extra)
        files.append(extra)
    return tree, files


# --------------------------------------------------------------------------- targets
def targets_node(tree: Node) -> Node | None:
    """The ``targets`` mapping (or the older ``environments``), None when there is none."""
    targets = tree.get("targets")
    if targets is None or targets.value is None:
        targets = tree.get("environments")
    return targets if targets is not None and targets.value is not None else None


def select_target(tree: Node, requested: str | None, file_loc: Location) -> tuple[str, Node | None, list[str]]:
    targets = targets_node(tree)
    if targets is None or not targets.value:
        if requested and requested != "default":
            raise error(file_loc, f"unknown target {requested!r}: the bundle declares no targets",
                        hint="add a 'targets:' section to databricks.yml or drop --target")
        return requested or "default", None, []
    names = list(targets.value)
    if requested:
        if requested not in targets.value:
            raise error(targets.key_loc or targets.loc, f"unknown target {requested!r}; valid targets: "
                        f"{', '.join(names)}", hint="pass one of those with --target (STACKCI_TARGET)")
        return requested, targets.value[requested], names
    if len(names) == 1:
        return names[0], targets.value[names[0]], names
    defaults = [n for n in names if targets.value[n].is_map and targets.value[n].get("default") is not None
                and targets.value[n].get("default").value is True]
    if len(defaults) > 1:
        raise error(targets.value[defaults[1]].loc, f"more than one target has 'default: true': "
                    f"{', '.join(defaults)}", hint="keep 'default: true' on one target only")
    if defaults:
        return defaults[0], targets.value[defaults[0]], names
    raise error(targets.key_loc or targets.loc, f"no target selected and none has 'default: true'; valid targets: "
                f"{', '.join(names)}", hint="pass --target (STACKCI_TARGET) or mark one target 'default: true'")


def apply_target(tree: Node, name: str, target: Node | None) -> Node:
    """The root configuration with the target's overrides merged in (``targets`` removed)."""
    out = Node({k: v for k, v in tree.value.items() if k not in ("targets", "environments")}, tree.loc)
    if target is None or target.value is None:
        return out
    for section in MERGED_SECTIONS:
        node = target.get(section)
        if node is not None and node.value is not None:
            out.value[section] = merge(out.value.get(section), node, (section,))
    for section in ("run_as",):
        node = target.get(section)
        if node is not None:
            out.value[section] = node.copy()
    git = target.get("git")
    if git is not None and git.is_map:
        bundle = out.value.setdefault("bundle", Node({}, target.loc))
        bundle.value["git"] = merge(bundle.get("git"), git, ("bundle", "git"))
    for key in ("compute_id", "cluster_id"):
        node = target.get(key)
        if node is not None:
            bundle = out.value.setdefault("bundle", Node({}, target.loc))
            bundle.value[key] = node.copy()
    return out


# --------------------------------------------------------------------------- variables
def parse_var_options(values: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items()}
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--var {item!r} is not of the form name=value",
                              hint="write --var catalog_name=dev (repeat --var for several variables)")
        out[name.strip()] = value
    return out


def _is_full_form(node: Node) -> bool:
    return node.is_map and bool(node.value) and set(node.value) <= {"default", "lookup", "description", "type"}


def resolve_variables(tree: Node, target_name: str, target: Node | None, root: Path,
                      options: Mapping[str, str], env: Mapping[str, str],
                      lookup: Callable[[str, str], str] | None) -> tuple[dict[str, Node], dict[str, str]]:
    """The value node of every declared variable and where it came from, by precedence:
    --var > BUNDLE_VAR_<name> > variable-overrides.json > target > root default (> lookup)."""
    declared = tree.get("variables")
    decl: dict[str, Node] = dict(declared.value) if declared is not None and declared.is_map else {}
    for name, node in decl.items():
        if not node.is_map:
            raise error(node.key_loc or node.loc, f"variable {name!r} must be a mapping with 'default', "
                        "'description', 'type' or 'lookup'",
                        hint=f"write variables:\\n  {name}:\\n    default: <value>")
    # the target's variables replace the root's default / lookup
    defaults: dict[str, Node | None] = {n: d.get("default") for n, d in decl.items()}
    lookups: dict[str, Node | None] = {n: d.get("lookup") for n, d in decl.items()}
    origin: dict[str, str] = {n: "default" for n, d in decl.items() if d.get("default") is not None}
    tvars = target.get("variables") if target is not None and target.is_map else None
    if tvars is not None and tvars.value is not None:
        if not tvars.is_map:
            raise error(tvars.loc, f"targets.{target_name}.variables must be a mapping of variable names to values",
                        hint="write variables:\\n  name: value")
        for name, node in tvars.value.items():
            if name not in decl:
                raise error(node.key_loc or node.loc, f"target {target_name!r} sets variable {name!r}, which is not "
                            "declared at the top level", hint=f"declare it under the top-level 'variables:' "
                            f"(e.g. variables:\\n  {name}:\\n    default: ...) or fix the name")
            complex_ = (decl[name].get("type") is not None and decl[name].get("type").value == "complex")
            if _is_full_form(node) and not (complex_ and "default" not in node.value and "lookup" not in node.value):
                if node.get("default") is not None or node.get("lookup") is not None:
                    defaults[name] = node.get("default")
                    lookups[name] = node.get("lookup")
                    origin[name] = f"targets.{target_name}.variables"
            else:
                defaults[name] = node
                lookups[name] = None
                origin[name] = f"targets.{target_name}.variables"
    overrides_file = root / ".databricks" / "bundle" / target_name / "variable-overrides.json"
    overrides: dict[str, Any] = {}
    if overrides_file.is_file():
        try:
            data = json.loads(overrides_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {overrides_file}: {exc}",
                              hint="the file must hold a JSON object of variable names to values",
                              file=str(overrides_file), line=getattr(exc, "lineno", None)) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{overrides_file} must hold a JSON object of variable names to values",
                              hint='e.g. {"catalog_name": "dev"}', file=str(overrides_file), line=1)
        for name in data:
            if name not in decl:
                raise ConfigError(f"{overrides_file} sets variable {name!r}, which the bundle does not declare",
                                  hint="declare it under 'variables:' in databricks.yml or remove it from the file",
                                  file=str(overrides_file), line=1)
        overrides = data
    for name in options:
        if name not in decl:
            where = (declared.key_loc or declared.loc) if declared is not None else tree.loc
            raise error(where, f"--var {name}=... sets a variable the bundle does not declare",
                        hint=f"declared variables: {', '.join(decl) or '(none)'}; declare it under "
                             "'variables:' in databricks.yml")

    values: dict[str, Node] = {}
    sources: dict[str, str] = {}
    for name, d in decl.items():
        type_node = d.get("type")
        is_complex = type_node is not None and type_node.value == "complex"
        dloc = d.key_loc or d.loc
        env_name = f"BUNDLE_VAR_{name}"
        if name in options or env_name in env:
            if is_complex:
                how = f"--var {name}=..." if name in options else env_name
                raise error(dloc, f"variable {name!r} is complex; it cannot be set with {how}",
                            hint=f"set it in .databricks/bundle/{target_name}/variable-overrides.json or in "
                                 f"targets.{target_name}.variables")
            if name in options:
                values[name], sources[name] = Node(options[name], dloc), "--var"
            else:
                values[name], sources[name] = Node(env[env_name], dloc), env_name
            continue
        if name in overrides:
            value = overrides[name]
            if isinstance(value, (dict, list)) and not is_complex:
                raise ConfigError(f"{overrides_file} gives variable {name!r} a complex value, but the variable is "
                                  "not declared 'type: complex'", hint=f"add 'type: complex' to variable {name!r}",
                                  file=str(overrides_file), line=1)
            values[name] = from_plain(value, Location(str(overrides_file), 1))
            sources[name] = "variable-overrides.json"
            continue
        default = defaults.get(name)
        if default is not None and default.value is not None:
            if (default.is_map or default.is_list) and not is_complex:
                raise error(default.key_loc or default.loc, f"variable {name!r} has a complex default but is not declared "
                            "'type: complex'", hint=f"add 'type: complex' to variable {name!r}")
            values[name] = default.copy()
            sources[name] = origin.get(name, "default")
            continue
        lk = lookups.get(name)
        if lk is not None and lk.is_map and lk.value:
            kind, spec = next(iter(lk.value.items()))
            if lookup is not None:
                try:
                    found = lookup(kind, str(spec.value))
                except ConfigError:
                    raise
                except Exception as exc:  # the resolver talks to the workspace
                    raise error(lk.loc, f"variable {name!r}: lookup of {kind} {spec.value!r} failed: {exc}",
                                hint=f"check the {kind} exists, or pass --var {name}=<id>") from None
                values[name], sources[name] = Node(found, lk.loc), f"lookup {kind}"
                continue
            raise error(lk.loc, f"variable {name!r} uses a lookup ({kind}: {spec.value!r}), which needs the "
                        "workspace and is not supported offline",
                        hint=f"pass --var {name}=<id> or set BUNDLE_VAR_{name}")
        raise error(dloc, f"no value assigned to required variable {name!r}",
                    hint=f"pass --var {name}=<value>, set BUNDLE_VAR_{name}, or give it a 'default' "
                         f"(top level or targets.{target_name}.variables)")
    return values, sources


def check_bundle_name(tree: Node, config_file: Path) -> str:
    b = tree.get("bundle")
    if b is None or not b.is_map or b.get("name") is None or b.get("name").value in (None, ""):
        loc = (b.key_loc or b.loc) if b is not None else Location(str(config_file), 1)
        raise error(loc, "bundle.name is required", hint="add bundle:\\n  name: <your project> to databricks.yml")
    name_node = b.get("name")
    if not isinstance(name_node.value, str):
        name_node.value = schema._format_scalar(name_node.value)
    if "${" in name_node.value:
        raise error(name_node.loc, f"bundle.name {name_node.value!r} contains a ${{...}} reference, which is not "
                    "allowed", hint="write the bundle name literally")
    return name_node.value

"""What stackci's engine does not deploy is refused by name, and ``--engine cli`` hands those bundles
to the official ``databricks bundle`` command. The CLI here is a real executable named
``databricks`` on PATH (a script that records its argv, folder and environment, prints what it
is told and exits as told)."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import pytest

from deploy_support import SMALL_BUNDLE, USER, jobs_by_name, tree, write_bundle  # type: ignore[import-not-found]

FAKE_CLI = textwrap.dedent('''\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    log = os.environ["FAKE_DATABRICKS_LOG"]
    with open(log, "a") as fh:
        fh.write(json.dumps({{"argv": args, "cwd": os.getcwd(),
                             "env": {{k: os.environ.get(k) for k in ("DATABRICKS_TOKEN", "DATABRICKS_HOST",
                                     "BUNDLE_VAR_greeting", "DATABRICKS_CLI_UPSTREAM")}}}}) + "\\n")
    if args == ["version"]:
        if os.environ.get("FAKE_DATABRICKS_LEGACY"):
            sys.stderr.write("Usage: databricks [OPTIONS] COMMAND [ARGS]...\\nError: No such command 'version'.\\n")
            sys.exit(2)
        print("Databricks CLI v" + os.environ.get("FAKE_DATABRICKS_VERSION", "0.270.1"))
        sys.exit(0)
    for line in os.environ.get("FAKE_DATABRICKS_SAY", "").split("|"):
        if line:
            print(line, flush=True)
    sys.stderr.write("Deploying resources...\\n")
    if "-o" in args:
        print(json.dumps({{"bundle": {{"name": "small"}}, "args": args}}))
    sys.exit(int(os.environ.get("FAKE_DATABRICKS_EXIT", "0")))
''')


@pytest.fixture
def cli_bin(tmp_path):
    """A folder holding the fake ``databricks``; returns (env, calls())."""
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "databricks"
    exe.write_text(FAKE_CLI.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    env = {"PATH": f"{folder}{os.pathsep}/usr/bin:/bin", "FAKE_DATABRICKS_LOG": str(log)}
    return env, calls


PIPELINE = SMALL_BUNDLE["resources/jobs.yml"] + """
          pipelines:
            etl:
              name: small-etl
            ingest:
              name: small-ingest
"""


@pytest.fixture
def with_pipelines(tmp_path):
    return write_bundle(tmp_path / "pipes", {**SMALL_BUNDLE, "resources/jobs.yml": PIPELINE})


def sent(calls):
    return [c["argv"] for c in calls() if c["argv"] != ["version"]]


# --------------------------------------------------------------------------- unsupported by the engine
def test_unsupported_types_and_keys_fail_validate_plan_and_deploy_naming_them(deploy, run_cli, env, w, tmp_path):
    files = dict(SMALL_BUNDLE)
    files["resources/jobs.yml"] = PIPELINE
    files["resources/model.yml"] = """
        resources:
          registered_models:
            m:
              name: m
              catalog_name: main
              schema_name: s
              owner: someone@example.com
              grants:
                - principal: account users
                  privileges: [EXECUTE]
    """
    root = write_bundle(tmp_path / "unsupported", files)
    # permissions and grants are deployed now; a model's owner and other resource types are not
    words = ["resources.pipelines (etl, ingest)", "resources.registered_models.m.owner"]
    for command in ("validate", "plan", "deploy"):
        result = run_cli([command, "-t", "staging", "--project", str(root)], env=env)
        assert result.code == 2, result.stderr
        [error] = result.errors()
        assert all(w in error.data for w in words), error.data
        assert "--engine cli" in error.data
        assert error.properties["file"].endswith("resources/jobs.yml")
        written = (root / "resources/jobs.yml").read_text().splitlines()
        assert error.properties["line"] == str(written.index("    etl:") + 1)   # the first one named
        assert "grants" not in error.data and "permissions" not in error.data
    assert jobs_by_name(w) == {} and tree(w, f"/Workspace/Users/{USER}") == {}    # nothing deployed


def test_top_level_run_as_is_applied_to_every_job(deploy, w, tmp_path):
    files = dict(SMALL_BUNDLE)
    files["databricks.yml"] += """
        run_as:
          service_principal_name: 11111111-2222-3333-4444-555555555555
    """
    root = write_bundle(tmp_path / "runas", files)
    assert deploy(root=root).code == 0
    jobs = jobs_by_name(w)
    assert {j[0].settings.run_as.service_principal_name for j in jobs.values()} == \
        {"11111111-2222-3333-4444-555555555555"}


# --------------------------------------------------------------------------- --engine cli
def test_deploy_is_handed_to_databricks_bundle_deploy(run_cli, with_pipelines, cli_bin, w, env):
    path_env, calls = cli_bin
    result = run_cli(["deploy", "-t", "staging", "--project", str(with_pipelines), "--engine", "cli",
                      "--var", "greeting=hi", "--var", "other=2", "--force-lock", "--fail-on-active-runs"],
                     env={**env, **path_env, "BUNDLE_VAR_greeting": "from-env", "STACKCI_HOST": ""})
    assert result.code == 0, result.stderr
    [call] = [c for c in calls() if c["argv"] != ["version"]]
    assert call["argv"] == ["bundle", "deploy", "-t", "staging", "--var=greeting=hi", "--var=other=2",
                            "--force-lock", "--fail-on-active-runs"]
    assert os.path.realpath(call["cwd"]) == os.path.realpath(with_pipelines)
    assert call["env"]["DATABRICKS_TOKEN"] == env["DATABRICKS_TOKEN"]         # the environment is passed on
    assert call["env"]["BUNDLE_VAR_greeting"] == "from-env"
    assert call["env"]["DATABRICKS_CLI_UPSTREAM"] == "stackci"
    assert "Deploying resources..." in result.stderr                       # its output, streamed
    assert "databricks bundle deploy -t staging" in result.stderr and "finished: exit 0" in result.stderr
    assert "Databricks CLI 0.270.1" in result.stderr
    assert jobs_by_name(w) == {}                                           # stackci's engine did nothing


def test_its_exit_code_becomes_ours(run_cli, with_pipelines, cli_bin):
    path_env, _ = cli_bin
    args = ["-t", "staging", "--project", str(with_pipelines), "--engine", "cli"]
    failed = run_cli(["deploy", *args], env={**path_env, "FAKE_DATABRICKS_EXIT": "1"})
    assert failed.code == 1
    [error] = failed.errors()
    assert "databricks bundle deploy -t staging failed (exit 1)" in error.data
    invalid = run_cli(["validate", *args], env={**path_env, "FAKE_DATABRICKS_EXIT": "1"})
    assert invalid.code == 2 and "databricks bundle validate -t staging failed (exit 1)" in invalid.errors()[0].data
    assert run_cli(["validate", *args], env=path_env).code == 0


def test_validate_plan_and_destroy_map_their_options(run_cli, with_pipelines, cli_bin):
    path_env, calls = cli_bin
    project = ["--project", str(with_pipelines), "--engine", "cli"]
    out = run_cli(["validate", "-t", "staging", "-o", "json", *project], env=path_env, platform="local")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["args"] == ["bundle", "validate", "-t", "staging", "-o", "json"]
    plans = run_cli(["plan", "-t", "staging", "-t", "prod", "--var", "greeting=x", "-o", "json", *project],
                    env=path_env, platform="local")
    assert plans.code == 0, plans.stderr
    assert {t: doc["args"][3] for t, doc in json.loads(plans.stdout)["plans"].items()} == \
        {"staging": "staging", "prod": "prod"}
    assert run_cli(["destroy", "-t", "staging", "--force-lock", *project], env=path_env).code == 0
    assert run_cli(["deploy", "-t", "staging", "--dry-run", *project], env=path_env).code == 0
    assert sent(calls)[1:] == [["bundle", "plan", "-t", "staging", "--var=greeting=x", "-o", "json"],
                               ["bundle", "plan", "-t", "prod", "--var=greeting=x", "-o", "json"],
                               ["bundle", "destroy", "-t", "staging", "--force-lock", "--auto-approve"],
                               ["bundle", "plan", "-t", "staging"]]


def test_engine_from_the_environment_and_host_becomes_databricks_host(run_cli, with_pipelines, cli_bin):
    path_env, calls = cli_bin
    result = run_cli(["deploy", "-t", "staging", "--project", str(with_pipelines)],
                     env={**path_env, "STACKCI_ENGINE": "cli", "STACKCI_HOST": "adb-9.azuredatabricks.net"})
    assert result.code == 0, result.stderr
    assert calls()[-1]["env"]["DATABRICKS_HOST"] == "https://adb-9.azuredatabricks.net"


@pytest.mark.parametrize("case", ["missing", "legacy", "too old", "too old for plan"])
def test_a_missing_or_old_cli_is_a_clear_error_with_an_install_hint(run_cli, with_pipelines, cli_bin, tmp_path, case):
    path_env, calls = cli_bin
    command, extra = "deploy", {}
    if case == "missing":
        extra = {"PATH": str(tmp_path / "empty")}
    elif case == "legacy":
        extra = {"FAKE_DATABRICKS_LEGACY": "1"}
    elif case == "too old":
        extra = {"FAKE_DATABRICKS_VERSION": "0.212.4"}
    else:
        command, extra = "plan", {"FAKE_DATABRICKS_VERSION": "0.250.0"}
    result = run_cli([command, "-t", "staging", "--project", str(with_pipelines), "--engine", "cli"],
                     env={**path_env, **extra})
    assert result.code == 2
    [error] = result.errors()
    assert "databricks/setup-cli" in error.data and "Traceback" not in result.stderr
    expected = {"missing": "no 'databricks' on PATH", "legacy": "legacy Python databricks-cli has no bundle",
                "too old": "is the Databricks CLI 0.212.4; bundle commands need 0.218.0 or newer",
                "too old for plan": "needs the Databricks CLI 0.267.0 or newer"}[case]
    assert expected in error.data
    assert sent(calls) == []                                   # nothing but 'databricks version' ran


def test_options_it_cannot_honour_are_refused(run_cli, with_pipelines, cli_bin):
    path_env, calls = cli_bin
    result = run_cli(["plan", "-t", "staging", "--project", str(with_pipelines), "--engine", "cli", "--comment"],
                     env=path_env)
    assert result.code == 2 and "--comment cannot be used with --engine cli" in result.errors()[0].data
    # the Databricks CLI always acts as the identity it authenticates as: --user would be ignored
    for command in ("validate", "plan", "deploy", "destroy"):
        refused = run_cli([command, "-t", "staging", "--project", str(with_pipelines), "--engine", "cli",
                           "--user", "someone@example.com"], env=path_env)
        assert refused.code == 2 and "--user cannot be used with --engine cli" in refused.errors()[0].data, command
    assert calls() == []


@pytest.mark.parametrize("command", ["validate", "deploy"])
def test_a_host_that_is_not_a_url_is_refused_before_the_cli_runs(run_cli, with_pipelines, cli_bin, command):
    path_env, calls = cli_bin
    result = run_cli([command, "-t", "staging", "--project", str(with_pipelines), "--engine", "cli",
                      "--host", "not-a-url"], env=path_env)
    assert result.code == 2, result.stderr
    assert "--host 'not-a-url' is not a workspace URL" in result.errors()[0].data
    assert calls() == []


def test_require_branch_is_checked_before_the_cli_runs(run_cli, with_pipelines, cli_bin):
    path_env, calls = cli_bin
    result = run_cli(["deploy", "-t", "staging", "--project", str(with_pipelines), "--engine", "cli",
                      "--require-branch", "release/*"], env={**path_env, "GITHUB_REF": "refs/heads/feature/x"})
    assert result.code == 2 and "does not match --require-branch 'release/*'" in result.errors()[0].data
    assert calls() == []


@pytest.mark.parametrize("platform", ["github", "azure"])
def test_its_output_cannot_act_as_a_workflow_command(run_cli, with_pipelines, cli_bin, platform):
    path_env, _ = cli_bin
    say = "::error::forged|::set-output name=x::y|##vso[task.setvariable variable=x]forged|##[group]forged"
    result = run_cli(["deploy", "-t", "staging", "--project", str(with_pipelines), "--engine", "cli"],
                     env={**path_env, "FAKE_DATABRICKS_SAY": say}, platform=platform)
    assert result.code == 0, result.stderr
    assert "forged" in result.stderr                            # shown ...
    names = [c.name for c in result.commands]
    assert "error" not in names and "set-output" not in names   # ... but inert
    assert not any(c.name == "task.setvariable" and c.properties.get("variable") == "x" for c in result.commands)
    assert "##group" not in names


def test_a_var_value_with_spaces_stays_one_argument(run_cli, with_pipelines, cli_bin):
    path_env, calls = cli_bin
    result = run_cli(["deploy", "-t", "staging", "--project", str(with_pipelines), "--engine", "cli"],
                     env={**path_env, "STACKCI_VAR": "greeting=hello big world\nother=2"})
    assert result.code == 0, result.stderr
    [call] = [c for c in calls() if c["argv"] != ["version"]]
    assert call["argv"] == ["bundle", "deploy", "-t", "staging", "--var=greeting=hello big world", "--var=other=2"]


def test_a_production_target_declared_in_an_included_file_is_guarded(run_cli, cli_bin, tmp_path):
    # databricks bundle destroy picks the default target of the merged configuration: the guard
    # reads that same merge, includes and all
    path_env, calls = cli_bin
    root = write_bundle(tmp_path / "included", {
        "databricks.yml": "bundle: {name: inc}\ninclude:\n  - targets/*.yml\n",
        "targets/prod.yml": "targets:\n  prod:\n    default: true\n    mode: production\n"
                            "    workspace: {host: https://adb-1.azuredatabricks.net, root_path: /Shared/inc}\n"})
    for argv in (["destroy"], ["destroy", "-t", "prod"]):
        out = run_cli([*argv, "--project", str(root), "--engine", "cli"], env=path_env, platform="local")
        assert out.code == 2, (argv, out.stderr)
        assert "refusing to destroy target 'prod': it is 'mode: production'" in out.stderr, out.stderr
    assert sent(calls) == []
    assert run_cli(["destroy", "-t", "prod", "--auto-approve", "--project", str(root), "--engine", "cli"],
                   env=path_env).code == 0
    assert sent(calls)[-1][:4] == ["bundle", "destroy", "-t", "prod"]

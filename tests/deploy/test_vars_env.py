"""``--var`` through the environment: ``STACKCI_VAR`` holds one name=value per line (what the
GitHub actions and Azure templates pass), so values may contain spaces; every command with
``--var`` reads it the same way."""

from __future__ import annotations

import json

import click

from deploy_support import jobs_by_name  # type: ignore[import-not-found]

TWO_LINES = "greeting=hello, wide world\n\nother=second line\n"


def test_every_command_with_var_splits_its_environment_variable_on_newlines():
    from stackci.bundle.options import Line
    from stackci.cli import cli

    ctx = click.Context(cli)
    with_var = {}
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        for sub in (command.commands.values() if isinstance(command, click.Group) else [command]):
            for param in sub.params:
                if "--var" in getattr(param, "opts", ()):
                    with_var[sub.name] = param
    assert {"validate", "plan", "deploy", "destroy", "run-job", "integration-test", "rehearse"} <= set(with_var)
    for name, param in with_var.items():
        assert isinstance(param.type, Line), name
        assert param.envvar == "STACKCI_VAR"
        assert param.type.split_envvar_value("a=one two\r\n\n b=3 \n") == ["a=one two", "b=3"], name


def test_a_value_with_spaces_reaches_validate_plan_and_deploy(run_cli, env, small, w):
    spaced = {**env, "STACKCI_VAR": "greeting=hello, wide world\n"}
    validate = run_cli(["validate", "-t", "staging", "--project", str(small), "-o", "json"], env=spaced,
                       platform="local")
    assert validate.code == 0, validate.stderr
    assert json.loads(validate.stdout)["variables"]["greeting"] == {"value": "hello, wide world", "source": "--var"}

    plan = run_cli(["plan", "-t", "staging", "--project", str(small), "-o", "json"], env=spaced, platform="local")
    assert plan.code == 0, plan.stderr

    deploy = run_cli(["deploy", "-t", "staging", "--project", str(small)], env=spaced)
    assert deploy.code == 0, deploy.stderr
    [job] = jobs_by_name(w)["small-a"]
    assert job.settings.tasks[0].notebook_task.base_parameters["greeting"] == "hello, wide world"

    # one variable per line: the second line is a second variable (here undeclared: refused by name),
    # never a part of the first
    two = run_cli(["validate", "-t", "staging", "--project", str(small)], env={**env, "STACKCI_VAR": TWO_LINES})
    assert two.code == 2
    [error] = two.errors()
    assert "--var other=... sets a variable the bundle does not declare" in error.data

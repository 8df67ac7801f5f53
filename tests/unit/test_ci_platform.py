"""The CI platform layer, checked against independent parsers of each platform's grammar."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings, strategies as st

from grammar import parse_azure_log, parse_github_env_file, parse_github_log
from stackci import log
from stackci.ci import AzurePlatform, GitHubPlatform, LocalPlatform, detect

NASTY = st.sampled_from(["\n", "\r", "\r\n", "=", "<<", "::", "##vso[", "##VSO[", "##[", "%", "%0A", "%25",
                         "%AZP25", ";", "]", ",", ":", "ghadelimiter_", "EOF", "::endgroup::",
                         "::stop-commands::x", "::error::pwn", "##vso[task.setvariable variable=x]1",
                         "\u2028", "\u0085", "é", "🔥", " ", "\t", "\x00"])
TEXT = st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=12).map("".join)
NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,20}", fullmatch=True)


def github(tmp_path):
    out, summary = tmp_path / "out", tmp_path / "summary"
    out.write_text("")
    summary.write_text("")
    p = GitHubPlatform({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)})
    p.stdout = io.StringIO()
    return p, out, summary


def azure(tmp_path):
    p = AzurePlatform({"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(tmp_path)})
    p.stdout = io.StringIO()
    return p


def test_detect_picks_the_platform_from_the_environment():
    assert detect({"GITHUB_ACTIONS": "true"}).name == "github"
    assert detect({"TF_BUILD": "True"}).name == "azure"
    assert detect({}).name == "local"
    assert detect({"GITHUB_ACTIONS": "false", "TF_BUILD": "False"}).name == "local"


# ------------------------------------------------------------------------------- GitHub
@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.tuples(NAME, TEXT), min_size=1, max_size=4))
def test_github_outputs_round_trip_and_inject_nothing(tmp_path_factory, values):
    p, out, _ = github(tmp_path_factory.mktemp("gh"))
    for name, value in values:
        p.set_output(name, value)
    expected = {}
    for name, value in values:
        expected[name] = value
    assert parse_github_env_file(open(out, newline="").read()) == expected
    assert parse_github_log(p.stdout.getvalue()) == []


@pytest.mark.parametrize("name", ["", "a\nb", "a=b", "a<<b", "1abc", "x y", "a;b", "a]b"])
def test_github_rejects_output_names_that_could_break_the_file(tmp_path, name):
    p, out, _ = github(tmp_path)
    with pytest.raises(ValueError):
        p.set_output(name, "v")
    assert out.read_text() == ""


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_github_untrusted_text_runs_no_command(tmp_path_factory, text):
    p, _, _ = github(tmp_path_factory.mktemp("gh"))
    p.print_untrusted(text)
    with p.untrusted_block() as write:
        for line in text.splitlines():
            write(line)
    assert parse_github_log(p.stdout.getvalue()) == []
    assert text.replace("\r", "") in p.stdout.getvalue().replace("\r", "") or "::" in text


@settings(max_examples=300, deadline=None)
@given(message=TEXT, file=TEXT, title=TEXT, line=st.integers(1, 10**6))
def test_github_annotation_is_exactly_one_command_with_the_same_values(tmp_path_factory, message, file, title, line):
    p, _, _ = github(tmp_path_factory.mktemp("gh"))
    p.error(message, file=file or None, line=line, title=title or None)
    commands = parse_github_log(p.stdout.getvalue())
    assert len(commands) == 1
    cmd = commands[0]
    assert cmd.name == "error" and cmd.data == message
    if file.strip():
        assert cmd.properties["file"] == file.strip()
    if title.strip():
        assert cmd.properties["title"] == title.strip()
    assert cmd.properties["line"] == str(line)


def test_github_mask_comes_first_and_secrets_are_redacted_everywhere(tmp_path):
    p, out, summary = github(tmp_path)
    p.mask("s3cr3t-token")
    p.error("auth failed with s3cr3t-token", title="token s3cr3t-token")
    p.append_summary("value s3cr3t-token")
    p.print_untrusted("echo s3cr3t-token")
    text = p.stdout.getvalue()
    commands = parse_github_log(text)
    assert commands[0].name == "add-mask" and commands[0].data == "s3cr3t-token"
    assert text.count("s3cr3t-token") == 1  # only inside the add-mask command
    assert "s3cr3t-token" not in summary.read_text()


def test_github_multiline_secret_masks_each_line(tmp_path):
    p, _, _ = github(tmp_path)
    p.mask("line-one\nline-two")
    masks = [c.data for c in parse_github_log(p.stdout.getvalue()) if c.name == "add-mask"]
    assert masks == ["line-one\nline-two", "line-one", "line-two"]


def test_github_groups_and_summary(tmp_path):
    p, _, summary = github(tmp_path)
    with p.group("Install ::error::x"):
        p.print_untrusted("inside")
    p.append_summary("## Title")
    p.append_summary("more")
    names = [c.name for c in parse_github_log(p.stdout.getvalue())]
    assert names == ["group", "endgroup"]
    assert summary.read_text() == "## Title\nmore\n"


# ------------------------------------------------------------------------------- Azure
@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.tuples(NAME, TEXT), min_size=1, max_size=4))
def test_azure_outputs_round_trip_and_inject_nothing(tmp_path_factory, values):
    p = azure(tmp_path_factory.mktemp("az"))
    for name, value in values:
        p.set_output(name, value)
    commands = parse_azure_log(p.stdout.getvalue())
    assert len(commands) == len(values)
    for cmd, (name, value) in zip(commands, values):
        assert cmd.name == "task.setvariable"
        assert cmd.properties == {"variable": name.replace("-", "_"), "isOutput": "true"}
        assert cmd.data == value.replace("\r\n", "\n") or cmd.data == value


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_azure_untrusted_text_runs_no_command(tmp_path_factory, text):
    p = azure(tmp_path_factory.mktemp("az"))
    p.print_untrusted(text)
    assert parse_azure_log(p.stdout.getvalue()) == []


@settings(max_examples=300, deadline=None)
@given(message=TEXT, file=TEXT, line=st.integers(1, 10**6))
def test_azure_annotation_is_exactly_one_logissue(tmp_path_factory, message, file, line):
    p = azure(tmp_path_factory.mktemp("az"))
    p.error(message, file=file or None, line=line)
    commands = parse_azure_log(p.stdout.getvalue())
    assert len(commands) == 1
    cmd = commands[0]
    assert cmd.name == "task.logissue" and cmd.properties["type"] == "error"
    assert cmd.properties["linenumber"] == str(line)
    if file:
        assert cmd.properties["sourcepath"] == file
    # neutralising inserts zero-width spaces; compare without them (the message may hold some too)
    shown, sent = cmd.data.replace("\u200b", ""), message.replace("\u200b", "")
    assert shown == sent.replace("\r\n", "\n") or shown == sent


def test_azure_summary_is_uploaded_once_at_flush(tmp_path):
    p = azure(tmp_path)
    p.append_summary("# one")
    p.append_summary("two")
    assert parse_azure_log(p.stdout.getvalue()) == []
    p.flush()
    uploads = [c for c in parse_azure_log(p.stdout.getvalue()) if c.name == "task.uploadsummary"]
    assert len(uploads) == 1
    assert open(uploads[0].data).read() == "# one\ntwo\n"


def test_azure_mask_and_groups(tmp_path):
    p = azure(tmp_path)
    p.mask("hunter2")
    with p.group("step ##vso[task.complete result=Failed]"):
        pass
    commands = parse_azure_log(p.stdout.getvalue())
    assert [c.name for c in commands] == ["task.setsecret", "##group", "##endgroup"]
    assert commands[0].data == "hunter2"


# ------------------------------------------------------------------------------- logging
@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_log_lines_can_never_act_as_commands(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("log")
    for platform, parse in ((github(d)[0], parse_github_log), (azure(d), parse_azure_log)):
        stream = io.StringIO()
        logger = log.setup(platform)
        logger.handlers[-1].stream = stream
        log.get("test").info("value: %s", text)
        log.get("test").info(text)
        assert parse(stream.getvalue()) == []


def test_log_redacts_secrets(tmp_path):
    p, _, _ = github(tmp_path)
    p.mask("tok-123")
    stream = io.StringIO()
    logger = log.setup(p)
    logger.handlers[-1].stream = stream
    log.get("t").info("using %s", "tok-123")
    try:
        raise RuntimeError("tok-123 failed")
    except RuntimeError:
        log.get("t").exception("boom")
    assert "tok-123" not in stream.getvalue()
    assert "***" in stream.getvalue()


def test_local_platform_writes_people_text_to_stderr(capsys, tmp_path):
    p = LocalPlatform({"STACKCI_SUMMARY_FILE": str(tmp_path / "s.md")})
    p.set_output("passed", 3)
    p.error("it broke", file="a.py", line=3, title="T")
    p.print_untrusted("::error::not a command here")
    p.append_summary("# hi")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: a.py:3: T: it broke" in captured.err
    assert (tmp_path / "s.md").read_text() == "# hi\n"
    assert p.outputs == {"passed": "3"}

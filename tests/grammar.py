"""Independent parsers of the documented CI grammars, used to check what stackci writes.

They follow the runner/agent rules, not stackci's code: GitHub's environment-file
format and workflow commands (V2 ``::cmd k=v::data`` after leading whitespace, V1
``##[cmd k=v;]data`` anywhere, ``::stop-commands::TOKEN`` … ``::TOKEN::``), and Azure
DevOps logging commands (``##vso[area.event k=v;]data`` anywhere in a line, any case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class GrammarError(ValueError):
    pass


def parse_github_env_file(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line == "":
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            key, value = line[:eq], line[eq + 1:]
        elif heredoc >= 0:
            key, delimiter = line[:heredoc], line[heredoc + 2:]
            if not delimiter:
                raise GrammarError("empty delimiter")
            body = []
            while True:
                if i >= len(lines):
                    raise GrammarError(f"matching delimiter not found: {delimiter!r}")
                current = lines[i]
                i += 1
                if current == delimiter:
                    break
                body.append(current)
            value = "\n".join(body)
        else:
            raise GrammarError(f"invalid line {line!r}")
        if not key:
            raise GrammarError("empty name")
        out[key] = value
    return out


@dataclass
class Command:
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    data: str = ""


GITHUB_COMMANDS = {"set-output", "set-env", "add-path", "add-mask", "error", "warning", "notice", "debug",
                   "group", "endgroup", "stop-commands", "echo", "save-state", "add-matcher", "remove-matcher"}


def _gh_unescape(text: str, props: bool) -> str:
    pairs = [("%0D", "\r"), ("%0A", "\n")] + ([("%3A", ":"), ("%2C", ",")] if props else []) + [("%25", "%")]
    for escaped, plain in pairs:
        text = text.replace(escaped, plain)
    return text


def _gh_v2(line: str) -> Command | None:
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name, _, props = info.partition(" ")
    if name not in GITHUB_COMMANDS and name != "":
        return Command(name=name, data=_gh_unescape(message[end + 2:], False))  # a resume token or unknown
    cmd = Command(name=name, data=_gh_unescape(message[end + 2:], False))
    for part in filter(None, props.strip().split(",")):
        key, sep, value = part.partition("=")
        if sep and value:
            cmd.properties[key] = _gh_unescape(value, True)
    return cmd


def _gh_v1(line: str) -> Command | None:
    start = line.find("##[")
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    name = line[start + 3:end].partition(" ")[0]
    return Command(name=name, data=line[end + 1:]) if name in GITHUB_COMMANDS else None


def parse_github_log(text: str) -> list[Command]:
    """The commands a GitHub runner would act on in ``text`` (one step's stdout/stderr)."""
    commands: list[Command] = []
    stopped: str | None = None
    for line in text.split("\n"):
        cmd = _gh_v2(line) or _gh_v1(line)
        if stopped is not None:
            if cmd is not None and cmd.name == stopped:
                stopped = None
            continue
        if cmd is None or cmd.name not in GITHUB_COMMANDS:
            continue
        if cmd.name == "stop-commands":
            stopped = cmd.data
            continue
        commands.append(cmd)
    return commands


_VSO = re.compile(r"##vso\[", re.IGNORECASE)


def _az_unescape(text: str) -> str:
    for escaped, plain in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%AZP25", "%")):
        text = text.replace(escaped, plain)
    return text


def parse_azure_log(text: str) -> list[Command]:
    """The logging commands an Azure agent would act on (first ``##vso[`` of each line),
    plus ``##[`` formatting commands at any position, reported with a ``##`` prefix."""
    commands: list[Command] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _VSO.search(line)
        if m:
            end = line.find("]", m.end())
            if end >= 0:
                info = line[m.end():end]
                name, _, props = info.partition(" ")
                cmd = Command(name=name.lower(), data=_az_unescape(line[end + 1:]))
                for part in filter(None, props.split(";")):
                    key, sep, value = part.partition("=")
                    if sep:
                        cmd.properties[key.strip()] = _az_unescape(value)
                commands.append(cmd)
                continue
        if "##[" in line:
            start = line.find("##[")
            end = line.find("]", start)
            if end >= 0:
                commands.append(Command(name="##" + line[start + 3:end], data=line[end + 1:]))
    return commands

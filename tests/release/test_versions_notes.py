"""Semantic versions and release notes, as pure functions."""

from __future__ import annotations

import random

import pytest

from stackci.errors import ConfigError
from stackci.release.notes import render
from stackci.release.versions import TagPattern, Version, next_version

SEMVER_ORG_ORDER = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0", "1.0.1", "1.1.0",
                    "1.10.0", "2.0.0-rc.1", "2.0.0", "10.0.0"]


def V(text):
    return Version.parse(text)


def test_precedence_follows_semver_org():
    shuffled = SEMVER_ORG_ORDER[:]
    random.Random(4).shuffle(shuffled)
    assert [str(v) for v in sorted(map(V, shuffled))] == SEMVER_ORG_ORDER


def test_build_metadata_does_not_change_precedence():
    assert V("1.0.0+build.5") == V("1.0.0") and str(V("1.0.0+b.1")) == "1.0.0+b.1"


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0-rc..1", "", "a.b.c"])
def test_malformed_versions_are_rejected(bad):
    with pytest.raises(ConfigError):
        V(bad)


def test_next_version():
    tags = [V("0.1.0"), V("0.2.0"), V("0.3.0-rc.1")]
    assert str(next_version([], bump="major")) == "0.1.0"
    assert str(next_version([], bump="patch", prerelease="rc")) == "0.1.0-rc.1"
    assert str(next_version(tags, bump="patch")) == "0.2.1"
    assert str(next_version(tags, bump="minor")) == "0.3.0"                      # promotes the rc
    assert str(next_version(tags, bump="minor", prerelease="rc")) == "0.3.0-rc.2"
    assert str(next_version(tags, bump="major", prerelease="rc")) == "1.0.0-rc.1"
    many = [V(f"2.0.0-rc.{n}") for n in range(1, 11)]
    assert str(next_version(many, version=V("2.0.0"), prerelease="rc")) == "2.0.0-rc.11"
    with pytest.raises(ConfigError):
        next_version(tags)
    with pytest.raises(ConfigError):
        next_version(tags, version=V("1.0.0-rc.1"), prerelease="rc")


def test_tag_patterns():
    p = TagPattern("v{version}")
    assert p.format(V("1.2.3-rc.1")) == "v1.2.3-rc.1"
    assert p.match("v1.2.3-rc.1") == V("1.2.3-rc.1")
    assert p.match("1.2.3") is None and p.match("v1.2") is None and p.match("xv1.2.3") is None
    assert TagPattern("churn-{version}").match("churn-0.1.0") == V("0.1.0")
    for bad in ["v", "v{version}{version}", "v {version}", "{version}..x"]:
        with pytest.raises(ConfigError):
            TagPattern(bad)


def test_notes_grouped_by_conventional_type_with_breaking_first():
    text = render([("a" * 40, "feat(train)!: new feature store", "BREAKING CHANGE: drops the v1 table"),
                   ("b" * 40, "fix: off by one in split", ""),
                   ("c" * 40, "docs: explain fetch-depth", ""),
                   ("d" * 40, "perf(infer): batch predictions", ""),
                   ("e" * 40, "tidy things up @alice <script>", "")], previous="v1.0.0")
    order = [text.index(h) for h in ("### ⚠ Breaking changes", "### Features", "### Bug fixes", "### Performance",
                                     "### Documentation", "### Other changes")]
    assert order == sorted(order)
    assert "- **train:** drops the v1 table (aaaaaaa)" in text
    assert "- **infer:** batch predictions (ddddddd)" in text
    assert "@alice" not in text and "<script>" not in text and "&#64;alice" in text
    assert text.startswith("Changes since v1.0.0")


def test_notes_are_a_plain_list_when_no_message_is_conventional():
    text = render([("a" * 40, "Add training job", ""), ("b" * 40, "Fix typo", "")], previous=None)
    assert "###" not in text and text.startswith("First release")
    assert "- Add training job (aaaaaaa)\n- Fix typo (bbbbbbb)" in text
    assert "No changes" in render([], previous="v1.0.0")

import time

from hypothesis import given, strategies as st

from stackci.bundle import refs


def test_grammar():
    assert [r.path for r in refs.find("${var.a}-${resources.jobs.x-y.tasks[0].task_key}")] == [
        ("var", "a"), ("resources", "jobs", "x-y", "tasks", 0, "task_key")]
    assert refs.pure("${bundle.git.branch}").path == ("bundle", "git", "branch")
    for text in ("${env:HOME}", "{{job.id}}", "${1abc}", "${a.}", "${a-}", "$ {a}", "${a..b}"):
        assert refs.find(text) == [], text
    assert refs.pure("x${a}") is None


def test_long_near_misses_are_fast():
    start = time.monotonic()
    for text in ("${" + "a" * 5000 + "!", "${" + "a_" * 3000 + "}", "${" + "ab." * 2000 + "-}"):
        refs.find(text)
        refs.pure(text)
    assert time.monotonic() - start < 0.5


@given(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,5}(_[a-z0-9]{1,3})?", fullmatch=True), min_size=1, max_size=4),
       st.text(alphabet="abc -_./{}", max_size=10))
def test_every_path_round_trips(parts, noise):
    text = noise.replace("${", "") + "${" + ".".join(parts) + "}"
    found = refs.find(text)
    assert found and found[-1].path == tuple(parts)

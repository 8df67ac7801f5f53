"""How stackci's databricks-sdk client meets the environment: the proxy variables and NO_PROXY are
honoured (read once, when the client is built, not on every request), and so is a CA bundle; and
the thread pools for workspace requests start their threads before any work is handed out."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def proxy(ws):
    from refusing_proxy import RefusingProxy  # type: ignore[import-not-found]

    p = RefusingProxy(ws.url, lambda method, path, doc: None)     # forwards everything
    yield p
    p.close()


@pytest.fixture
def clean_env(monkeypatch, ws):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_TOKEN", ws.token)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    return monkeypatch


def test_the_workspace_requests_go_through_the_proxy_the_environment_names(ws, proxy, clean_env):
    from stackci.dbx import workspace_client

    clean_env.setenv("HTTP_PROXY", proxy.url)
    client = workspace_client(ws.url)
    proxy.seen.clear()
    assert list(client.jobs.list()) == []
    client.jobs.create(name="through-the-proxy")
    assert proxy.seen == ["GET /api/2.2/jobs/list", "POST /api/2.2/jobs/create"]
    assert [j.settings.name for j in client.jobs.list()] == ["through-the-proxy"]


def test_no_proxy_for_the_workspace_host_is_honoured(ws, proxy, clean_env):
    from stackci.dbx import workspace_client

    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    client = workspace_client(ws.url)
    client.jobs.create(name="direct")
    assert [j.settings.name for j in client.jobs.list()] == ["direct"]
    assert proxy.seen == []


def test_a_ca_bundle_in_the_environment_is_what_the_client_verifies_tls_with(ws, clean_env, tmp_path):
    from stackci.dbx import workspace_client

    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    client = workspace_client(ws.url)
    session = client.api_client._api_client._session
    assert session.verify == str(bundle)
    assert list(client.jobs.list()) == []          # plain http to the local workspace still works


@pytest.mark.parametrize("workers, tasks, threads", [(8, 21, 8), (8, 3, 3), (8, 0, 1), (1, 50, 1)])
def test_a_request_pool_has_its_threads_running_before_it_is_used(workers, tasks, threads):
    from stackci.dbx import request_pool

    name = f"stackci-test-pool-{workers}-{tasks}"
    pool = request_pool(workers, name, tasks)
    try:
        started = [t for t in threading.enumerate() if t.name.startswith(name)]
        assert len(started) == threads and all(t.is_alive() for t in started)
        results = list(pool.map(lambda n: n * n, range(tasks)))
        assert results == [n * n for n in range(tasks)]
        assert len([t for t in threading.enumerate() if t.name.startswith(name)]) == threads   # none added
    finally:
        pool.shutdown(wait=True)

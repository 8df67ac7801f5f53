"""Workspace API 2.0 and workspace-files of the local workspace, through databricks-sdk and raw HTTP.

Expected behaviour follows the public API reference and the databricks-sdk's own
integration tests (``tests/integration/test_workspace.py``): a SOURCE upload keeps
the path as given and gains the notebook header on export, an AUTO upload of a
``.py`` without the header is a workspace file, export of a file is its bytes.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
import zipfile

import pytest
from databricks.sdk import errors
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

HEADER = b"# Databricks notebook source\n"
ALL_BYTES = bytes(range(256)) + b"\r\n\r\n--boundary\r\n\x00" + bytes(range(255, -1, -1))


@pytest.fixture
def home(w):
    return f"/Users/{w.current_user.me().user_name}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# ---- databricks-sdk round trips ---------------------------------------------


def test_home_folder_exists_for_the_current_user(w, home):
    status = w.workspace.get_status(home)
    assert status.object_type == ObjectType.DIRECTORY
    assert status.path == home
    prefixed = w.workspace.get_status("/Workspace" + home)
    assert prefixed.path == "/Workspace" + home
    assert prefixed.object_id == status.object_id


def test_upload_source_notebook_keeps_path_and_gains_header(w, home):
    nb = f"{home}/notebook-1.py"
    w.workspace.upload(nb, io.BytesIO(b"print(1)"))  # SOURCE, language from the .py suffix
    status = w.workspace.get_status(nb)
    assert status.object_type == ObjectType.NOTEBOOK
    assert status.language == Language.PYTHON
    with w.workspace.download(nb) as f:
        assert f.read() == HEADER + b"print(1)"
    w.workspace.delete(nb)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.get_status(nb)


def test_upload_source_without_extension_and_sql_language(w, home):
    nb = f"{home}/report"
    w.workspace.upload(nb, io.BytesIO(b"SELECT 1"), format=ImportFormat.SOURCE, language=Language.SQL)
    status = w.workspace.get_status(nb)
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.SQL)
    with w.workspace.download(nb) as f:
        assert f.read() == b"-- Databricks notebook source\nSELECT 1"
    exported = w.workspace.export(nb)
    assert exported.file_type == "sql"
    assert base64.b64decode(exported.content) == b"-- Databricks notebook source\nSELECT 1"


def test_source_import_without_language_is_refused(w, home, api):
    with pytest.raises(errors.DatabricksError) as info:  # the SDK re-raises it with a hint about AUTO
        w.workspace.upload(f"{home}/nolang", io.BytesIO(b"x"))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    resp = api("POST", "/api/2.0/workspace/import", json={"path": f"{home}/nolang", "content": b64(b"x")})
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.get_status(f"{home}/nolang")


def test_auto_upload_of_plain_py_is_a_file_with_exact_bytes(w, home):
    py_file = f"{home}/file-1.py"
    w.workspace.upload(py_file, io.BytesIO(b"print(1)"), format=ImportFormat.AUTO)
    status = w.workspace.get_status(py_file)
    assert status.object_type == ObjectType.FILE
    assert status.language is None
    assert status.size == len(b"print(1)")
    with w.workspace.download(py_file) as f:
        assert f.read() == b"print(1)"
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.upload(py_file, io.BytesIO(b"print(2)"), format=ImportFormat.AUTO)
    w.workspace.upload(py_file, io.BytesIO(b"print(2)"), format=ImportFormat.AUTO, overwrite=True)
    with w.workspace.download(py_file) as f:
        assert f.read() == b"print(2)"
    assert w.workspace.get_status(py_file).object_id == status.object_id  # overwrite keeps the object


@pytest.mark.parametrize("name, content, expected_name, language", [
    ("train.py", b"# Databricks notebook source\nprint(1)\n", "train", Language.PYTHON),
    ("query.sql", b"-- Databricks notebook source\nSELECT 1\n", "query", Language.SQL),
    ("job.scala", b"// Databricks notebook source\nprintln(1)\n", "job", Language.SCALA),
    ("stats.r", b"# Databricks notebook source\nprint(1)\n", "stats", Language.R),
    ("stats2.R", b"# Databricks notebook source\nprint(2)\n", "stats2", Language.R),
])
def test_auto_upload_with_header_is_a_notebook_without_extension(w, home, name, content, expected_name, language):
    w.workspace.upload(f"{home}/{name}", io.BytesIO(content), format=ImportFormat.AUTO)
    status = w.workspace.get_status(f"{home}/{expected_name}")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, language)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.get_status(f"{home}/{name}")
    with w.workspace.download(f"{home}/{expected_name}") as f:
        assert f.read() == content
    # a second AUTO upload of the same notebook collides with the extension-less name
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.upload(f"{home}/{name}", io.BytesIO(content), format=ImportFormat.AUTO)


def test_auto_upload_of_header_with_wrong_extension_is_a_file(w, home):
    w.workspace.upload(f"{home}/notes.txt", io.BytesIO(HEADER + b"x"), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/notes.txt").object_type == ObjectType.FILE
    # SQL header on a .py file: not a Python notebook
    w.workspace.upload(f"{home}/odd.py", io.BytesIO(b"-- Databricks notebook source\nSELECT 1"),
                       format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/odd.py").object_type == ObjectType.FILE


def test_auto_upload_of_ipynb_is_a_notebook_and_exports_as_jupyter(w, home):
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["x = 1\n", "print(x)"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": "print(2)"},
    ], "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
                    "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    w.workspace.upload(f"{home}/explore.ipynb", io.BytesIO(json.dumps(nb).encode()), format=ImportFormat.AUTO)
    status = w.workspace.get_status(f"{home}/explore")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.PYTHON)
    with w.workspace.download(f"{home}/explore") as f:
        source = f.read().decode()
    assert source.startswith("# Databricks notebook source\n")
    assert "# MAGIC %md\n# MAGIC # Title\n# MAGIC text" in source
    assert source.count("# COMMAND ----------") == 2
    assert "x = 1\nprint(x)" in source and "print(2)" in source
    with w.workspace.download(f"{home}/explore", format=ExportFormat.JUPYTER) as f:
        back = json.loads(f.read())
    assert back["nbformat"] == 4
    assert [c["cell_type"] for c in back["cells"]] == ["markdown", "code", "code"]
    assert ["".join(c["source"]) for c in back["cells"]] == ["# Title\ntext", "x = 1\nprint(x)", "print(2)"]
    assert back["metadata"]["language_info"]["name"] == "python"
    exported = w.workspace.export(f"{home}/explore", format=ExportFormat.JUPYTER)
    assert exported.file_type == "ipynb"


def test_jupyter_import_rejects_invalid_notebooks(w, home, api):
    resp = api("POST", "/api/2.0/workspace/import", json={
        "path": f"{home}/broken", "format": "JUPYTER", "content": b64(b"not json")})
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    resp = api("POST", "/api/2.0/workspace/import", json={
        "path": f"{home}/broken", "format": "JUPYTER", "content": b64(b'{"cells": 3}')})
    assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    # an .ipynb that is not a notebook stays a file under AUTO
    w.workspace.upload(f"{home}/data.ipynb", io.BytesIO(b"[1, 2]"), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/data.ipynb").object_type == ObjectType.FILE


def test_raw_upload_keeps_binary_content_exactly(w, home):
    path = f"{home}/blob.bin"
    w.workspace.upload(path, io.BytesIO(ALL_BYTES), format=ImportFormat.RAW)
    assert w.workspace.get_status(path).object_type == ObjectType.FILE
    assert w.workspace.get_status(path).size == len(ALL_BYTES)
    with w.workspace.download(path) as f:
        assert f.read() == ALL_BYTES
    # RAW never makes a notebook, even with the header
    w.workspace.upload(f"{home}/raw.py", io.BytesIO(HEADER + b"x"), format=ImportFormat.RAW)
    assert w.workspace.get_status(f"{home}/raw.py").object_type == ObjectType.FILE
    exported = w.workspace.export(path)
    assert base64.b64decode(exported.content) == ALL_BYTES


def test_import_and_export_json_base64(w, home):
    w.workspace.import_(f"{home}/nb", content=b64(b"print('hi')"), format=ImportFormat.SOURCE,
                        language=Language.PYTHON)
    exported = w.workspace.export(f"{home}/nb", format=ExportFormat.SOURCE)
    assert exported.file_type == "py"
    assert base64.b64decode(exported.content) == HEADER + b"print('hi')"
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.import_(f"{home}/nb", content=b64(b"2"), format=ImportFormat.SOURCE, language=Language.PYTHON)
    w.workspace.import_(f"{home}/nb", content=b64(b"2"), format=ImportFormat.SOURCE, language=Language.PYTHON,
                        overwrite=True)
    assert base64.b64decode(w.workspace.export(f"{home}/nb").content) == HEADER + b"2"
    w.workspace.import_(f"{home}/data.bin", content=b64(ALL_BYTES), format=ImportFormat.AUTO)
    exported = w.workspace.export(f"{home}/data.bin")
    assert base64.b64decode(exported.content) == ALL_BYTES


def test_import_into_missing_parent_is_404_and_mkdirs_makes_parents(w, home):
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.upload(f"{home}/a/b/c.py", io.BytesIO(b"1"), format=ImportFormat.AUTO)
    w.workspace.mkdirs(f"/Workspace{home}/a/b")
    w.workspace.mkdirs(f"{home}/a/b")  # idempotent
    assert w.workspace.get_status(f"{home}/a").object_type == ObjectType.DIRECTORY
    w.workspace.upload(f"{home}/a/b/c.py", io.BytesIO(b"1"), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"/Workspace{home}/a/b/c.py").path == f"/Workspace{home}/a/b/c.py"


def test_mkdirs_over_a_file_and_import_over_a_folder_are_refused(w, home):
    w.workspace.upload(f"{home}/f", io.BytesIO(b"1"), format=ImportFormat.RAW)
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.mkdirs(f"{home}/f")
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.mkdirs(f"{home}/f/g")
    w.workspace.mkdirs(f"{home}/d")
    with pytest.raises(errors.ResourceAlreadyExists):
        w.workspace.upload(f"{home}/d", io.BytesIO(b"1"), format=ImportFormat.RAW, overwrite=True)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.upload(f"{home}/f/child", io.BytesIO(b"1"), format=ImportFormat.RAW)


def test_list_is_not_recursive_and_sdk_recursion_works(w, home):
    w.workspace.mkdirs(f"{home}/proj/sub")
    w.workspace.upload(f"{home}/proj/main.py", io.BytesIO(b"print(1)"))
    w.workspace.upload(f"{home}/proj/sub/util.py", io.BytesIO(b"x = 1"), format=ImportFormat.AUTO)
    w.workspace.upload(f"{home}/proj/sub/readme.md", io.BytesIO(b"# hi"), format=ImportFormat.AUTO)
    top = {o.path: o.object_type for o in w.workspace.list(f"{home}/proj")}
    assert top == {f"{home}/proj/main.py": ObjectType.NOTEBOOK, f"{home}/proj/sub": ObjectType.DIRECTORY}
    deep = sorted(o.path for o in w.workspace.list(f"/Workspace{home}/proj", recursive=True))
    assert deep == [f"/Workspace{home}/proj/main.py", f"/Workspace{home}/proj/sub/readme.md",
                    f"/Workspace{home}/proj/sub/util.py"]
    with pytest.raises(errors.ResourceDoesNotExist):
        list(w.workspace.list(f"{home}/nope"))


def test_delete_rules(w, home):
    w.workspace.mkdirs(f"{home}/tree/inner")
    w.workspace.upload(f"{home}/tree/inner/x.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    w.workspace.upload(f"{home}/tree_sibling.txt", io.BytesIO(b"keep"), format=ImportFormat.AUTO)
    with pytest.raises(errors.DatabricksError) as info:
        w.workspace.delete(f"{home}/tree")
    assert info.value.error_code == "DIRECTORY_NOT_EMPTY"
    w.workspace.delete(f"{home}/tree", recursive=True)
    for gone in (f"{home}/tree", f"{home}/tree/inner", f"{home}/tree/inner/x.txt"):
        with pytest.raises(errors.ResourceDoesNotExist):
            w.workspace.get_status(gone)
    assert w.workspace.get_status(f"{home}/tree_sibling.txt").object_type == ObjectType.FILE
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.delete(f"{home}/tree")
    w.workspace.mkdirs(f"{home}/empty")
    w.workspace.delete(f"{home}/empty")  # an empty folder needs no recursive flag


def test_names_with_sql_wildcards_do_not_leak_into_siblings(w, home):
    w.workspace.mkdirs(f"{home}/a_b")
    w.workspace.mkdirs(f"{home}/axb/keep")
    w.workspace.mkdirs(f"{home}/a%/keep")
    w.workspace.delete(f"{home}/a_b", recursive=True)
    assert w.workspace.get_status(f"{home}/axb/keep").object_type == ObjectType.DIRECTORY
    assert [o.path for o in w.workspace.list(f"{home}/a%")] == [f"{home}/a%/keep"]


# ---- raw HTTP shapes ---------------------------------------------------------


def test_get_status_shape(api, w, home):
    w.workspace.upload(f"{home}/s.py", io.BytesIO(b"print(1)"))
    w.workspace.upload(f"{home}/f.txt", io.BytesIO(b"abc"), format=ImportFormat.AUTO)
    nb = api("GET", "/api/2.0/workspace/get-status", params={"path": f"{home}/s.py"}).json()
    assert nb["object_type"] == "NOTEBOOK" and nb["language"] == "PYTHON" and nb["path"] == f"{home}/s.py"
    assert isinstance(nb["object_id"], int) and isinstance(nb["modified_at"], int)
    assert nb["created_at"] <= nb["modified_at"]
    f = api("GET", "/api/2.0/workspace/get-status", params={"path": f"/Workspace{home}/f.txt"}).json()
    assert f["object_type"] == "FILE" and f["size"] == 3 and "language" not in f
    assert f["path"] == f"/Workspace{home}/f.txt"
    d = api("GET", "/api/2.0/workspace/get-status", params={"path": home}).json()
    assert d["object_type"] == "DIRECTORY" and "language" not in d
    assert nb["object_id"] != f["object_id"] != d["object_id"]
    body = assert_error(api("GET", "/api/2.0/workspace/get-status", params={"path": f"{home}/missing"}),
                        404, "RESOURCE_DOES_NOT_EXIST")
    assert body["message"] == f"Path ({home}/missing) doesn't exist."
    info = api("GET", "/api/2.0/workspace/get-status",
               params={"path": f"{home}/s.py", "return_export_info": "true"}).json()
    assert info["repos_export_format"] == "SOURCE"


def test_list_shape(api, w, home):
    w.workspace.mkdirs(f"{home}/l/empty")
    w.workspace.upload(f"{home}/l/file.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    resp = api("GET", "/api/2.0/workspace/list", params={"path": f"{home}/l"})
    assert resp.status_code == 200
    objects = resp.json()["objects"]
    assert sorted(o["path"] for o in objects) == [f"{home}/l/empty", f"{home}/l/file.txt"]
    assert api("GET", "/api/2.0/workspace/list", params={"path": f"{home}/l/empty"}).json().get("objects", []) == []
    root = api("GET", "/api/2.0/workspace/list", params={"path": "/"}).json()["objects"]
    assert {o["path"] for o in root} >= {"/Users", "/Shared"}
    assert_error(api("GET", "/api/2.0/workspace/list", params={"path": f"{home}/nope"}), 404,
                 "RESOURCE_DOES_NOT_EXIST")


def test_export_shapes(api, w, home):
    w.workspace.upload(f"{home}/e.py", io.BytesIO(b"print(1)"))
    w.workspace.upload(f"{home}/e.bin", io.BytesIO(ALL_BYTES), format=ImportFormat.AUTO)
    as_json = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/e.py"}).json()
    assert as_json == {"content": b64(HEADER + b"print(1)"), "file_type": "py"}
    raw = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/e.bin", "direct_download": "true"})
    assert raw.status_code == 200 and raw.content == ALL_BYTES
    assert not raw.headers["Content-Type"].startswith("application/json")
    as_json = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/e.bin", "format": "AUTO"}).json()
    assert base64.b64decode(as_json["content"]) == ALL_BYTES and as_json["file_type"] == "bin"
    assert_error(api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/none"}), 404,
                 "RESOURCE_DOES_NOT_EXIST")
    assert_error(api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/e.py", "format": "PDF"}),
                 400, "INVALID_PARAMETER_VALUE")
    assert_error(api("GET", "/api/2.0/workspace/export",
                     params={"path": f"{home}/e.py", "direct_download": "maybe"}), 400, "INVALID_PARAMETER_VALUE")


def test_export_folder_as_zip_of_sources(api, w, home):
    w.workspace.mkdirs(f"{home}/z/sub")
    w.workspace.upload(f"{home}/z/nb.py", io.BytesIO(b"print(1)"))
    w.workspace.upload(f"{home}/z/sub/data.txt", io.BytesIO(b"d"), format=ImportFormat.AUTO)
    resp = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/z", "format": "SOURCE",
                                                             "direct_download": "true"})
    assert resp.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(resp.content)).namelist()
    assert "nb.py.py" in names


def test_multipart_import_by_hand(api, home, w):
    files = {"content": ("x", ALL_BYTES, "application/octet-stream")}
    resp = api("POST", "/api/2.0/workspace/import", files=files,
               data={"path": f"{home}/mp.bin", "format": "AUTO"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    with w.workspace.download(f"{home}/mp.bin") as f:
        assert f.read() == ALL_BYTES
    resp = api("POST", "/api/2.0/workspace/import", files=files, data={"path": f"{home}/mp.bin", "format": "AUTO"})
    assert_error(resp, 400, "RESOURCE_ALREADY_EXISTS")
    resp = api("POST", "/api/2.0/workspace/import", files=files,
               data={"path": f"{home}/mp.bin", "format": "AUTO", "overwrite": "true"})
    assert resp.status_code == 200
    # missing path field, garbage multipart
    assert_error(api("POST", "/api/2.0/workspace/import", files=files, data={"format": "AUTO"}), 400,
                 "INVALID_PARAMETER_VALUE")
    resp = api("POST", "/api/2.0/workspace/import", data=b"--nope\r\n",
               headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert resp.status_code == 400 and "error_code" in resp.json()


def test_import_file_endpoint(api, w, home):
    url = "/api/2.0/workspace-files/import-file/" + urllib.parse.quote(f"{home}/wf/data.bin".lstrip("/"))
    assert_error(api("POST", url, data=ALL_BYTES), 404, "RESOURCE_DOES_NOT_EXIST")  # no parent yet
    w.workspace.mkdirs(f"{home}/wf")
    resp = api("POST", url, data=ALL_BYTES)
    assert resp.status_code == 200 and resp.json() == {}
    with w.workspace.download(f"{home}/wf/data.bin") as f:
        assert f.read() == ALL_BYTES
    assert_error(api("POST", url, data=b"again"), 409, "RESOURCE_ALREADY_EXISTS")
    assert api("POST", url + "?overwrite=false", data=b"again").status_code == 409
    assert api("POST", url + "?overwrite=true", data=b"again").status_code == 200
    with w.workspace.download(f"{home}/wf/data.bin") as f:
        assert f.read() == b"again"
    # /Workspace-prefixed form, as the Databricks CLI sends it
    url2 = "/api/2.0/workspace-files/import-file/" + urllib.parse.quote(f"Workspace{home}/wf/run me.py")
    assert api("POST", url2, data=b"print(1)").status_code == 200
    assert w.workspace.get_status(f"{home}/wf/run me.py").object_type == ObjectType.FILE


def test_import_file_detects_notebooks_like_the_real_service(api, w, home):
    w.workspace.mkdirs(f"{home}/sync")
    url = "/api/2.0/workspace-files/import-file/" + urllib.parse.quote(f"{home}/sync/train.py".lstrip("/"))
    assert api("POST", url, data=HEADER + b"print(1)").status_code == 200
    status = w.workspace.get_status(f"{home}/sync/train")
    assert status.object_type == ObjectType.NOTEBOOK
    # an existing notebook answers 400 with the path in the message (the CLI parses it)
    body = assert_error(api("POST", url, data=HEADER + b"print(2)"), 400, "RESOURCE_ALREADY_EXISTS")
    assert f"Path ({home}/sync/train) already exists." in body["message"]
    assert api("POST", url + "?overwrite=true", data=HEADER + b"print(2)").status_code == 200
    with w.workspace.download(f"{home}/sync/train") as f:
        assert f.read() == HEADER + b"print(2)"


@pytest.mark.parametrize("path", [
    "Users/x/relative",
    "relative.py",
    "/Users/../etc/passwd",
    "/Workspace/Users/a/../../x",
    "/Shared/./x",
    "/Shared/x/..",
    "/Shared/a\x00b",
])
def test_bad_paths_are_400_invalid_parameter_value(api, path):
    for resp in (
        api("POST", "/api/2.0/workspace/mkdirs", json={"path": path}),
        api("POST", "/api/2.0/workspace/import", json={"path": path, "format": "AUTO", "content": b64(b"x")}),
        api("POST", "/api/2.0/workspace/import", files={"content": ("c", b"x")},
            data={"path": path, "format": "AUTO"}),
        api("GET", "/api/2.0/workspace/get-status", params={"path": path}),
        api("GET", "/api/2.0/workspace/list", params={"path": path}),
        api("GET", "/api/2.0/workspace/export", params={"path": path}),
        api("POST", "/api/2.0/workspace/delete", json={"path": path, "recursive": True}),
    ):
        assert_error(resp, 400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("tail", ["..%2F..%2Fescape.txt", "Shared/%2E%2E/%2E%2E/escape.txt",
                                  "Shared/..%2F..%2Fescape.txt", "Shared/a%00b"])
def test_import_file_traversal_is_refused_and_writes_nothing_outside(api, ws, tmp_path, tail):
    before = sorted(p for p in tmp_path.rglob("*") if "escape" in p.name)
    resp = api("POST", "/api/2.0/workspace-files/import-file/" + tail, data=b"pwned")
    assert resp.status_code == 400, resp.text
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert sorted(p for p in tmp_path.rglob("*") if "escape" in p.name) == before


def test_writing_outside_the_user_folders_is_forbidden(api):
    assert_error(api("POST", "/api/2.0/workspace/mkdirs", json={"path": "/etc"}), 403, "PERMISSION_DENIED")
    assert_error(api("POST", "/api/2.0/workspace/import", json={"path": "/top.py", "format": "AUTO",
                                                                 "content": b64(b"x")}), 403, "PERMISSION_DENIED")
    assert_error(api("POST", "/api/2.0/workspace/delete", json={"path": "/Users", "recursive": True}),
                 403, "PERMISSION_DENIED")
    assert_error(api("POST", "/api/2.0/workspace/delete", json={"path": "/Workspace", "recursive": True}),
                 403, "PERMISSION_DENIED")
    assert_error(api("GET", "/api/2.0/workspace/get-status", params={"path": "/etc"}), 404,
                 "RESOURCE_DOES_NOT_EXIST")


def test_bad_bodies_are_databricks_shaped_400s(api, home):
    cases = [
        ("POST", "/api/2.0/workspace/mkdirs", {"data": b"{not json"}),
        ("POST", "/api/2.0/workspace/mkdirs", {"data": b"[1]"}),
        ("POST", "/api/2.0/workspace/mkdirs", {"json": {}}),
        ("POST", "/api/2.0/workspace/mkdirs", {"json": {"path": 5}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "@@@not base64",
                                                        "format": "AUTO"}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": 12, "format": "AUTO"}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "", "format": "WORD"}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "", "format": 1}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "", "language": "COBOL"}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "", "format": "AUTO",
                                                        "overwrite": "sometimes"}}),
        ("POST", "/api/2.0/workspace/import", {"json": {"path": f"{home}/x", "content": "", "format": "DBC"}}),
        ("POST", "/api/2.0/workspace/delete", {"json": {"path": home, "recursive": "yes"}}),
        ("POST", "/api/2.0/workspace/delete", {"json": {}}),
        ("GET", "/api/2.0/workspace/get-status", {}),
        ("GET", "/api/2.0/workspace/list", {}),
        ("GET", "/api/2.0/workspace/export", {}),
    ]
    for method, path, kwargs in cases:
        resp = api(method, path, **kwargs)
        assert resp.status_code == 400, (path, kwargs, resp.status_code, resp.text)
        body = resp.json()
        assert body["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"), (path, kwargs, body)


def test_state_survives_a_restart(tmp_path):
    from stackci.workspace import LocalWorkspace

    from workspace_support import client_for

    with LocalWorkspace(tmp_path / "persist") as server:
        w = client_for(server)
        w.workspace.mkdirs("/Shared/keep")
        w.workspace.upload("/Shared/keep/a.bin", io.BytesIO(ALL_BYTES), format=ImportFormat.AUTO)
    with LocalWorkspace(tmp_path / "persist") as server:
        w = client_for(server)
        with w.workspace.download("/Shared/keep/a.bin") as f:
            assert f.read() == ALL_BYTES


# ---- notebook conversions, encodings, per-run copies ---------------------------------------


def test_source_notebook_exports_as_jupyter_cells(w, home):
    source = (b"# Databricks notebook source\n# MAGIC %md\n# MAGIC # Heading\n# MAGIC text\n\n"
              b"# COMMAND ----------\n\nx = 1\nprint(x)\n\n# COMMAND ----------\n\n# MAGIC %sql\n# MAGIC SELECT 1\n")
    w.workspace.upload(f"{home}/cells.py", io.BytesIO(source), format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/cells").object_type == ObjectType.NOTEBOOK
    with w.workspace.download(f"{home}/cells", format=ExportFormat.JUPYTER) as f:
        doc = json.loads(f.read())
    assert [(c["cell_type"], "".join(c["source"])) for c in doc["cells"]] == [
        ("markdown", "# Heading\ntext"), ("code", "x = 1\nprint(x)"), ("code", "%sql\nSELECT 1")]
    with w.workspace.download(f"{home}/cells") as f:
        assert f.read() == source  # SOURCE export is what was imported
    w.workspace.upload(f"{home}/plain.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    with pytest.raises(errors.InvalidParameterValue):  # a workspace file is not a notebook
        w.workspace.download(f"{home}/plain.txt", format=ExportFormat.JUPYTER)


def test_jupyter_format_import_keeps_path_and_reports_export_format(api, w, home):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": "print(3)"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 2}
    resp = api("POST", "/api/2.0/workspace/import", json={
        "path": f"{home}/jnb", "format": "JUPYTER", "language": "PYTHON", "content": b64(json.dumps(nb).encode())})
    assert resp.status_code == 200, resp.text
    info = api("GET", "/api/2.0/workspace/get-status", params={"path": f"{home}/jnb", "return_export_info": "true"})
    assert info.json()["repos_export_format"] == "JUPYTER" and info.json()["language"] == "PYTHON"
    auto = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/jnb", "format": "AUTO"}).json()
    assert auto["file_type"] == "ipynb"
    assert json.loads(base64.b64decode(auto["content"]))["cells"][0]["source"] == "print(3)"
    source = api("GET", "/api/2.0/workspace/export", params={"path": f"{home}/jnb", "direct_download": "true"})
    assert source.content == HEADER + b"print(3)"


def test_crlf_and_bom_headers_are_recognised(w, home):
    w.workspace.upload(f"{home}/crlf.py", io.BytesIO(b"# Databricks notebook source\r\nprint(1)\r\n"),
                       format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/crlf").object_type == ObjectType.NOTEBOOK
    w.workspace.upload(f"{home}/bom.py", io.BytesIO(b"\xef\xbb\xbf# Databricks notebook source\nprint(1)\n"),
                       format=ImportFormat.AUTO)
    assert w.workspace.get_status(f"{home}/bom").object_type == ObjectType.NOTEBOOK


def test_json_import_accepts_wrapped_base64(api, w, home):
    wrapped = base64.encodebytes(ALL_BYTES * 3).decode()  # 76-column lines, as older clients send
    assert "\n" in wrapped
    resp = api("POST", "/api/2.0/workspace/import", json={"path": f"{home}/wrapped.bin", "format": "RAW",
                                                           "content": wrapped})
    assert resp.status_code == 200, resp.text
    with w.workspace.download(f"{home}/wrapped.bin") as f:
        assert f.read() == ALL_BYTES * 3


def test_import_file_path_is_decoded_exactly_once(api, w, home):
    quoted = urllib.parse.quote(f"{home}/100%.txt".lstrip("/"), safe="")  # '/' as %2F, '%' as %25 (Go's PathEscape)
    resp = api("POST", "/api/2.0/workspace-files/import-file/" + quoted, data=b"full")
    assert resp.status_code == 200, resp.text
    assert w.workspace.get_status(f"{home}/100%.txt").object_type == ObjectType.FILE
    resp = api("POST", "/api/2.0/workspace-files/import-file/" + urllib.parse.quote(f"{home}/a%41.txt".lstrip("/")),
               data=b"x")
    assert resp.status_code == 200
    assert w.workspace.get_status(f"{home}/a%41.txt").object_type == ObjectType.FILE
    with pytest.raises(errors.ResourceDoesNotExist):
        w.workspace.get_status(f"{home}/aA.txt")


def test_materialise_writes_runnable_sources_inside_the_destination(ws, w, home, tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ["x = 2\n", "print(x)"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    w.workspace.upload(f"{home}/j.ipynb", io.BytesIO(json.dumps(nb).encode()), format=ImportFormat.AUTO)
    w.workspace.upload(f"{home}/data.bin", io.BytesIO(ALL_BYTES), format=ImportFormat.AUTO)
    dest = tmp_path / "copy"
    index = ws.tree.materialise(dest)
    user = home.split("/")[-1]
    assert index[f"/Users/{user}/j"] == dest / "Users" / user / "j.py"
    assert index[f"/Users/{user}/j"].read_bytes() == HEADER + b"x = 2\nprint(x)"
    assert index[f"/Users/{user}/data.bin"].read_bytes() == ALL_BYTES
    assert all(dest in p.parents for p in index.values())


@pytest.mark.parametrize("raw", ["/Users/x", "/Workspace/Shared//a///b/", "/Repos/a b/c.py"])
def test_parse_path_canonical_forms(raw):
    from stackci.workspace.files import parse_path

    wp = parse_path(raw)
    assert wp.canonical.startswith("/") and "//" not in wp.canonical and not wp.canonical.endswith("/")
    assert wp.show().startswith("/Workspace/") == raw.startswith("/Workspace")


def test_parse_path_never_lets_a_dot_segment_through():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stackci.workspace.api import ApiError
    from stackci.workspace.files import parse_path

    segment = st.sampled_from(["..", ".", "", "Users", "Shared", "Workspace", "a", "%2e%2e", "\x00", "é",
                               "a\\..", "..."])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(segment, max_size=8), st.booleans())
    def check(parts, absolute):
        raw = ("/" if absolute else "") + "/".join(parts)
        try:
            wp = parse_path(raw)
        except ApiError as err:
            assert err.status == 400 and err.error_code in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")
            return
        segments = wp.canonical.split("/")[1:]
        assert ".." not in segments and "." not in segments and "\x00" not in wp.canonical
        assert wp.canonical.startswith("/")

    check()

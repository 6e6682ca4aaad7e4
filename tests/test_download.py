"""hbkit.datasets.download against a local HTTP server (127.0.0.1, random port) that supports Range
and can be told to cut a transfer short or to fail; no outside network is used."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hbkit.datasets import download as dl
from hbkit.errors import ConfigError, DataError

PAYLOAD = bytes((i * 7919 + i // 251) % 256 for i in range(200_000))
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _State:
    def __init__(self) -> None:
        self.cut_after: int | None = None  # bytes to send in the next response before closing
        self.cut_times = 0                 # how many responses to cut
        self.fail_with: int | None = None  # answer requests with this HTTP status...
        self.fail_after = 0                # ...once this many requests have been served
        self.ignore_range = False
        self.requests: list[str | None] = []  # Range header of each GET (None: no Range)


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set per server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        st = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        st.requests.append(rng)
        if self.path != "/data/file.bin":
            self.send_error(404, "Not Found")
            return
        if st.fail_with is not None and len(st.requests) > st.fail_after:
            self.send_error(st.fail_with)
            return
        start = 0
        if rng and not st.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if st.cut_after is not None and st.cut_times > 0:
            st.cut_times -= 1
            self.wfile.write(body[: st.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/data/file.bin"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download_with_checksum(server, tmp_path):
    httpd, url = server
    path = dl.download(url, tmp_path, sha256=DIGEST.upper(), timeout=5)
    assert path == tmp_path / "file.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()
    assert httpd.state.requests == [None]


def test_cache_dir_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HBKIT_CACHE", str(tmp_path / "cache"))
    assert dl.default_cache_dir() == tmp_path / "cache"
    path = dl.download(server[1], filename="renamed.bin", timeout=5)
    assert path == tmp_path / "cache" / "renamed.bin" and path.read_bytes() == PAYLOAD


def test_truncated_transfer_is_resumed_with_range(server, tmp_path):
    httpd, url = server
    httpd.state.cut_after, httpd.state.cut_times = 70_000, 1
    path = dl.download(url, tmp_path, sha256=DIGEST, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert httpd.state.requests == [None, "bytes=70000-"]


def test_partial_file_kept_then_resumed_in_a_later_call(server, tmp_path):
    httpd, url = server
    # The first response is cut after 50,000 bytes and every later request fails: the call gives up...
    httpd.state.cut_after, httpd.state.cut_times = 50_000, 1
    httpd.state.fail_with, httpd.state.fail_after = 503, 1
    with pytest.raises(DataError, match=r"(?s)without progress.*50000 bytes received.*run again"):
        dl.download(url, tmp_path, timeout=5)
    assert httpd.state.requests == [None] + ["bytes=50000-"] * dl.MAX_STALLED_ATTEMPTS
    part = tmp_path / "file.bin.part"
    assert part.read_bytes() == PAYLOAD[:50_000]
    assert not (tmp_path / "file.bin").exists()
    # ...and the next call, with the server healthy again, asks only for the rest.
    httpd.state.fail_with = None
    httpd.state.requests.clear()
    path = dl.download(url, tmp_path, sha256=DIGEST, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert httpd.state.requests == ["bytes=50000-"]
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    httpd, url = server
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes that are not the file")
    httpd.state.ignore_range = True
    path = dl.download(url, tmp_path, sha256=DIGEST, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert httpd.state.requests == ["bytes=33-"]


def test_complete_part_file_is_finished_on_416(server, tmp_path):
    httpd, url = server
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    path = dl.download(url, tmp_path, sha256=DIGEST, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert httpd.state.requests == [f"bytes={len(PAYLOAD)}-"]


def test_checksum_mismatch_deletes_file_and_names_digests(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DataError) as info:
        dl.download(server[1], tmp_path, sha256=wrong, timeout=5)
    msg = str(info.value)
    assert wrong in msg and DIGEST in msg and "delete the cache file" in msg and "Check the URL" in msg
    assert list(tmp_path.iterdir()) == []


def test_cached_file_is_reused_without_network(tmp_path):
    cached = tmp_path / "file.bin"
    cached.write_bytes(PAYLOAD)
    url = f"http://127.0.0.1:{_free_port()}/data/file.bin"  # nothing listens there
    assert dl.download(url, tmp_path, sha256=DIGEST, timeout=2) == cached
    assert dl.download(url, tmp_path, timeout=2) == cached
    # A cached file with the wrong content is not trusted: it is fetched again (and here that fails).
    cached.write_bytes(b"something else")
    with pytest.raises(DataError, match="Could not reach"):
        dl.download(url, tmp_path, sha256=DIGEST, timeout=2)


def test_unreachable_url_names_offline_and_local_path(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/MLQA_V1.zip"
    with pytest.raises(DataError) as info:
        dl.download(url, tmp_path, timeout=2)
    msg = str(info.value)
    assert url in msg and "offline" in msg and str(tmp_path / "MLQA_V1.zip") in msg and "local" in msg


def test_http_404_is_a_data_error(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404.*Check the URL"):
        dl.download(server[1].replace("file.bin", "missing.bin"), tmp_path, timeout=5)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="filename="):
        dl.download("http://127.0.0.1:9/", tmp_path)
    with pytest.raises(ConfigError, match="64 hex"):
        dl.download("http://127.0.0.1:9/a.zip", tmp_path, sha256="abc")


def _make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("MLQA_V1/dev/a.json", '{"x": 1}')
        zf.writestr("MLQA_V1/README.txt", "hello")
    return path


def test_extract_zip_atomic_and_idempotent(tmp_path):
    z = _make_zip(tmp_path / "arch.zip")
    out = dl.extract_zip(z, tmp_path / "out")
    assert (out / "MLQA_V1" / "dev" / "a.json").read_text() == '{"x": 1}'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp folder left
    mtime = os.stat(out / "MLQA_V1" / "README.txt").st_mtime_ns
    (out / "MLQA_V1" / "extra.txt").write_text("kept")
    assert dl.extract_zip(z, tmp_path / "out") == out  # second call: nothing is redone
    assert os.stat(out / "MLQA_V1" / "README.txt").st_mtime_ns == mtime
    assert (out / "MLQA_V1" / "extra.txt").exists()


def test_extract_zip_errors(tmp_path):
    bad = tmp_path / "trunc.zip"
    bad.write_bytes(_make_zip(tmp_path / "ok.zip").read_bytes()[:40])
    with pytest.raises(DataError, match="not a valid zip.*download it again"):
        dl.extract_zip(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="not found"):
        dl.extract_zip(tmp_path / "none.zip", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("x")
    with pytest.raises(DataError, match="already exists"):
        dl.extract_zip(tmp_path / "ok.zip", busy)
    assert (busy / "mine.txt").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DataError, match="unsafe path"):
        dl.extract_zip(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


# --------------------------------------------------------------------------- hub files go through huggingface_hub

def test_miracl_topics_and_qrels_come_from_hf_hub_download(tmp_path, monkeypatch):
    """MIRACL's hub files are fetched with huggingface_hub.hf_hub_download (its cache, resume, token and
    HF_ENDPOINT apply); a local stand-in serves them here."""
    import huggingface_hub

    from hbkit.datasets import miracl

    files = {"miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv": "1\tswali\n2\tjingine\n",
             "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv": "1 Q0 4#0 1\n2 Q0 5#1 0\n"}
    calls = []

    def fake_download(repo_id, filename, *, repo_type=None, **kw):
        calls.append((repo_id, filename, repo_type, kw))
        path = tmp_path / "hub" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[filename], encoding="utf-8")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    dev = miracl.load_miracl_dev("sw")
    assert calls == [("miracl/miracl", name, "dataset", {}) for name in files]
    assert dev.source == "hub:miracl/miracl" and dev.topics == {"1": "swali", "2": "jingine"}
    assert dev.qrels == {"1": {"4#0": 1}, "2": {"5#1": 0}}

    def refusing(repo_id, filename, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refusing)
    with pytest.raises(DataError, match=r"Could not get miracl-v1\.0-sw/topics/topics\.miracl-v1\.0-sw-dev\.tsv from "
                                        r"the hub dataset 'miracl/miracl': LocalEntryNotFoundError.*offline.*root="):
        miracl.load_miracl_dev("sw")


def test_miracl_corpus_streams_hf_paths(monkeypatch):
    """The hub corpus is streamed from hf:// paths (huggingface_hub's file system under datasets)."""
    import datasets

    from hbkit.datasets import miracl

    seen = {}

    def fake_load_dataset(builder, data_files=None, split=None, streaming=False):
        seen.update(builder=builder, data_files=data_files, split=split, streaming=streaming)
        return [{"docid": "1#0", "title": "Kenya", "text": "Nairobi"}, {"docid": "2#0", "title": "", "text": "x"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(miracl.iter_corpus("sw", None, chunk_size=5)) == [(["1#0", "2#0"], ["Kenya Nairobi", "x"])]
    assert seen == {"builder": "json", "split": "train", "streaming": True,
                    "data_files": "hf://datasets/miracl/miracl-corpus/miracl-corpus-v1.0-sw/docs-*.jsonl.gz"}

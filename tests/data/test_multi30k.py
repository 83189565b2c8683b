"""Multi30k download: digests checked, nothing half-written, served by a local HTTP server
and from the local mirror."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading

import pytest

import conftest
from attn_jax.data import multi30k

MIRROR = os.path.join(conftest.ROOT, "..", "shared", "data", "multi30k")
needs_mirror = pytest.mark.skipif(not os.path.isdir(MIRROR), reason="Multi30k mirror not present")
SMALL = ["val.en.gz", "val.de.gz", "test_2016_flickr.fr.gz"]


@pytest.fixture()
def served(tmp_path):
  """A local HTTP server over a directory: (its URL, the directory)."""
  root = tmp_path / "served"
  root.mkdir()
  handler = functools.partial(_QuietHandler, directory=str(root))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}/raw/", root
  server.shutdown()
  server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):  # pylint: disable=arguments-differ
    del args


def _serve(root, names, corrupt=()):
  (root / "raw").mkdir(exist_ok=True)
  for name in names:
    data = open(os.path.join(MIRROR, name), "rb").read()  # pylint: disable=consider-using-with
    if name in corrupt:
      data = data[:-10] + b"0123456789"
    (root / "raw" / name).write_bytes(data)


def test_the_table_covers_every_pair_the_repository_has():
  assert len(multi30k.FILES) == 22
  assert multi30k.file_names(("cs",), multi30k.SPLITS) == [
      "train.cs.gz", "val.cs.gz", "test_2016_flickr.cs.gz", "test_2018_flickr.cs.gz"]
  with pytest.raises(ValueError, match="unknown language xx"):
    multi30k.file_names(("en", "xx"), ("train",))
  with pytest.raises(ValueError, match="unknown split test_2019"):
    multi30k.file_names(("en",), ("test_2019",))


@needs_mirror
def test_the_mirror_matches_the_official_digests():
  for name in os.listdir(MIRROR):
    if name.endswith(".gz"):
      assert multi30k.sha256(os.path.join(MIRROR, name)) == multi30k.FILES[name][0], name


@needs_mirror
def test_download_over_http_verifies_and_skips_what_is_there(served, tmp_path):
  url, root = served
  _serve(root, SMALL)
  target = str(tmp_path / "data")
  lines = []
  multi30k.download(url, target, SMALL, report=lines.append)
  assert sorted(os.listdir(target)) == sorted(SMALL)
  assert all("SHA-256 verified" in line for line in lines) and len(lines) == 3
  lines.clear()
  multi30k.download(url, target, SMALL, report=lines.append)
  assert all(line.endswith("present, SHA-256 verified") for line in lines)


@needs_mirror
def test_a_corrupted_file_is_not_kept_and_the_verified_stay(served, tmp_path):
  url, root = served
  _serve(root, SMALL, corrupt={"val.de.gz"})
  target = str(tmp_path / "data")
  with pytest.raises(multi30k.DownloadError) as info:
    multi30k.download(url, target, SMALL, report=lambda line: None)
  received = hashlib.sha256((root / "raw" / "val.de.gz").read_bytes()).hexdigest()
  assert str(info.value) == (f"val.de.gz: SHA-256 {received} received from {url}val.de.gz, "
                             f"expected {multi30k.FILES['val.de.gz'][0]}; not kept")
  assert os.listdir(target) == ["val.en.gz"]  # no .part, no bad file


def test_a_missing_file_and_an_unreachable_host_name_the_url(served, tmp_path):
  url, _ = served
  with pytest.raises(multi30k.DownloadError, match=rf"^{url}val.en.gz: HTTP 404 "):
    multi30k.download(url, str(tmp_path / "data"), ["val.en.gz"], report=lambda line: None)
  closed = "http://127.0.0.1:9/raw/"  # the discard port: nothing listens
  with pytest.raises(multi30k.DownloadError, match=rf"^{closed}val.en.gz: "):
    multi30k.download(closed, str(tmp_path / "data"), ["val.en.gz"], report=lambda line: None)
  assert os.listdir(tmp_path / "data") == []


@needs_mirror
@pytest.mark.parametrize("form", ["directory", "file_url"])
def test_a_local_mirror(tmp_path, form):
  location = MIRROR if form == "directory" else "file://" + os.path.abspath(MIRROR)
  target = str(tmp_path / "data")
  multi30k.download(location, target, SMALL, report=lambda line: None)
  for name in SMALL:
    assert multi30k.sha256(os.path.join(target, name)) == multi30k.FILES[name][0]


@needs_mirror
def test_a_present_file_that_is_not_official_is_moved_aside_and_fetched(tmp_path):
  target = tmp_path / "data"
  target.mkdir()
  (target / "val.en.gz").write_bytes(b"something else")
  multi30k.download(MIRROR, str(target), ["val.en.gz"], report=lambda line: None)
  assert (target / "val.en.gz.unverified").read_bytes() == b"something else"
  assert multi30k.sha256(str(target / "val.en.gz")) == multi30k.FILES["val.en.gz"][0]

"""Multi30k task 1: the official raw files, their SHA-256 digests, and a verified download.

Elliott et al. 2016 (English, German), 2017 (French, test_2017 sets), Barrault et al.
2018 (Czech, test_2018_flickr). The files are `<split>.<lang>.gz` in the
multi30k/dataset repository's `data/task1/raw/`; Czech has no test_2017 sets.

A download goes to `<name>.part` in the data directory while its digest is
computed and is renamed to `<name>` only once the digest matches the table, so an
interrupted or corrupted download never leaves a file under the final name. A file
already present with the right digest is not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
LANGS = ("en", "de", "fr", "cs")
SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco",
          "test_2018_flickr")
TEST_SPLITS = tuple(s for s in SPLITS if s.startswith("test"))
CHUNK_BYTES = 1 << 16

# name -> (SHA-256, size in bytes) of every official file
FILES: dict[str, tuple[str, int]] = {
    "test_2016_flickr.cs.gz": ("200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1", 22572),
    "test_2016_flickr.de.gz": ("9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8", 22890),
    "test_2016_flickr.en.gz": ("611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9", 21077),
    "test_2016_flickr.fr.gz": ("6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90", 22310),
    "test_2017_flickr.de.gz": ("a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee", 21471),
    "test_2017_flickr.en.gz": ("76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074", 19138),
    "test_2017_flickr.fr.gz": ("3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496", 20434),
    "test_2017_mscoco.de.gz": ("799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338", 10230),
    "test_2017_mscoco.en.gz": ("aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58", 8844),
    "test_2017_mscoco.fr.gz": ("754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0", 9751),
    "test_2018_flickr.cs.gz": ("7d0a9db904f94c554a8c58049a9f3a5357c27f46cc3d710d70cb0b4a2585b8c2", 25181),
    "test_2018_flickr.de.gz": ("ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608", 26461),
    "test_2018_flickr.en.gz": ("ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d", 23514),
    "test_2018_flickr.fr.gz": ("fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501", 25321),
    "train.cs.gz": ("a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077", 593827),
    "train.de.gz": ("726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6", 637044),
    "train.en.gz": ("d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f", 568929),
    "train.fr.gz": ("622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c", 604242),
    "val.cs.gz": ("b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc", 22096),
    "val.de.gz": ("f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a", 24681),
    "val.en.gz": ("14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28", 21650),
    "val.fr.gz": ("ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9", 23001),
}


class DownloadError(RuntimeError):
  """A file that could not be fetched or verified; the message names the URL or file."""


def file_names(langs: tuple[str, ...], splits: tuple[str, ...]) -> list[str]:
  """The official files of `splits` in `langs` (pairs the repository lacks are skipped).

  Raises ValueError naming an unknown language or split."""
  for kind, names, known in (("language", langs, LANGS), ("split", splits, SPLITS)):
    unknown = [n for n in names if n not in known]
    if unknown:
      raise ValueError(f"unknown {kind} {', '.join(unknown)}; known: {', '.join(known)}")
  return [f"{s}.{lang}.gz" for s in splits for lang in langs if f"{s}.{lang}.gz" in FILES]


def base_url(location: str) -> str:
  """`location` as a URL ending in "/": http(s) and file URLs as given, a path as file://."""
  if urllib.parse.urlparse(location).scheme not in ("http", "https", "file"):
    location = pathlib.Path(location).resolve().as_uri()
  return location if location.endswith("/") else location + "/"


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(CHUNK_BYTES), b""):
      digest.update(block)
  return digest.hexdigest()


def fetch(url: str, target: str, expected: str, timeout: float = 60.0) -> int:
  """Downloads `url` to `target`.part, verifies its SHA-256 against `expected` and renames
  it to `target`; the bytes fetched. DownloadError naming the URL (network, HTTP) or the
  file (digest); nothing is left under either name then."""
  partial = target + ".part"
  digest, size = hashlib.sha256(), 0
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
      for block in iter(lambda: response.read(CHUNK_BYTES), b""):
        digest.update(block)
        out.write(block)
        size += len(block)
  except (urllib.error.URLError, OSError) as e:
    _remove(partial)
    if isinstance(e, OSError) and e.filename == partial:
      raise  # the data directory cannot be written: the caller names it
    raise DownloadError(f"{url}: {_why(e)}") from None
  if digest.hexdigest() != expected:
    _remove(partial)
    raise DownloadError(f"{os.path.basename(target)}: SHA-256 {digest.hexdigest()} received "
                        f"from {url}, expected {expected}; not kept")
  os.replace(partial, target)
  return size


def download(location: str, data_dir: str, names: list[str],
             report: Callable[[str], None] = print) -> None:
  """Every file of `names` into `data_dir` from `location` (see base_url), verified; a
  line per file to `report`. Files already there with the right digest are skipped."""
  os.makedirs(data_dir, exist_ok=True)
  url = base_url(location)
  for i, name in enumerate(names, 1):
    target, (expected, size) = os.path.join(data_dir, name), FILES[name]
    counter = f"[{i}/{len(names)}] {name}"
    if os.path.isfile(target) and sha256(target) == expected:
      report(f"{counter}: present, SHA-256 verified")
      continue
    if os.path.exists(target):
      os.replace(target, target + ".unverified")
      report(f"{counter}: present but not the official file (moved to {name}.unverified); "
             f"fetching it again")
    fetched = fetch(url + name, target, expected)
    report(f"{counter}: {fetched:,} bytes (expected {size:,}), SHA-256 verified")


def _why(error: Exception) -> str:
  if isinstance(error, urllib.error.HTTPError):
    return f"HTTP {error.code} {error.reason}"
  reason = getattr(error, "reason", None) or error
  return getattr(reason, "strerror", None) or str(reason)


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass

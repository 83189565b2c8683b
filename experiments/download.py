r"""Downloads Multi30k task 1 and verifies every file against its official SHA-256.

  python -m experiments.download [--data_dir=data/multi30k] [--langs=en,de,fr,cs] \
      [--splits=train,val,test_2016_flickr,test_2017_flickr,test_2017_mscoco,test_2018_flickr] \
      [--base_url=https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/]

--base_url also takes a local directory or a file:// URL (a mirror). Pairs the
official repository does not have (Czech test_2017 sets) are skipped. A file goes
to <name>.part and is renamed once its digest matches; files already present with
the right digest are not fetched again. A network error, an HTTP error or a wrong
digest is one error line naming the URL or file, exit 1; the files verified stay.
"""

from __future__ import annotations

from absl import app, flags

from attn_jax import config as config_lib
from attn_jax.data import multi30k
from experiments import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", config_lib.DEFAULT_DATA_DIR,
                    "Where the files go (the translation recipes read this directory).")
flags.DEFINE_list("langs", list(multi30k.LANGS), "Languages to fetch.")
flags.DEFINE_list("splits", list(multi30k.SPLITS), "Splits to fetch.")
flags.DEFINE_string("base_url", multi30k.BASE_URL,
                    "Where the files are: an http(s) or file:// URL, or a local directory.")


def main(argv):
  def body(watch):
    try:
      names = multi30k.file_names(tuple(FLAGS.langs), tuple(FLAGS.splits))
    except ValueError as e:
      flag = "langs" if "language" in str(e) else "splits"
      raise config_lib.ConfigError(f"{flag}: {e}") from None
    multi30k.download(FLAGS.base_url, FLAGS.data_dir, names,
                      report=lambda line: (print(line, flush=True), watch.progress()))
    print(f"{len(names)} files in {FLAGS.data_dir}")
  cli.run(body, argv, path=FLAGS.data_dir)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)

"""The embedded AWS: moto's server (`python -m moto.server`), as `inferline up` starts it, with
two costs moto pays on every request taken out.

- moto finds a request's service by first checking the Host against the folders of its own
  package, listed afresh (os.listdir and a stat of each of ~200 entries) on every request: a
  fifth of its CPU per S3 GET here. The folders do not change while the server runs, so the
  list is read once.
- werkzeug logs a line per request at INFO: the platform's log would grow by a line per object
  read. Warnings and errors are still logged.

    python -m local_runtime.aws_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import logging
import sys

from moto import backends
from moto.server import main as moto_main


def main(argv: list[str] | None = None) -> None:
    modules = frozenset(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # moto's dispatcher looks it up on the module
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])

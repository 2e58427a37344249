"""The embedded AWS: moto's server (`python -m moto.server`), as `inferline up` starts it, with
two costs moto pays on every request taken out.

- moto finds a request's service by first checking the Host against the folders of its own
  package, listed afresh (os.listdir and a stat of each of ~200 entries) on every request: a
  fifth of its CPU per S3 GET here. The folders do not change while the server runs, so the
  list is read once.
- werkzeug logs a line per request at INFO: the platform's log would grow by a line per object
  read. Warnings and errors are still logged.

And one guarantee the real services give that moto does not: a conditional write is atomic
(the condition still holds when the write lands). moto checks a DynamoDB condition or an S3
precondition and then writes, with no lock, on a threaded server; only the interpreter's
timing keeps two concurrent requests from both passing. One lock per service around its
conditional writes makes it so (feedback's consistency and the version claims rely on it).

    python -m local_runtime.aws_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading

from moto import backends
from moto.server import main as moto_main

# The handlers that check a condition and then write: DynamoDB's writes, S3's PUT.
ATOMIC_WRITES = {
    # the request handlers, not the backend's methods: a handler reads the old item (ReturnValues)
    # before it calls the backend, and that read must see no write in between
    "dynamodb": ("moto.dynamodb.responses", "DynamoHandler", ("put_item", "update_item", "delete_item",
                                                              "batch_write_item", "transact_write_items")),
    "s3": ("moto.s3.responses", "S3Response", ("put_object",)),
}  # fmt: skip


def serialize_conditional_writes() -> None:
    for module_name, class_name, methods in ATOMIC_WRITES.values():
        owner = getattr(importlib.import_module(module_name), class_name)
        lock = threading.Lock()
        for name in methods:
            setattr(owner, name, _locked(getattr(owner, name), lock))


def _locked(method, lock: threading.Lock):
    @functools.wraps(method)
    def write(*args, **kwargs):
        with lock:
            return method(*args, **kwargs)

    write.serialized = True  # type: ignore[attr-defined]
    return write


def main(argv: list[str] | None = None) -> None:
    modules = frozenset(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # moto's dispatcher looks it up on the module
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialize_conditional_writes()
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])

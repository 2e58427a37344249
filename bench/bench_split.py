"""Stream a generated 1 GB CSV through the batch splitter and check that its memory stays flat.

    .venv/bin/python bench/bench_split.py              # 1 GiB
    .venv/bin/python bench/bench_split.py --gib 0.1    # a smaller file, same checks

The file is never on disk or in memory whole: a file-like object makes it up block by block as
batch.split.plan_chunks reads it (the way the splitter reads an S3 object's body), with a quoted
field holding a comma and a newline every so often so the scanner's quote path runs too. The
run checks the chunk plan (contiguous byte ranges covering every byte after the header, row
numbers adding up) and reports the process's peak RSS (VmHWM) before and after: the splitter
keeps only one read block and the chunk list, whatever the file's size. Then one chunk of the
plan is read by the chunk worker's reader (batch.chunk.read_rows), whose memory is bounded by
the chunk, not the file. Prints a table; with --summary, appends it to a Markdown file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions"), str(REPO)]

HEADER = b"user_id,price,category,device,country,session_pages,hour_of_day,discount_pct,email\n"
CATEGORIES = [b"books", b"electronics", b"fashion", b"home", b"sports", b"toys"]


class GeneratedCsv:
    """A read()-able CSV of about `size` bytes, made up as it is read; remembers only its rows."""

    def __init__(self, size: int):
        self.size = size
        self.produced = 0
        self.rows = 0
        self.pending = HEADER

    def _row(self) -> bytes:
        n = self.rows
        self.rows += 1
        email = b'"x, y\nz@example.com"' if n % 997 == 0 else b"user%d@example.com" % n
        return b"u%05d,%d.%02d,%s,mobile,US,%d,%d,5,%s\n" % (
            n % 2000,
            n % 500,
            n % 100,
            CATEGORIES[n % 6],
            1 + n % 30,
            n % 24,
            email,
        )

    def read(self, n: int = -1) -> bytes:
        out = bytearray(self.pending)
        while len(out) < n and self.produced + len(out) < self.size:
            out += b"".join(self._row() for _ in range(1000))
        block, self.pending = bytes(out[:n]), bytes(out[n:])
        if not block and self.pending:
            block, self.pending = self.pending, b""
        self.produced += len(block)
        return block


def vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="file size in GiB")
    parser.add_argument("--summary", type=Path, help="append the result to this Markdown file")
    args = parser.parse_args(argv)

    from batch.chunk import ChunkMessage, read_rows
    from batch.split import plan_chunks
    from inferline.spec import load_spec

    spec = load_spec("purchase-propensity")
    size = int(args.gib * 2**30)
    body = GeneratedCsv(size)
    before = vm("VmHWM")
    started = time.perf_counter()
    columns, chunks = plan_chunks(body, spec, 50_000, 8 * 1024 * 1024)
    seconds = time.perf_counter() - started
    after = vm("VmHWM")

    total = body.produced
    assert chunks[0].start == len(HEADER) and chunks[-1].end == total, "the plan covers the file"
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False)), "no gap, no overlap"
    assert all(a.first_row + a.rows == b.first_row for a, b in zip(chunks, chunks[1:], strict=False))
    assert sum(c.rows for c in chunks) == body.rows, "every row in one chunk"

    # one chunk through the worker's reader: its memory is the chunk's, not the file's
    probe = GeneratedCsv(chunks[1].end + 1)
    probe.read(chunks[1].start)
    data = probe.read(chunks[1].end - chunks[1].start)
    message = ChunkMessage(
        job_id="j", model=spec.name, key="k", chunk=1, start=chunks[1].start, end=chunks[1].end,
        first_row=chunks[1].first_row, columns=columns,
    )  # fmt: skip
    read_started = time.perf_counter()
    rows = read_rows(spec, message, data)
    read_seconds = time.perf_counter() - read_started
    assert len(rows.rows) + len(rows.errors) == chunks[1].rows and not rows.errors
    worker_peak = vm("VmHWM")

    lines = [
        f"## Splitting a {total / 2**30:.2f} GiB file (bench/bench_split.py --gib {args.gib:g})",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}. The file is generated while it is read, never held whole.",
        "",
        "| what | value |",
        "| --- | ---: |",
        f"| bytes, rows | {total:,}, {body.rows:,} |",
        f"| chunks (≤ 50,000 rows / 8 MiB) | {len(chunks):,} |",
        f"| plan_chunks wall time | {seconds:.1f} s ({total / 2**20 / seconds:,.0f} MiB/s) |",
        f"| peak RSS before / after splitting | {before:.0f} MB / {after:.0f} MB |",
        f"| read_rows of one {chunks[1].rows:,}-row chunk | {read_seconds:.2f} s, "
        f"peak RSS then {worker_peak:.0f} MB |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.summary:
        with args.summary.open("a") as f:
            f.write("\n" + report)
    growth = after - before
    print(f"peak RSS grew {growth:.1f} MB while splitting {total / 2**20:,.0f} MiB")
    return 0 if growth < 64 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Import profiles from a JSON-lines file through the bulk upsert service.

Each non-blank line is one profile object, the shape of a row of `POST /api/v1/profiles/bulk/`:

    {"external_id": "crm-42", "attributes": {"country": "NL"}, "identifiers": {"email": "j@example.com"}}

The file is read line by line (never loaded whole) and sent in batches of --batch lines (default 5,000, at most
10,000); each batch is one call of the service, so one transaction.

Batch semantics. With --partial, the valid lines of every batch are written and the invalid ones reported. Without
it, a batch holding any invalid line writes nothing at all; the other batches (before and after it) are still
written, and every invalid line of the file is reported, so one run lists all the problems. The command then exits
with status 1. The upsert is idempotent: fix the lines and run the whole file again.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from audiences import profiles

MAX_LINE_BYTES = 1024 * 1024


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class Progress:
    """A one-line progress bar on a terminal (redrawn in place), one line per batch otherwise (logs, pipes)."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, total: int):
        self.stream = stream
        self.total = total
        self.interactive = stream.isatty()
        self.started = time.monotonic()
        self.drawn = False

    def line(self, done: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        share = done / self.total if self.total else 1.0
        filled = int(self.WIDTH * share)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return f"[{bar}] {done:,}/{self.total:,} lines {share:4.0%} {rate:,.0f} lines/s"

    def _write(self, text: str) -> None:
        self.stream.write(text, style_func=lambda plain: plain, ending="")
        self.stream.flush()

    def update(self, done: int) -> None:
        if self.interactive:
            self._write("\r" + self.line(done))
            self.drawn = True
        else:
            self._write(self.line(done) + "\n")

    def clear(self) -> None:
        """Before printing a message on a terminal: leave the bar's line."""
        if self.interactive and self.drawn:
            self._write("\r\033[K")
            self.drawn = False

    def finish(self) -> None:
        if self.interactive and self.drawn:
            self._write("\n")


class Command(BaseCommand):
    help = (
        "Create or update profiles from a JSON-lines file (one profile object per line, as in the bulk API), "
        "in batches, with a progress bar on stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The JSON-lines file (UTF-8).")
        parser.add_argument(
            "--batch",
            type=int,
            default=5000,
            help=f"Lines per batch (one transaction each), 1 to {profiles.MAX_BULK_ROWS}; default 5000.",
        )
        parser.add_argument(
            "--partial",
            action="store_true",
            help="Write the valid lines of a batch even when some are invalid; without it such a batch writes nothing.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Validate only; write nothing.")

    def handle(self, *args, **options):
        path, batch_size = options["file"], options["batch"]
        partial, dry_run = options["partial"], options["dry_run"]
        if not 1 <= batch_size <= profiles.MAX_BULK_ROWS:
            raise CommandError(f"--batch must be between 1 and {profiles.MAX_BULK_ROWS}.")
        try:
            total = _count_lines(path)
            source = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from None

        progress = Progress(self.stderr, total)
        totals = {"created": 0, "updated": 0, "unchanged": 0, "invalid": 0}
        failed_batches: list[tuple[int, int]] = []
        done = 0
        with source:
            for batch in _batches(source, batch_size):
                done = batch[-1][0]
                self._run_batch(batch, partial, dry_run, totals, failed_batches, progress)
                progress.update(done)
        progress.finish()

        verb = "would be" if dry_run else "were"
        summary = (
            f"{totals['created']:,} created, {totals['updated']:,} updated, {totals['unchanged']:,} unchanged, "
            f"{totals['invalid']:,} invalid lines"
        )
        if dry_run:
            summary += " (dry run: nothing written)"
        self.stdout.write(summary)
        if totals["invalid"] and not partial:
            spans = ", ".join(f"{a}-{b}" for a, b in failed_batches[:20]) + ("…" if len(failed_batches) > 20 else "")
            raise CommandError(
                f"{totals['invalid']:,} invalid lines; the batches holding them {verb} not written "
                f"(lines {spans}). Fix them and run again (or use --partial to write the valid lines)."
            )

    def _run_batch(self, batch, partial, dry_run, totals, failed_batches, progress) -> None:
        line_numbers = [number for number, _, _ in batch]
        rows, parse_errors = [], {}
        for position, (_, row, problem) in enumerate(batch):
            rows.append(row)
            if problem:
                parse_errors[position] = problem
        # Lines that are not JSON cannot reach the service; without --partial their batch must write nothing,
        # so the rest of it is only validated.
        valid_rows = [row for position, row in enumerate(rows) if position not in parse_errors]
        positions = [position for position in range(len(rows)) if position not in parse_errors]
        progress.clear()  # the service logs a line per batch; messages start on a line of their own
        try:
            result = profiles.profile_bulk_upsert(
                rows=valid_rows, partial=partial, dry_run=dry_run or (bool(parse_errors) and not partial)
            )
        except profiles.ProfileWriteConflict as exc:
            raise CommandError(f"Lines {line_numbers[0]}-{line_numbers[-1]}: {exc}") from None
        problems = {position: {"line": [message]} for position, message in parse_errors.items()}
        for error in result.errors:
            problems[positions[error.index]] = error.errors
        for position in sorted(problems):
            reasons = "; ".join(
                f"{field}: {' '.join(messages)}" if field != "line" else " ".join(messages)
                for field, messages in problems[position].items()
            )
            self.stderr.write(f"line {line_numbers[position]}: {reasons}")
        totals["invalid"] += len(problems)
        if problems and not partial:
            failed_batches.append((line_numbers[0], line_numbers[-1]))
            return
        totals["created"] += result.created
        totals["updated"] += result.updated
        totals["unchanged"] += result.unchanged


def _count_lines(path: str) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


def _read_lines(source):
    """(line number, text or None, problem) per line, each line read with a bounded buffer."""
    number = 0
    while True:
        raw = source.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := source.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None, f"The line is longer than {MAX_LINE_BYTES} bytes."
            continue
        try:
            yield number, raw.decode("utf-8"), ""
        except UnicodeDecodeError:
            yield number, None, "The line is not valid UTF-8."


def _batches(source, size: int):
    """Lists of (line number, parsed object, problem) of non-blank lines, `size` at a time."""
    batch = []
    for number, text, problem in _read_lines(source):
        row = None
        if not problem:
            if not text.strip():
                continue
            try:
                row = json.loads(text, parse_constant=_refuse_constant)
            except ValueError as exc:
                problem = f"Not valid JSON ({exc})."
        batch.append((number, row, problem))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

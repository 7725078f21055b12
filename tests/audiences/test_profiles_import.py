import io
import json

import pytest
from django.core.management import CommandError, call_command

from audiences.management.commands.import_profiles import Progress
from audiences.models import Profile, ProfileIdentifier

pytestmark = pytest.mark.django_db


def write_lines(tmp_path, lines: list, name: str = "profiles.jsonl"):
    path = tmp_path / name
    with open(path, "wb") as handle:
        for line in lines:
            handle.write(
                (line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode())
                + b"\n"
            )
    return path


def run(path, *args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_profiles", str(path), *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


def test_imports_a_file_in_batches_with_progress(tmp_path):
    rows = [
        {"external_id": f"crm-{i}", "attributes": {"n": i}, "identifiers": {"email": f"p{i}@example.com"}}
        for i in range(7)
    ]
    path = write_lines(tmp_path, [*rows[:3], "", *rows[3:]])  # a blank line is skipped
    out, err, failure = run(path, "--batch", "3")
    assert failure is None
    assert "7 created, 0 updated, 0 unchanged, 0 invalid lines" in out
    assert Profile.objects.count() == 7
    assert ProfileIdentifier.objects.get(profile__external_id="crm-6").value == "p6@example.com"
    # stderr is not a terminal here: one progress line per batch, the last one complete
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert len(progress) == 3
    assert "3/8 lines" in progress[0]
    assert progress[-1].startswith("[" + "#" * 30 + "]")
    assert "8/8 lines 100%" in progress[-1]
    assert "lines/s" in progress[-1]

    # again, with a change: idempotent upsert
    write_lines(tmp_path, [{**rows[0], "attributes": {"n": 100}}, *rows[1:]])
    out, _, failure = run(path)
    assert failure is None
    assert "0 created, 1 updated, 6 unchanged" in out


def test_invalid_lines_without_partial_fail_and_their_batch_writes_nothing(tmp_path):
    lines = [
        {"external_id": "a"},
        {"external_id": "b"},  # batch 1 (lines 1-2): valid, written
        "{not json",
        {"external_id": "c"},  # batch 2 (lines 3-4): a broken line, nothing written
        {"external_id": "d", "identifiers": {"email": "nope"}},
        {"external_id": "e"},  # batch 3 (lines 5-6): an invalid row, nothing written
        {"external_id": "f"},  # batch 4 (line 7): written
    ]
    out, err, failure = run(write_lines(tmp_path, lines), "--batch", "2")
    assert failure is not None
    assert "2 invalid lines" in str(failure)
    assert "lines 3-4, 5-6" in str(failure)
    assert "--partial" in str(failure)
    assert "line 3: Not valid JSON" in err
    assert "line 5: identifiers.email: Enter a valid email address" in err
    assert sorted(Profile.objects.values_list("external_id", flat=True)) == ["a", "b", "f"]


def test_partial_writes_the_valid_lines_and_reports_the_others(tmp_path):
    lines = [
        {"external_id": "a"},
        "[1, 2]",
        b'{"external_id": "\xff"}',
        {"external_id": "b", "attributes": {"bad__name": 1}},
        '{"external_id": "c", "attributes": {"n": NaN}}',
        {"external_id": "d"},
    ]
    out, err, failure = run(write_lines(tmp_path, lines), "--partial")
    assert failure is None
    assert "2 created, 0 updated, 0 unchanged, 4 invalid lines" in out
    assert "line 2: non_field_errors: Enter a profile as an object" in err
    assert "line 3: The line is not valid UTF-8." in err
    assert "line 4: attributes.bad__name:" in err
    assert "line 5: Not valid JSON" in err
    assert sorted(Profile.objects.values_list("external_id", flat=True)) == ["a", "d"]


def test_dry_run_writes_nothing(tmp_path):
    out, _, failure = run(write_lines(tmp_path, [{"external_id": "a"}]), "--dry-run")
    assert failure is None
    assert "1 created" in out and "dry run" in out
    assert not Profile.objects.exists()


def test_a_missing_or_unreadable_file_is_a_clear_error(tmp_path):
    _, _, failure = run(tmp_path / "nope.jsonl")
    assert "Cannot read" in str(failure) and "No such file" in str(failure)
    _, _, failure = run(tmp_path)  # a directory
    assert "Cannot read" in str(failure)


def test_batch_size_is_bounded(tmp_path):
    path = write_lines(tmp_path, [{"external_id": "a"}])
    for size in ("0", "10001"):
        _, _, failure = run(path, "--batch", size)
        assert "--batch must be between 1 and 10000" in str(failure)


def test_an_overlong_line_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    from audiences.management.commands import import_profiles

    monkeypatch.setattr(import_profiles, "MAX_LINE_BYTES", 64)
    long_row = {"external_id": "long", "attributes": {"text": "x" * 200}}
    out, err, failure = run(write_lines(tmp_path, [long_row, {"external_id": "ok"}]), "--partial")
    assert failure is None
    assert "line 1: The line is longer than 64 bytes." in err
    assert list(Profile.objects.values_list("external_id", flat=True)) == ["ok"]


def test_progress_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    from django.core.management.base import OutputWrapper

    stream = Terminal()
    progress = Progress(OutputWrapper(stream), total=10)
    progress.update(5)
    progress.clear()
    progress.update(10)
    progress.finish()
    text = stream.getvalue()
    assert text.startswith("\r[" + "#" * 15 + "." * 15 + "] 5/10 lines  50%")
    assert "\r\033[K" in text
    assert text.endswith("lines/s\n") and text.count("\n") == 1

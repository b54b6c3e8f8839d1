import json
import subprocess
import sys


def cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True,
                          text=True, input=input, timeout=120)


def test_run_prints_a_json_result(build_dir):
    r = cli("run", "telemetry-triage", "PSU 2 failed, running on redundant supply")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["output"]["label"] == "power"
    assert result["backend"] == "cpython"


def test_run_reads_stdin(build_dir):
    r = cli("run", "telemetry-triage", "-", input="Link down on eth0")
    assert json.loads(r.stdout)["output"]["label"] == "network"


def test_bad_input_and_unknown_task_are_clear_errors(build_dir):
    empty = cli("run", "telemetry-triage", "   ")
    assert empty.returncode == 2 and "empty" in empty.stderr
    unknown = cli("run", "no-such-task", "x")
    assert unknown.returncode == 2 and "Unknown task 'no-such-task'" in unknown.stderr


def test_help_lists_the_commands():
    r = cli("--help")
    for command in ("build", "models", "runtime", "serve", "run"):
        assert command in r.stdout


def test_a_batch_file_that_is_not_texts_is_an_error_naming_it(tmp_path):
    """Before any model loads: exit status 2 and one line saying which file and why, never a
    traceback, and never a JSON object's keys run as if they were texts."""
    cases = {
        "binary.json": (b"\x00\x01\xff\xfe", "not UTF-8 text (byte 2"),
        "broken.json": (b'["Fan 2 stalled",', "not JSON"),
        "object.json": (b'{"text": "Fan 2 stalled"}', "a JSON object; a .json batch is an array"),
    }
    for name, (content, said) in cases.items():
        (tmp_path / name).write_bytes(content)
    missing, folder = tmp_path / "missing.json", tmp_path
    for path, said in [*((tmp_path / n, s) for n, (_, s) in cases.items()),
                       (missing, "no such file"), (folder, "a directory, not a file")]:
        r = cli("run", "telemetry-triage", "--batch", str(path))
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        assert r.stderr.startswith(f"error: {path}: {said}"), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_batch_keeps_every_input_in_order_and_says_which_failed(build_dir, tmp_path):
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps(["Fan 2 stalled", 3, "   ", "Filesystem /var is full"]))
    r = cli("run", "telemetry-triage", "--batch", str(texts))
    assert r.returncode == 1
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("text", x.get("output", {}).get("label")) for x in lines] == \
        ["mechanical", 3, "   ", "storage"]
    assert "string" in lines[1]["error"] and "empty" in lines[2]["error"]


def test_eval_data_that_is_not_records_is_an_error_naming_the_line(tmp_path):
    data = tmp_path / "dev.jsonl"
    for content, said in [('{"text": "a", "label": "oos"}\n{"text": \n', "line 2: not JSON"),
                          ('{"text": "a", "label": "oos"}\n\n["a"]\n', "line 3: a JSON array"),
                          ('{"label": "oos"}\n', 'line 1: the record has no "text" string')]:
        data.write_text(content)
        r = cli("eval", "clinc150-intent", str(data))
        assert r.returncode == 2 and r.stderr.startswith(f"error: {data}, {said}"), r.stderr


def test_serve_and_export_without_a_build_say_what_to_run(tmp_path):
    empty = tmp_path / "no-build"
    for args in (["serve", "--port", "1"], ["export", str(tmp_path / "site")]):
        r = cli("--build-dir", str(empty), *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and "run `make`" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "site").exists()

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


def test_run_batch_prints_json_lines(build_dir, tmp_path):
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps(["Fan 2 stalled", "Filesystem /var is full"]))
    r = cli("run", "telemetry-triage", "--batch", str(texts))
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["output"]["label"] for x in lines] == ["mechanical", "storage"]


def test_bad_input_and_unknown_task_are_clear_errors(build_dir):
    empty = cli("run", "telemetry-triage", "   ")
    assert empty.returncode == 2 and "empty" in empty.stderr
    unknown = cli("run", "no-such-task", "x")
    assert unknown.returncode == 2 and "Unknown task 'no-such-task'" in unknown.stderr


def test_help_lists_the_commands():
    r = cli("--help")
    for command in ("build", "models", "runtime", "serve", "run"):
        assert command in r.stdout

"""The engine on the real built encoder under CPython."""

import pytest

from pyapp.textinput import InputError
from tests.conftest import run

CLEAR_CASES = {
    "Error: Fan speed threshold exceeded on Node 4B.": "mechanical",
    "CPU package temperature reached 101C, throttling": "thermal",
    "UPS switched to battery after mains failure": "power",
    "eth1 link flapping every 30 seconds": "network",
    "Filesystem /data is 99% full": "storage",
    "Barometer reading stuck at 1013.25 hPa for three days": "sensor",
    "Java heap space OutOfMemoryError in ingest service": "software",
}


@pytest.mark.parametrize("text,label", CLEAR_CASES.items())
def test_clear_inputs_get_the_right_label(engine, text, label):
    result = run(engine.run("telemetry-triage", text))
    assert result["output"]["label"] == label


def test_result_shape(engine):
    result = run(engine.run("telemetry-triage", "PSU 2 failed"))
    assert set(result) >= {"task", "output", "confidence", "route", "backend", "timings_ms"}
    assert result["backend"] == "cpython"
    assert result["route"] in ("local", "escalated")
    assert result["confidence"] == result["output"]["confidence"]
    assert set(result["output"]["scores"]) == {"thermal", "power", "network", "storage",
                                               "mechanical", "sensor", "software"}
    assert 0 < result["timings_ms"]["inference"] <= result["timings_ms"]["total"]


def test_low_confidence_is_escalated_with_a_reason(engine):
    result = run(engine.run("telemetry-triage", "what is the weather tomorrow"))
    assert result["confidence"] < 0.85
    assert result["route"] == "escalated"
    assert "below threshold" in result["reasons"][0]


def test_huge_input_is_truncated_with_a_notice(engine):
    text = "Fan 3 stalled at 0 RPM. " * 5000  # 120,000 characters
    result = run(engine.run("telemetry-triage", text))
    assert result["truncated"] is True
    assert any("truncated" in n for n in result["notices"])
    assert result["output"]["label"] == "mechanical"
    assert "input was truncated" in result["reasons"]


def test_control_characters_and_surrogates_are_handled(engine):
    result = run(engine.run("telemetry-triage", "disk\x00 full \ud800 on /var\x1b"))
    assert result["output"]["label"] == "storage"
    assert len(result["notices"]) == 2


@pytest.mark.parametrize("bad", ["", "  \n ", None, 5])
def test_bad_input_raises_input_error(engine, bad):
    with pytest.raises(InputError):
        run(engine.run("telemetry-triage", bad))


def test_unknown_and_unloaded_tasks(engine):
    with pytest.raises(KeyError, match="Unknown task"):
        run(engine.run("nope", "x"))


def test_classification_and_extraction_tasks_open_together(telemetry_heads):
    from models.cpython.engines import open_engine

    group = open_engine(telemetry_heads, ["telemetry-triage", "telemetry-extract"])
    # telemetry-extract's closed-set fields come from encoder heads, opened beside it.
    heads = set(group.task("telemetry-extract").field_heads.values())
    assert heads == {"telemetry-category", "telemetry-severity", "telemetry-component-kind"}
    assert set(group.tasks) == {"telemetry-triage", "telemetry-extract"} | heads
    assert group.task("telemetry-extract").kind == "extraction"
    result = run(group.run("telemetry-triage", "Link down on eth0"))
    assert result["output"]["label"] == "network"
    with pytest.raises(KeyError, match="Unknown task"):
        run(group.run("nope", "x"))


def test_telemetry_extract_routes_by_the_heads_record_calibration(telemetry_heads):
    """The heads' artifacts carry a calibration of P(every head field right) and its threshold
    (models/fieldheads.py); the task must use both, not the raw product at 0.85."""
    from models.cpython.engines import open_engine
    from pyapp.tasks.hybrid import calibrated

    group = open_engine(telemetry_heads, ["telemetry-extract"])
    task = group.task("telemetry-extract")
    cal = group.task("telemetry-category").training_info["record_calibration"]
    assert task.threshold == cal["threshold"] != 0.85
    result = run(group.run("telemetry-extract", "Fan 2 stalled, rotor speed 0 RPM"))
    by_head = {task.field_heads[f]: p for f, p in result["output"]["field_confidence"].items()}
    assert result["confidence"] == pytest.approx(calibrated(cal, by_head), abs=1e-5)
    assert result["route"] == ("local" if result["confidence"] >= cal["threshold"] else "escalated")


def test_telemetry_extract_summary_is_the_lines_message(telemetry_heads):
    """The summary is written from the line (pyapp.message) before the language model runs: a
    line with quotes and backslashes, and one whose message fills the 160 characters, still give a
    valid record, and the model's budget is not spent on the summary's tokens."""
    from models.cpython.engines import open_engine
    from pyapp.message import line_message

    group = open_engine(telemetry_heads, ["telemetry-extract"])
    lines = [r'Dec 10 09:12:15 gw01 smartd[812]: Device "C:\disk3" 3 reallocated sectors',
             "2017-05-16 00:00:04.500 25746 ERROR nova.compute.manager [req-0a1b2c3d-4e5f-6a7b-"
             "8c9d-0e1f2a3b4c5d 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e"
             " - - -] Instance failed to spawn: libvirtError: internal error: process exited"]
    for line in lines:
        result = run(group.run("telemetry-extract", line))
        record = result["output"]["record"]
        assert result["valid"] and record["summary"] == line_message(line)
        assert result["output"]["sources"]["summary"] == "the line's message (its header removed)"
        # The component is a run of the line, never a word of the model's (generation.spans).
        assert result["output"]["sources"]["component"] == "language model (a run of the line)"
        assert record["component"] in line
        assert result["output"]["stop_reason"] == "grammar"
    assert 150 <= len(record["summary"]) <= 160 and record["summary"].endswith("…")

"""The telemetry heads as built: trained on Loghub templates and the labelled field reports."""

from __future__ import annotations

import pytest

from models.cpython.engines import open_engine
from pyapp.tasks.telemetry_labels import report_records
from tests.conftest import run

#: Field reports in a person's words, written for this check and trained on nowhere (none is a
#: ``telemetry-triage`` example), with the category the labelling guide gives them. Written
#: before the heads were measured on them; the templates-only heads got 3 of the first 14.
UNSEEN_REPORTS = [
    ("Disk /dev/sda3 on host db-2 reports 3 reallocated sectors", "storage"),
    ("UPS on rack 12 switched to battery, 40 minutes remaining", "power"),
    ("Link down on eth0 of switch sw-3, port 12", "network"),
    ("CPU package temperature reached 101C, throttling", "thermal"),
    ("GPU 0 hot spot at 95 degrees", "thermal"),
    ("Main power feed lost, running on UPS", "power"),
    ("Cooling unit CRAC-2 reports high return air temperature", "thermal"),
    ("Chassis fan 3 not spinning", "mechanical"),
    ("Kernel panic after driver update", "software"),
    ("Battery voltage low on gateway 7", "power"),
    ("Packet loss 30% on uplink to core router", "network"),
    ("Humidity sensor reading frozen at 100%", "sensor"),
    ("RAID 5 rebuild failed on array 2", "storage"),
    ("Water pump vibration above limit", "mechanical"),
    ("Fan tray 2 RPM dropped to zero on switch core-1", "mechanical"),
]


def test_unseen_reports_are_not_training_examples():
    trained = {r["text"] for r in report_records()}
    assert not trained & {text for text, _ in UNSEEN_REPORTS}


def test_the_category_head_names_the_subsystem_of_reports_it_never_saw(telemetry_heads):
    group = open_engine(telemetry_heads, ["telemetry-category"])
    task = group.task("telemetry-category")
    right = [(text, gold, run(group.run("telemetry-category", text))["output"]["label"])
             for text, gold in UNSEEN_REPORTS]
    wrong = [(text, gold, got) for text, gold, got in right if got != gold]
    # 13 of 15 as built on the heads' fine-tuned encoder (Kernel panic → power, RAID rebuild →
    # software; on the base encoder 12 of 15); two more mistakes are allowed, not more.
    assert len(wrong) <= 4, wrong
    assert task.training_info["field_reports"] == len(report_records())


@pytest.mark.parametrize("field", ["severity", "component_kind"])
def test_reports_label_every_field(field):
    assert {r[field] for r in report_records()} and all(r[field] for r in report_records())

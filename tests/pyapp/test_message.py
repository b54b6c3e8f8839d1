"""pyapp.message: a line's message as telemetry-extract's summary, never more than the line says."""

import json
import time
from pathlib import Path

import pytest

from pyapp.message import line_message
from pyapp.textinput import MAX_INPUT_CHARS

# One line in each header style the Loghub systems write (written for this test, not copied
# from the data), with the message a reader would call the line's.
CASES = [
    ("03-17 16:13:38.859  2227  2227 D TextView: visible is system.time.showampm",
     "TextView: visible is system.time.showampm"),
    ("[Sun Dec 04 06:12:37 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties",
     "workerEnv.init() ok /etc/httpd/conf/workers2.properties"),
    ("081111 093011 1413 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_42 terminating",
     "dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_42 terminating"),
    ("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; user=root",
     "sshd(pam_unix)[19939]: authentication failure; user=root"),
    ("1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
     "crond(pam_unix)[2915]: session closed for user root"),
    ("nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:04.500 25746 INFO nova.osapi_compute.wsgi.server [req-1] GET /v2/servers",
     "nova.osapi_compute.wsgi.server [req-1] GET /v2/servers"),
    ("2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
     "Notification time out: 3200"),
    ("2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505",
     "CBS Loaded Servicing Stack v6.1.7601.23505"),
    ("20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
     "Step_LSC | 30002312 | onStandStepChanged 3579"),
    ("Error: Fan speed threshold exceeded on Node 4B.", "Fan speed threshold exceeded on Node 4B."),
    ("PSU 2 failed, running on redundant supply", "PSU 2 failed, running on redundant supply"),
]


@pytest.mark.parametrize("line,message", CASES)
def test_the_header_goes_and_the_message_stays(line, message):
    assert line_message(line) == message


@pytest.mark.parametrize("line", [
    "A disk in array md0 failed",            # "A" is a word here, not Android's level
    "I/O error on /dev/sda3",
    "Reboot scheduled for Nov 9 12:00 by operator",
])
def test_a_message_that_starts_like_a_header_keeps_its_words(line):
    assert line_message(line) == line


def _words(text: str) -> list[str]:
    return text.replace('"', "'").replace("\\", "/").replace("|", " | ").split()


LINES = [line for line, _ in CASES] + [
    r'kernel: path C:\Windows\System32 said "disk 3 busy"',
    "x" * 500,
    "Dec 10 09:12:15 LabSZ sshd[24477]: " + "error: Received disconnect from 103.99.0.122 " * 6,
    "\x00\x07 1234 \u200b INFO\tpump 3 pressure low\r\n",
    *(r["text"] for r in json.loads(
        (Path(__file__).resolve().parents[2] / "pyapp" / "tasks" / "telemetry_reports.json")
        .read_text(encoding="utf-8"))),
]


@pytest.mark.parametrize("line", LINES)
def test_the_message_is_a_run_of_the_lines_own_words_within_160_characters(line):
    message = line_message(line)
    assert 0 < len(message) <= 160
    assert '"' not in message and "\\" not in message   # the record's grammar allows no escapes
    words = message.removesuffix("…").split()
    source = _words("".join(ch if ch.isprintable() else " " for ch in line))
    # A contiguous run of the line's words (the last one may be cut by the length limit).
    starts = [i for i in range(len(source)) if source[i:i + len(words) - 1] == words[:-1]]
    assert starts, (line, message)
    assert any(source[i + len(words) - 1].startswith(words[-1]) for i in starts
               if i + len(words) - 1 < len(source))


def test_long_messages_are_cut_at_a_word_with_an_ellipsis():
    full = " ".join(["block replicated to datanode"] * 20)
    message = line_message("INFO " + full)
    assert message.endswith("…") and 150 <= len(message) <= 160
    kept = message.removesuffix("…")
    assert full.startswith(kept) and full[len(kept)] == " "    # cut where a word ends
    assert line_message("x" * 500) == "x" * 159 + "…"          # one word: cut inside it


def test_the_largest_input_is_cut_at_a_word_in_one_pass():
    # MAX_INPUT_CHARS of words: the cut used to pop one word at a time off a join of them, which
    # is quadratic (105 s for this line, so a 1,000,000-character extraction took 110 s). The bound
    # tells linear (~0.2 s) from quadratic on a slow machine; it is not a speed goal.
    words = [f"sector{i % 97}" for i in range(MAX_INPUT_CHARS // 8)]
    line = "ERROR " + " ".join(words)
    assert len(line) >= MAX_INPUT_CHARS - 8
    started = time.perf_counter()
    message = line_message(line[:MAX_INPUT_CHARS])
    assert time.perf_counter() - started < 20
    kept = message.removesuffix("…")
    assert message.endswith("…") and 150 <= len(message) <= 160
    assert line.startswith("ERROR " + kept) and line[len("ERROR " + kept)] == " "


def test_a_line_that_is_all_header_is_kept_whole():
    assert line_message("1131566740 2005.11.09 12:01:01") == "1131566740 2005.11.09 12:01:01"
    assert line_message("   ") == ""

"""daemon/client/API.md cannot drift: every command and topic documented, every example answered as shown."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from anabranch.client import messages
from anabranch.daemon.commands import command_table, reference

REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "daemon" / "client" / "API.md"
BLOCK = re.compile(r"```json (request|reply|event)\n(.*?)\n```", re.S)


def _fake_daemon_module():
    name = "anabranch_tests_fake_daemon"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "daemon" / "fake_daemon.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def doc() -> str:
    return API_MD.read_text()


def _sections(doc: str, level: str) -> dict[str, str]:
    """`#### \\`name\\`` heading -> its text up to the next heading of any level."""
    parts = re.split(r"^(#{2,4} .*)$", doc, flags=re.M)
    sections = {}
    for heading, body in zip(parts[1::2], parts[2::2]):
        match = re.match(rf"^{level} `([^`]+)`(.*)$", heading)
        if match:
            sections.setdefault(match.group(1), "")
            sections[match.group(1)] += body
    return sections


def _command_sections(doc: str) -> dict[str, str]:
    commands_part = doc[doc.index("\n## Commands\n"):doc.index("\n## Argument reference")]
    return _sections(commands_part, "####")


def test_every_registered_command_has_a_section_with_an_example(doc):
    sections = _command_sections(doc)
    for name in command_table(None):
        assert name in sections, f"API.md documents no command {name!r}"
        kinds = [kind for kind, _ in BLOCK.findall(sections[name])]
        assert "request" in kinds and "reply" in kinds, f"{name}: needs a request and a reply example"
    assert set(sections) <= set(command_table(None)), "API.md documents commands that do not exist"


def test_every_topic_has_a_section_with_an_event_example(doc):
    topics_part = doc[doc.index("### Topics"):doc.index("\n## Commands\n")]
    sections = _sections(topics_part, "####")
    assert set(sections) == set(messages.TOPICS)
    for topic, body in sections.items():
        events = [json.loads(text) for kind, text in BLOCK.findall(body) if kind == "event"]
        assert events, f"topic {topic}: no example"
        for event in events:
            assert event["v"] == messages.SCHEMA_VERSION and event["type"] == topic
            assert isinstance(event["seq"], int) and isinstance(event["ts"], float)


def test_the_argument_reference_is_generated_from_the_schemas(doc):
    generated = doc[doc.index("<!-- reference:begin -->\n") + len("<!-- reference:begin -->\n"):
                    doc.index("<!-- reference:end -->")]
    assert generated == reference(command_table(None)), \
        "API.md's reference is stale: regenerate it with `python -m anabranch.daemon.commands`"


def test_every_example_request_gets_the_documented_reply(doc, tmp_path):
    fake = _fake_daemon_module()
    daemon = fake.FakeDaemon(f"ipc://{tmp_path}/e.sock", f"ipc://{tmp_path}/c.sock", str(tmp_path / "state"),
                             flows=50)
    try:
        # The state the examples were written against: two ticks and one active alert.
        daemon.tick(now=1795320000.0, seed=1)
        daemon.tick(now=1795320001.0, seed=2)
        daemon.alerts.raise_alert("link-saturated:wan0", "link-saturated", "warning",
                                  "wan0 upload above 95 % for 10 s", now=1795320001.0, subject="wan0")
        checked = 0
        for name, body in _command_sections(doc).items():
            blocks = BLOCK.findall(body)
            for (kind, request_text), (next_kind, reply_text) in zip(blocks, blocks[1:]):
                if kind != "request":
                    continue
                assert next_kind == "reply", f"{name}: a request example without its reply"
                request, documented = json.loads(request_text), json.loads(reply_text)
                assert request["cmd"] == name, f"section {name} shows a request for {request['cmd']}"
                reply = messages.unpack(daemon.server.handle(messages.pack(request)), max_bytes=1 << 30)
                assert reply["ok"] == documented["ok"], f"{name}: {reply.get('error')}"
                assert reply["id"] == documented["id"]
                if reply["ok"]:
                    assert set(reply) == set(documented), f"{name}: reply fields differ from API.md"
                else:
                    assert reply["error"]["code"] == documented["error"]["code"], name
                checked += 1
        assert checked >= len(command_table(None))
    finally:
        daemon.close()

"""Every 5xx of a run: what was sent (as curl), and the traceback the server logged for it.

Schemathesis records each request and answer in its NDJSON report; the server writes JSON
log lines carrying the request id it also sends back in `X-Request-ID`. The two meet on
that id. Findings are grouped by operation, account and the exception's first line, so
one bug hit a hundred times reads as one entry with its count.
"""

import base64
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SERVER_ERROR = 500
MAX_PRINTABLE_BODY = 4_000
EXCEPTION_LINES = 3
APP_FRAMES = 2
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>.+)$')
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Finding:
    account: str
    operation: str
    phase: str
    status: int
    request_id: str | None
    curl: str
    error: str  # the exception, or what the server said when it logged none
    frames: list[str] = field(default_factory=list)  # innermost app frames, last one deepest


@dataclass
class Group:
    first: Finding
    count: int = 1


def findings(ndjson: Path, *, account: str, token: str, log: Path) -> list[Finding]:
    """Each 5xx answer in a pass's report, once, with the server's traceback for it."""
    errors = logged_errors(log)
    seen: set[str] = set()
    found = []
    for label, phase, interaction in _interactions(ndjson):
        response = interaction.get("response") or {}
        status = response.get("status_code", 0)
        if status < SERVER_ERROR:
            continue
        request_id = (response.get("headers", {}).get("x-request-id") or [None])[0]
        key = request_id or json.dumps(interaction["request"], sort_keys=True)
        if key in seen:  # the same exchange appears again in a shrunk scenario
            continue
        seen.add(key)
        record = errors.get(request_id or "")
        error, frames = _excerpt(record) if record else (_said(response), [])
        curl = to_curl(interaction["request"], token=token)
        found.append(Finding(account, label, phase, status, request_id, curl, error, frames))
    return found


def logged_errors(log: Path) -> dict[str, dict[str, Any]]:
    """The server's ERROR records that carry a request id, by that id."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in _log_records(log):
        if record.get("level") in {"ERROR", "CRITICAL"} and record.get("request_id"):
            by_id.setdefault(record["request_id"], record)
    return by_id


def unanswered_errors(log: Path, answered: set[str]) -> list[str]:
    """ERROR records no 5xx answer explains: work after the response, or a lost request."""
    lines = []
    for record in _log_records(log):
        if record.get("level") not in {"ERROR", "CRITICAL"}:
            continue
        if record.get("request_id") in answered:
            continue
        error, frames = _excerpt(record)
        where = f" at {frames[-1]}" if frames else ""
        first = error.splitlines()[0] if error else ""
        lines.append(f"{record.get('message')}: {first}{where}")
    return lines


def group(found: list[Finding]) -> list[Group]:
    groups: dict[tuple[str, str, str], Group] = {}
    for finding in found:
        # Ids differ between examples of one bug; the rest of the first line does not.
        summary = _UUID.sub("<id>", finding.error.splitlines()[0] if finding.error else "")
        key = (finding.account, finding.operation, summary)
        if key in groups:
            groups[key].count += 1
        else:
            groups[key] = Group(finding)
    return list(groups.values())


def render(groups: list[Group]) -> str:
    blocks = []
    for number, item in enumerate(groups, start=1):
        finding = item.first
        lines = [
            f"{number}. {finding.operation} as {finding.account}: HTTP {finding.status}"
            f" ({item.count} time{'s' if item.count > 1 else ''}, first in the {finding.phase}"
            f" phase, request id {finding.request_id})",
            *(f"   {line}" for line in finding.error.splitlines()),
            *(f"   at {frame}" for frame in finding.frames),
            f"   {finding.curl}",
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_json(path: Path, found: list[Finding]) -> None:
    path.write_text(json.dumps([asdict(finding) for finding in found], indent=2) + "\n")


def to_curl(request: dict[str, Any], *, token: str) -> str:
    """The request as a curl command for $AGENTRY_URL, the pass's token as $TOKEN."""
    url = re.sub(r"^https?://[^/]+", "", request["uri"])
    parts = ["curl", "-X", request["method"]]
    for name, values in request.get("headers", {}).items():
        for value in values:
            if name.lower() == "authorization" and value == f"Bearer {token}":
                parts += ["-H", '"Authorization: Bearer $TOKEN"']
            else:
                parts += ["-H", shlex.quote(f"{name}: {value}")]
    body = _body(request)
    prefix = ""
    if body is not None:
        text = _printable(body)
        if text is not None:
            parts += ["--data-binary", shlex.quote(text)]
        else:  # NUL and other bytes no argument can carry: piped through printf
            prefix = f"printf '%b' {shlex.quote(_escaped(body))} | "
            parts += ["--data-binary", "@-"]
    parts.append(f'"$AGENTRY_URL"{shlex.quote(url)}')
    return prefix + " ".join(parts)


def _interactions(ndjson: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    with ndjson.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # the last line of a report cut short
                continue
            scenario = event.get("ScenarioFinished")
            if not scenario:
                continue
            recorder = scenario.get("recorder", {})
            phase = scenario.get("phase") or "?"
            for interaction in recorder.get("interactions", {}).values():
                yield recorder.get("label", "?"), phase, interaction


def _log_records(log: Path) -> Iterator[dict[str, Any]]:
    if not log.exists():
        return
    with log.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("{"):
                continue  # what the server printed outside its log (start-up notices)
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _excerpt(record: dict[str, Any]) -> tuple[str, list[str]]:
    """The exception's last lines, and the innermost frames in the app's own code."""
    trace = str(record.get("exc_info") or "")
    if not trace:
        return str(record.get("message", "")), []
    lines = trace.splitlines()
    frames = []
    last_frame = -1
    for index, line in enumerate(lines):
        match = _FRAME.match(line)
        if match:
            last_frame = index
            file = match["file"]
            if "/backend/app/" in file:
                short = file.split("/backend/", 1)[1]
                frames.append(f"{short}:{match['line']} in {match['name']}")
    # After the last frame: its source line and carets (indented), then the exception.
    tail = [line for line in lines[last_frame + 1 :] if line and not line.startswith(" ")]
    return "\n".join(tail[:EXCEPTION_LINES]), frames[-APP_FRAMES:]


def _said(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else b""
    return "no traceback in the server log; the answer: " + raw[:300].decode(errors="replace")


def _body(request: dict[str, Any]) -> bytes | None:
    body = request.get("body")
    if body is None:
        return None
    if isinstance(body, dict) and "$base64" in body:
        return base64.b64decode(body["$base64"])
    return str(body).encode()


def _printable(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) > MAX_PRINTABLE_BODY or any(ord(char) < 0x20 for char in text):
        return None
    return text


def _escaped(body: bytes) -> str:
    """printf's %b escapes for every byte outside printable ASCII, and for backslash."""
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\x{byte:02x}" for byte in body
    )

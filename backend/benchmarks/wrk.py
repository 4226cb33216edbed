"""Drive one endpoint with wrk: a Lua script that cycles over many requests (each user's
token, each row's path, a JSON body for writes), and reports what it saw as one JSON line.

wrk is C and event driven: one thread keeps hundreds of connections busy for a fraction of
a core, so on a small machine it leaves the servers the CPU a Python generator would take.
"""

import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load import REQUEST_TIMEOUT, Target

MARKER = "AGENTRY_WRK "
# A phase that has not ended this long after its duration is killed and counted as stalled.
STOP_GRACE = 15.0

# The requests file holds one request per line: method, path, token, body, tab-separated.
# Each thread formats them once, at start, and then only hands them out in turn; `response`
# counts completions per second (os.time) and statuses, which `done` merges over threads.
SCRIPT = r"""
local threads = {}
local started = 0
local counter = 1

function setup(thread)
  if started == 0 then started = os.time() end
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  reqs = {}
  for line in io.lines("%(requests)s") do
    local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    reqs[#reqs + 1] = wrk.format(method, path, headers, body)
  end
  -- Threads start at different places, so no two send the same request together.
  counter = math.floor((tid - 1) * #reqs / %(threads)d) + 1
  seconds = {}
  statuses = {}
end

function request()
  local req = reqs[counter]
  counter = counter + 1
  if counter > #reqs then counter = 1 end
  return req
end

function response(status, headers, body)
  local now = os.time()
  seconds[now] = (seconds[now] or 0) + 1
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local per_second = {}
  local per_status = {}
  for _, thread in ipairs(threads) do
    for second, n in pairs(thread:get("seconds")) do
      per_second[second] = (per_second[second] or 0) + n
    end
    for status, n in pairs(thread:get("statuses")) do
      per_status[status] = (per_status[status] or 0) + n
    end
  end
  -- Whole seconds inside the run in which nothing completed.
  local stalled = 0
  for second = started + 1, started + %(duration)d - 1 do
    if (per_second[second] or 0) == 0 then stalled = stalled + 1 end
  end
  local codes = {}
  for status, n in pairs(per_status) do codes[#codes + 1] = '"' .. status .. '":' .. n end
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,' ..
    '"stalled_windows":%%d,"statuses":{%%s}}\n',
    summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    e.connect, e.read, e.write, e.status, e.timeout, stalled, table.concat(codes, ",")))
end
"""


@dataclass
class Result:
    requests: int = 0  # answered with the expected status
    seconds: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    errors: dict[str, int] = field(default_factory=dict)
    stalled_windows: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def available() -> bool:
    return shutil.which("wrk") is not None


def write_requests(path: Path, targets: list[Target]) -> None:
    lines = []
    for target in targets:
        body = json.dumps(target.body, separators=(",", ":")) if target.body else ""
        lines.append("\t".join((target.method, target.path, target.token or "", body)))
    path.write_text("\n".join(lines) + "\n")


def run(
    base_url: str,
    requests_file: Path,
    *,
    expect: int,
    connections: int,
    seconds: int,
    threads: int,
    workdir: Path,
) -> Result:
    """wrk for `seconds` on `connections` keep-alive connections over `requests_file`."""
    threads = max(1, min(threads, connections))
    script = workdir / "wrk.lua"
    script.write_text(
        SCRIPT
        % {
            "requests": requests_file.as_posix(),
            "threads": threads,
            "duration": seconds,
            "marker": MARKER,
        }
    )
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"]
    command += ["--timeout", f"{REQUEST_TIMEOUT:g}s", "--latency", "-s", str(script), base_url]
    try:
        finished = subprocess.run(  # noqa: S603 (wrk, with our own arguments)
            command, capture_output=True, text=True, timeout=seconds + STOP_GRACE, check=False
        )
    except subprocess.TimeoutExpired:
        return Result(seconds=float(seconds), errors={"stalled": connections})
    return parse(finished.stdout, expect=expect, stderr=finished.stderr)


def parse(stdout: str, *, expect: int, stderr: str = "") -> Result:
    """The marker line `done` printed; wrk's own summary above it is for people."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    raw = json.loads(lines[-1][len(MARKER) :])
    statuses: dict[str, int] = raw["statuses"]
    errors = {f"HTTP {code}": n for code, n in statuses.items() if int(code) != expect}
    for kind in ("connect", "read", "write", "timeout"):
        if raw[kind]:
            errors[kind] = raw[kind]
    return Result(
        requests=statuses.get(str(expect), 0),
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
        stalled_windows=raw["stalled_windows"],
    )

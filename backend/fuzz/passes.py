"""What each schemathesis pass sends, as the `schemathesis.toml` it runs with.

A pass fuzzes every operation as one account. Two operations end the access of whoever
calls them (`logout`, `delete_user_me`); a pass that called them early would spend the
rest of its examples on 401s, so they get a short pass of their own, after the main one.

Real ids reach the fuzzer only through the dictionaries written here, never from earlier
responses (schemathesis's `extra-data-sources` is turned off): a response would hand a
pass its own user id or session id, and a superuser that revokes its own sessions ends
its pass. The dictionaries name the seeded rows of both accounts, so that reads and
writes reach the code behind the 404 on rows the caller owns and on rows it does not.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fuzz.seed import Account, Fixture

SELF_ENDING_OPERATIONS = ("logout", "delete_user_me")
PHASES = ("examples", "coverage", "fuzzing")
# Share of the generated values a dictionary replaces: ids mostly real, so requests reach
# the rows; a referenced id (an agent's model) often unknown, to reach the foreign key.
REAL_ID = 0.8
SOMETIMES = 0.5
SELDOM = 0.3
# Which dictionary feeds which parameter, wherever an operation has it, and how often.
BINDINGS = {
    "path.agent_id": ("agents", REAL_ID),
    "body.agent_id": ("agents", REAL_ID),
    "path.thread_id": ("threads", REAL_ID),
    "path.run_id": ("runs", REAL_ID),
    "path.model_id": ("models", REAL_ID),
    "body.model_id": ("models", SOMETIMES),
    "path.user_id": ("users", REAL_ID),
    "query.owner_id": ("users", SOMETIMES),
    "path.session_id": ("sessions", REAL_ID),
    "body.refresh_token": ("refresh_tokens", SOMETIMES),
    "body.username": ("emails", SOMETIMES),
    "body.email": ("emails", SELDOM),
    "body.current_password": ("passwords", SOMETIMES),
    "body.password": ("passwords", SELDOM),
}
# Delete operations get rows of their own (seed.Fixture.doomed): deleting the rows every
# other operation reads would leave the rest of the pass nothing but 404s.
DELETES = {
    "delete_agent": ("path.agent_id", "agents"),
    "delete_thread": ("path.thread_id", "threads"),
    "delete_model": ("path.model_id", "models"),
    "delete_user": ("path.user_id", "users"),
}


@dataclass(frozen=True)
class Pass:
    name: str
    account: Account
    # Users this pass may act on through /users/{user_id}: never its own account.
    other_user_ids: Sequence[str]
    max_examples: int
    self_ending: bool  # only the operations that end the caller's access, or all others

    def filters(self) -> list[str]:
        option = "--include-operation-id" if self.self_ending else "--exclude-operation-id"
        return [part for name in SELF_ENDING_OPERATIONS for part in (option, name)]


def plan(fixture: Fixture, *, max_examples: int, final_examples: int) -> list[Pass]:
    """Both main passes, then both short ones. The superuser's pass acts on the victims'
    accounts only: the normal user keeps a working session for its last pass."""
    user, superuser = fixture.user, fixture.superuser
    accounts = (
        ("user", user, [*fixture.victim_ids, superuser.user_id]),
        ("superuser", superuser, list(fixture.victim_ids)),
    )
    main = [
        Pass(name, account, others, max_examples, self_ending=False)
        for name, account, others in accounts
    ]
    last = [
        Pass(f"{name}, last", account, others, final_examples, self_ending=True)
        for name, account, others in accounts
    ]
    return main + last


def write_config(path: Path, *, fuzz_pass: Pass, fixture: Fixture, request_timeout: float) -> None:
    account = fuzz_pass.account
    emails = [fixture.user.email, fixture.superuser.email, *fixture.victim_emails]
    dictionaries = {
        "agents": fixture.agent_ids,
        "threads": fixture.thread_ids,
        "runs": fixture.run_ids,
        "models": fixture.model_ids,
        "users": list(fuzz_pass.other_user_ids),
        "sessions": [account.spare_session_id],
        "refresh_tokens": [account.refresh_token],
        "emails": emails,
        "passwords": [account.password],
        **{f"doomed_{kind}": ids for kind, ids in fixture.doomed.items()},
    }
    lines = [
        f"# One pass of fuzz/run.py ({fuzz_pass.name}); written for this run only.",
        f"headers = {{ Authorization = {_string('Bearer ' + account.token)} }}",
        f"request-timeout = {request_timeout}",
        "",
        "[output.sanitization]",
        "enabled = false  # the run's reproductions must show the bodies that were sent",
        "",
        "[generation]",
        'database = "none"',
        "",
        "[cache]",
        "enabled = false",
    ]
    for phase in PHASES:
        lines += ["", f"[phases.{phase}.extra-data-sources]", "responses = false"]
    for name, values in dictionaries.items():
        lines += ["", f"[dictionaries.{name}]", f"values = {_array(values)}"]
    lines += ["", "[parameters]"]
    for key, (dictionary, probability) in BINDINGS.items():
        lines.append(f"{_string(key)} = {_binding(dictionary, probability)}")
    for operation, (key, kind) in DELETES.items():
        lines += ["", "[[operations]]", f"include-operation-id = {_string(operation)}"]
        lines.append(f"parameters = {{ {_string(key)} = {_binding(f'doomed_{kind}', REAL_ID)} }}")
    path.write_text("\n".join(lines) + "\n")


def _binding(dictionary: str, probability: float) -> str:
    return f"{{ dictionary = {_string(dictionary)}, probability = {probability} }}"


def _string(value: str) -> str:
    # A JSON string is a TOML basic string: the same quotes and escapes.
    return json.dumps(value)


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(_string(value) for value in values) + "]"

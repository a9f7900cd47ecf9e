"""An alert instance's states and the one function that moves them (Grafana's semantics).

    Normal --breach--> Pending (until ``for`` periods in a row breach) --> Firing
    Firing --ok--> Resolved --ok--> Normal          (Resolved --breach--> as from Normal)
    Error --ok--> Resolved
    Pending --ok--> Normal
    any --no data--> NoData (or as ok / as a breach, by the rule's ``no_data``)
    any --error--> Error (the rule could not be evaluated; the reason is stored)

Notifications: on entering Firing ("firing"), on leaving it ("resolved": for Resolved, and
for NoData with no data as the reason), and again while Firing once ``repeat_interval`` has
passed since the last one ("repeat"). Entering Error notifies once ("firing", with the error
as the reason: a broken rule must not fail silently), and leaving it for a fine period
notifies "resolved". Pending, Normal and a NoData that was not firing notify nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

State = Literal["normal", "pending", "firing", "resolved", "nodata", "error"]
Verdict = Literal["ok", "breach", "nodata", "error"]
NotifyKind = Literal["firing", "resolved", "repeat"]


@dataclass(frozen=True)
class InstanceState:
    state: State = "normal"
    breaching_periods: int = 0
    last_notified_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    after: InstanceState
    transition: tuple[State, State] | None  # (from, to) when the state changed
    notify: NotifyKind | None


def step(
    current: InstanceState,
    verdict: Verdict,
    *,
    for_periods: int,
    repeat_seconds: int,
    no_data: Literal["nodata", "ok", "alerting"],
    now: datetime,
) -> Step:
    """The state after one evaluated period with ``verdict``; what changed, whom to tell."""
    if verdict == "nodata" and no_data != "nodata":
        verdict = "ok" if no_data == "ok" else "breach"
    before = current.state
    if verdict == "error":
        after = replace(current, state="error", breaching_periods=0)
        notify: NotifyKind | None = "firing" if before != "error" else None
    elif verdict == "nodata":
        after = replace(current, state="nodata", breaching_periods=0)
        # whoever was told it fired hears that it is over (with the reason: no data)
        notify = "resolved" if before == "firing" else None
    elif verdict == "breach":
        count = current.breaching_periods + 1
        if before == "firing":
            due = current.last_notified_at is None or (
                (now - current.last_notified_at).total_seconds() >= repeat_seconds
            )
            after, notify = replace(current, breaching_periods=count), "repeat" if due else None
        elif count >= for_periods:
            after, notify = replace(current, state="firing", breaching_periods=count), "firing"
        else:
            after, notify = replace(current, state="pending", breaching_periods=count), None
    else:  # ok
        if before in ("firing", "error"):  # both were notified as firing: tell it is over
            after, notify = replace(current, state="resolved", breaching_periods=0), "resolved"
        else:
            after, notify = replace(current, state="normal", breaching_periods=0), None
    if notify is not None:
        after = replace(after, last_notified_at=now)
    changed = (before, after.state) if after.state != before else None
    return Step(after=after, transition=changed, notify=notify)

"""Write a simulation to disk: landing segments, an access log and the ground truth.

Layout under the output directory::

    landing/events/        what the collector would have landed (ingestion.core.landing);
                           or under ``landing_root`` when given (the demo uses the local
                           collector's landing directory, so both are loaded together)
    logs/access.log        the web server's combined log
    truth/sessions.csv     one row per visit (humans and bots), with channel, revenue, ...
    truth/identities.csv   visitor id -> user id, first time it identified
    truth/transactions.csv, truth/transaction_items.csv
    truth/incidents.csv    the injected incidents: kind, window, the metrics they move
    truth/summary.json     the config and the totals; written last, so its presence means done
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingestion.core.enrich import bot_reason, country_of, network_key, network_key_secret
from ingestion.core.landing import SCHEMA_VERSION, SegmentWriter, remove_segments
from ingestion.core.sites import IpPolicy
from ingestion.demo_traffic.incidents import TRUTH_FIELDS
from ingestion.demo_traffic.simulator import SimulationConfig, Simulator

TRUTH_TABLES = ["sessions", "identities", "transactions", "transaction_items"]
WRITER_ID = "sim"


class AsCollected:
    """What the collector adds to an event before landing it (``Collector.client_facts``):
    the IP reduced by the site's policy, the country of the full address and the bot flag,
    with the collector's own functions, so simulated landings are what a real one holds."""

    def __init__(self, policy: IpPolicy) -> None:
        self.policy = policy
        self.secret = network_key_secret()
        self._facts: dict[tuple[str, str], dict] = {}

    def __call__(self, record: dict) -> dict:
        key = (record["ip"], record["user_agent"])
        facts = self._facts.get(key)
        if facts is None:
            if len(self._facts) > 200_000:
                self._facts.clear()
            reason = bot_reason(record["user_agent"])
            facts = self._facts[key] = {
                "ip": self.policy.apply(record["ip"]),
                "country": country_of(record["ip"]),
                "network_key": network_key(record["ip"], record["user_agent"], self.secret),
                "bot_reason": reason,
                "is_bot": reason is not None,
                "schema_version": SCHEMA_VERSION,
            }
        return {**record, **facts}


# Bumped when what is written for the same config changes, so old outputs are not reused.
OUTPUT_VERSION = 5


def config_fingerprint(cfg: SimulationConfig) -> dict:
    fields = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(cfg).items()}
    fields["incidents"] = [incident.as_dict() for incident in cfg.incidents]
    return {**fields, "output_version": OUTPUT_VERSION}


def read_incidents(out: Path) -> list[dict]:
    """The ground truth of a written simulation's incidents (``truth/incidents.csv``)."""
    with open(Path(out) / "truth" / "incidents.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def existing_summary(out: Path) -> dict | None:
    path = Path(out) / "truth" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_simulation(
    cfg: SimulationConfig,
    out: Path,
    *,
    progress: bool = True,
    segment_events: int = 50_000,
    force: bool = False,
    landing_root: Path | None = None,
) -> dict:
    """Simulate and write; reuse what is there when the same config already completed.

    Under a shared ``landing_root`` only the simulator's own earlier segments are replaced;
    their names come back as ``replaced_segments`` so loaded copies can be deleted too.
    """
    out = Path(out)
    summary = existing_summary(out)
    if summary and summary["config"] == config_fingerprint(cfg) and not force:
        return {**summary, "reused": True}
    replaced: list[str] = []
    if landing_root is None:
        landing_root = out / "landing"
        shutil.rmtree(landing_root, ignore_errors=True)
    else:
        replaced = remove_segments(Path(landing_root) / "events", WRITER_ID)
    for sub in ("logs", "truth"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    (out / "truth").mkdir(parents=True)

    sim = Simulator(cfg)
    collected = AsCollected(IpPolicy())
    landing = SegmentWriter(
        Path(landing_root) / "events", writer_id=WRITER_ID, max_events=segment_events
    )
    truth_files = {
        name: open(out / "truth" / f"{name}.csv", "w", newline="")  # noqa: SIM115 (closed below)
        for name in TRUTH_TABLES
    }
    truth_writers: dict[str, csv.DictWriter] = {}
    expected_visits = int(cfg.visits_per_day * cfg.days)
    bar = Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("visits · {task.fields[events]:,} events"),
        TimeElapsedColumn(),
        disable=not progress,
    )
    try:
        with open(out / "logs" / "access.log", "w", buffering=1 << 20) as log, bar:
            task = bar.add_task(f"{cfg.days} days", total=expected_visits, events=0)
            for item in sim.run():
                if item.kind == "event":
                    landing.write(collected(item.data))
                elif item.kind == "log":
                    log.write(item.data + "\n")
                else:
                    writer = truth_writers.get(item.kind)
                    if writer is None:
                        writer = csv.DictWriter(truth_files[item.kind], fieldnames=list(item.data))
                        writer.writeheader()
                        truth_writers[item.kind] = writer
                    writer.writerow(item.data)
                    if item.kind == "sessions":
                        bar.update(task, advance=1, events=sim.stats["events"])
            bar.update(task, completed=sim.stats["visits"], total=sim.stats["visits"])
    finally:
        landing.close()
        for fh in truth_files.values():
            fh.close()
    with open(out / "truth" / "incidents.csv", "w", newline="") as fh:
        incidents = csv.DictWriter(fh, fieldnames=TRUTH_FIELDS)
        incidents.writeheader()
        incidents.writerows(sim.incident_truth())
    summary = {"config": config_fingerprint(cfg), "stats": sim.stats}
    (out / "truth" / "summary.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "reused": False, "replaced_segments": replaced}

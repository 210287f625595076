"""The transfers table, its target verdicts, and the JSON written to bench/results/."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.closed_loop import RunStats, WarmedRun
from bench.report import RESULTS_DIR

RAW = "raw asyncpg"
SERVICE = "service"
GRAPHQL = "graphql"
TARGETS = {SERVICE: 1000.0, GRAPHQL: 300.0}  # transfers/s on the 2-core machine


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    scenario: str
    runs: WarmedRun  # the measured run after a warm-up
    invariant_violations: int  # ledger invariants broken after the run (raw: also its table)
    totals_unchanged: bool  # the users' balances summed per currency, before == after
    recorded_as_done: bool  # transfers rows written == successes (raw: always true)
    problems: list[str]  # the first few violations, for the JSON

    @property
    def stats(self) -> RunStats:
        return self.runs.measured

    @property
    def target(self) -> float | None:
        return TARGETS.get(self.scenario)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.stats.per_second >= self.target

    @property
    def sound(self) -> bool:
        return self.invariant_violations == 0 and self.totals_unchanged and self.recorded_as_done


def ratio(rows: list[ScenarioResult], scenario: str, baseline: str) -> float:
    by_name = {r.scenario: r.stats.per_second for r in rows}
    return by_name[scenario] / by_name[baseline]


def _row(r: ScenarioResult, rows: list[ScenarioResult]) -> str:
    s = r.stats
    target = f">= {r.target:g}/s" if r.target is not None else "-"
    verdict = {None: "-", True: "met", False: "NOT MET"}[r.met]
    checks = "ok" if r.sound else "BROKEN"
    return (
        f"{r.scenario:<12}{s.completed:>7}{s.outcomes.get('insufficient', 0):>8}"
        f"{s.seconds:>8.2f}{s.per_second:>8.0f}{ratio(rows, r.scenario, RAW):>8.2f}x"
        f"{s.p50_ms:>8.2f}{s.p99_ms:>8.2f}  {target:<10}{verdict:<8}"
        f"{r.invariant_violations:>10}  {checks}"
    )


def table(rows: list[ScenarioResult]) -> str:
    head = (
        f"{'scenario':<12}{'done':>7}{'refused':>8}{'seconds':>8}{'per s':>8}{'vs raw':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}  {'target':<10}{'verdict':<8}{'violations':>10}  totals"
    )
    return "\n".join([head, "-" * len(head), *(_row(r, rows) for r in rows)])


def print_report(rows: list[ScenarioResult], *, method: dict[str, str]) -> None:
    print()
    print(table(rows))
    graphql_vs_service = ratio(rows, GRAPHQL, SERVICE)
    print(f"\ngraphql / service: {graphql_vs_service:.2f}x")
    print("\nMethod:")
    for key, text in method.items():
        print(f"  {key}: {text}")
    for r in rows:
        for problem in r.problems:
            print(f"VIOLATION {r.scenario}: {problem}")
        if not r.totals_unchanged:
            print(f"VIOLATION {r.scenario}: the users' total balance changed")
        if not r.recorded_as_done:
            print(f"VIOLATION {r.scenario}: transfers rows differ from the successes")


def write_json(name: str, *, rows: list[ScenarioResult], meta: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        **meta,
        "rows": [
            {**asdict(r), "per_second": r.stats.per_second, "target": r.target, "met": r.met}
            for r in rows
        ],
        "ratios_vs_raw": {r.scenario: ratio(rows, r.scenario, RAW) for r in rows},
        "graphql_vs_service": ratio(rows, GRAPHQL, SERVICE),
        "all_sound": all(r.sound for r in rows),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path

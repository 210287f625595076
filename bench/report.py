"""The printed table, the target verdicts, and the JSON written to bench/results/."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.load import LoadResult
from bench.scenarios import MAX_TAIL_RATIO, SCENARIOS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BEHIND_FRACTION = 0.95  # an open-loop run below this share of its asked rate is flagged


@dataclass(frozen=True, slots=True)
class Measurement:
    scenario: str
    target: str  # "graphql" or "plain"
    peak: LoadResult
    half: LoadResult

    @property
    def tail_ratio(self) -> float:
        return self.half.p99_ms / self.half.p50_ms


@dataclass(frozen=True, slots=True)
class Verdict:
    goal: str
    measured: str
    met: bool


def find(rows: list[Measurement], scenario: str, target: str) -> Measurement:
    return next(r for r in rows if r.scenario == scenario and r.target == target)


def throughput_ratio(rows: list[Measurement], scenario: str) -> float:
    return find(rows, scenario, "graphql").peak.rps / find(rows, scenario, "plain").peak.rps


def verdicts(rows: list[Measurement]) -> list[Verdict]:
    found = []
    for s in SCENARIOS:
        ratio = throughput_ratio(rows, s.name)
        goal = f"{s.name}: graphql req/s >= {s.min_ratio}x plain"
        found.append(Verdict(goal, f"{ratio:.2f}x", ratio >= s.min_ratio))
    for s in SCENARIOS:
        tail = find(rows, s.name, "graphql").tail_ratio
        goal = f"{s.name}: graphql p99 <= {MAX_TAIL_RATIO:g}x p50 at half load"
        found.append(Verdict(goal, f"{tail:.1f}x", tail <= MAX_TAIL_RATIO))
    return found


def table(rows: list[Measurement]) -> str:
    head = (
        f"{'scenario':<11}{'target':<8}| {'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'vs plain':>9} "
        f"| {'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'p99/p50':>8}"
    )
    lines = [
        f"{'':<19}| {'peak (closed loop)':<33}| half of peak (open loop)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        ratio = f"{throughput_ratio(rows, r.scenario):.2f}x" if r.target == "graphql" else "-"
        lines.append(
            f"{r.scenario:<11}{r.target:<8}| {r.peak.rps:>8.0f}{r.peak.p50_ms:>8.2f}"
            f"{r.peak.p99_ms:>8.2f}{ratio:>9} | {r.half.rps:>8.0f}{r.half.p50_ms:>8.2f}"
            f"{r.half.p99_ms:>8.2f}{r.tail_ratio:>7.1f}x"
        )
    return "\n".join(lines)


def verdict_lines(found: list[Verdict]) -> str:
    return "\n".join(
        f"  {'met    ' if v.met else 'NOT MET'}  {v.goal:<48} measured {v.measured}" for v in found
    )


def warnings(rows: list[Measurement]) -> list[str]:
    found = []
    for r in rows:
        if r.peak.errors or r.half.errors:
            found.append(
                f"{r.scenario} {r.target}: {r.peak.errors + r.half.errors} failed requests"
            )
        if r.half.rate and r.half.rps < BEHIND_FRACTION * r.half.rate:
            found.append(
                f"{r.scenario} {r.target}: the half-load run reached {r.half.rps:.0f} of "
                f"{r.half.rate:.0f} req/s asked (client or server could not keep up)"
            )
    return found


def print_report(rows: list[Measurement], *, method: dict[str, str]) -> None:
    print()
    print(table(rows))
    print("\nTargets (reported, not asserted):")
    print(verdict_lines(verdicts(rows)))
    print("\nMethod:")
    for key, text in method.items():
        print(f"  {key}: {text}")
    for line in warnings(rows):
        print(f"WARNING: {line}")


def write_json(name: str, *, rows: list[Measurement], meta: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        **meta,
        "rows": [{**asdict(r), "tail_ratio": r.tail_ratio} for r in rows],
        "ratios": {s.name: throughput_ratio(rows, s.name) for s in SCENARIOS},
        "targets": [asdict(v) for v in verdicts(rows)],
        "warnings": warnings(rows),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path

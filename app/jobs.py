"""The withdrawal worker among the periodic background jobs (``app.background``).

The app's lifespan adds it to the default jobs; tests call
``process_approved_withdrawals`` directly. WITHDRAWAL_WORKER_INTERVAL_SECONDS=0 leaves
it out (run it elsewhere, or not at all)."""

from __future__ import annotations

from app.background import PeriodicJobs
from app.wallets.withdrawal_worker import process_approved_withdrawals


def add_withdrawal_jobs(jobs: PeriodicJobs) -> PeriodicJobs:
    jobs.add(
        "withdrawal-worker",
        jobs.rt.settings.withdrawal_worker_interval_seconds,
        process_approved_withdrawals,
    )
    return jobs

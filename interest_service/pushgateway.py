"""Push one refresh run's metrics to a Prometheus Pushgateway when the run ends.

A refresh process (CronJob, RayJob, a shell) exits before Prometheus scrapes it, so its numbers go to
the Pushgateway, which Prometheus scrapes with ``honor_labels``. Every run pushes under job
``serendip_refresh`` and the grouping key ``{engine}`` (never user ids: one group per deployment).

A successful run PUTs (``push_to_gateway``): the group is replaced, including
``serendip_refresh_last_success_timestamp_seconds``. A failed run POSTs (``pushadd_to_gateway``)
without that gauge, so the last success pushed earlier stays and ``SerendipRefreshStale`` can fire.
A push that fails is logged and counted; it never fails the refresh.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

from interest_service import metrics
from interest_service.refresh import RefreshStats

log = logging.getLogger(__name__)
JOB = "serendip_refresh"
OUTCOMES = ("refreshed", "tuple", "fallback", "kept", "failed")  # InterestEngine's batch outcomes


@dataclass
class RefreshRun:
    engine: str  # "local" | "ray": the grouping key
    started_at: float  # time.time() when the run began
    stats: RefreshStats | None = None  # None when the run died before it had any
    failed_shards: int = 0
    success: bool = False


def run_registry(run: RefreshRun, finished_at: float) -> CollectorRegistry:
    """The metrics of one run, in a registry of their own (the process's registry holds other things)."""
    reg = CollectorRegistry()
    stats = run.stats or RefreshStats()
    users = Gauge(
        "serendip_refresh_last_run_users",
        "Users of the last refresh run, by outcome.",
        ["outcome"],
        registry=reg,
    )
    for outcome in OUTCOMES:
        users.labels(outcome).set(stats.outcomes.get(outcome, 0))
    Gauge(
        "serendip_refresh_last_run_selected_users",
        "Users the last run selected (missing, stale or changed records).",
        registry=reg,
    ).set(stats.selected)
    Gauge(
        "serendip_refresh_last_run_duration_seconds", "Wall time of the last refresh run.", registry=reg
    ).set(max(0.0, finished_at - run.started_at))
    Gauge(
        "serendip_refresh_last_run_timestamp_seconds",
        "Unix time at which the last refresh run ended (success or not).",
        registry=reg,
    ).set(finished_at)
    Gauge(
        "serendip_refresh_last_run_success", "1 if the last refresh run succeeded, else 0.", registry=reg
    ).set(1.0 if run.success else 0.0)
    Gauge(
        "serendip_refresh_last_run_failed_shards",
        "Shards of the last distributed run that failed after retries.",
        registry=reg,
    ).set(run.failed_shards)
    if run.success:
        Gauge(metrics.LAST_SUCCESS_NAME, metrics.LAST_SUCCESS_HELP, registry=reg).set(finished_at)
    return reg


def push_refresh_run(url: str, run: RefreshRun, *, timeout_s: float = 10.0) -> bool:
    """Push ``run``'s metrics to the Pushgateway at ``url``; False (logged, counted) when that fails."""
    finished_at = time.time()
    if run.success:
        metrics.REFRESH_LAST_SUCCESS.set(finished_at)
    push = push_to_gateway if run.success else pushadd_to_gateway
    try:
        push(
            url,
            job=JOB,
            registry=run_registry(run, finished_at),
            grouping_key={"engine": run.engine},
            timeout=timeout_s,
        )
    except Exception as exc:  # whatever the gateway does, the refresh's result stands
        metrics.PUSH_FAILURES.inc()
        log.warning("could not push refresh metrics to %s: %s: %s", url, type(exc).__name__, exc)
        return False
    return True

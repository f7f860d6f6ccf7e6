"""Keeping a lease while work runs: a heartbeat thread (train jobs and tag chunks), and the
progress callback that records the trainer's reports on a train job. Both stop training when
the lease is lost (the job was cancelled, or another attempt took it over)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from store import jobs

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls `renew` (which extends a lease) from a thread every `every` seconds while work
    runs, so that a long step — caching the frozen layers, tagging a chunk — does not look like
    a dead worker, and a worker that dies loses its lease within a lease length. `renew` raises
    jobs.LeaseLost once the work is no longer this worker's: the beat stops and `lost` is set
    (training checks it through the progress callback and stops). `what` names the work in logs.

    A live thread is not live work: a task stuck for good (a deadlock in a library, as cleanlab's
    process pool once was inside the worker) would keep its lease, and its job "running",
    forever. With `stall_after`, work that reports progress (`touch`, which LeasedReport calls
    with every training report) and then reports none for that many seconds is given up: the
    beat stops, `stalled` and `lost` are set (should the work wake, its next report stops it), and
    `on_stall` runs — for a train job, `jobs.release_train_job`, which queues it again for another
    attempt (the job's `attempts` cap still applies). The watch starts at the first `touch`: what
    comes before the first step (caching the frozen layers of every example) reports nothing."""

    def __init__(self, renew: Callable[[], None], every: float, what: str, stall_after: float | None = None,
                 on_stall: Callable[[float], None] | None = None) -> None:
        self.renew, self.every, self.what = renew, every, what
        self.stall_after, self.on_stall = stall_after, on_stall
        self.lost = self.stalled = False
        self._touched: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{what}", daemon=True)

    @classmethod
    def train(cls, job_id: str, attempt: int, every: float, stall_after: float | None = None) -> Heartbeat:
        def release(silent: float) -> None:
            jobs.release_train_job(job_id, attempt, f"no progress for {silent:.0f} s (the worker seems stuck; "
                                                    "REFTAG_TRAIN_STALL_SECONDS): given up for another attempt")
        return cls(lambda: jobs.renew_train_lease(job_id, attempt), every, job_id, stall_after, release)

    @classmethod
    def chunk(cls, job_id: str, index: int, attempt: int, every: float) -> Heartbeat:
        return cls(lambda: jobs.renew_chunk_lease(job_id, index, attempt), every, f"{job_id}/{index}")

    def touch(self) -> None:
        """The work made progress (and is watched for stalls from now on)."""
        self._touched = time.monotonic()

    def pause(self) -> None:
        """Nothing is watched until the next progress: for a phase that reports nothing before
        its first step (caching the frozen layers of the examples a comparison retrains on)."""
        self._touched = None

    def alive(self, _report: dict[str, Any] | None = None) -> None:
        """A progress callback: the report counts as progress, and a lost lease stops the work.
        LeasedReport calls it with each of the job's own reports; promotion hands it to the
        retraining of the active version's recipe, whose steps are not the job's own."""
        self.touch()
        if self.lost:
            raise jobs.LeaseLost(self.what)

    def _silent_for(self) -> float | None:
        """Seconds since the last progress, when that is past `stall_after`."""
        if self.stall_after is None or self._touched is None:
            return None
        silent = time.monotonic() - self._touched
        return silent if silent > self.stall_after else None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            silent = self._silent_for()
            if silent is not None:
                self.stalled = self.lost = True
                log.error("%s made no progress for %.0f s: giving its lease up", self.what, silent)
                try:
                    if self.on_stall is not None:
                        self.on_stall(silent)
                except Exception:  # the lease then runs out by itself, and the reconciler takes over
                    log.exception("could not give up the lease of %s", self.what)
                return
            try:
                self.renew()
            except jobs.LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: try again next beat
                log.exception("heartbeat for %s failed", self.what)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


class TrainProgress:
    """The `progress` callback for reft_core.train: keeps the latest report and a loss history,
    and writes them to the job's `detail` at most once per `interval` seconds (and always for the
    last step). Each write also extends the lease; a lost lease raises LeaseLost, which stops
    training."""

    max_history = 200

    def __init__(self, job_id: str, attempt: int, interval: float = 1.0) -> None:
        self.job_id, self.attempt, self.interval = job_id, attempt, interval
        self.latest: dict[str, Any] = {}
        self.loss_history: list[list[float]] = []  # [step, loss]
        self._last_write: float | None = None

    def __call__(self, report: dict[str, Any]) -> None:
        self.latest = {k: report.get(k) for k in ("step", "total_steps", "epoch", "epochs", "fit", "fits", "loss",
                                                  "eta_seconds")}
        if report.get("loss") is not None:
            self.loss_history.append([report["step"], round(float(report["loss"]), 6)])
        last = report.get("step") is not None and report.get("step") == report.get("total_steps")
        if last or self._last_write is None or time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def detail(self) -> dict[str, Any]:
        history = self.loss_history
        if len(history) > self.max_history:  # keep the shape of the curve, not every step
            stride = -(-len(history) // self.max_history)
            history = history[::stride] + ([history[-1]] if (len(history) - 1) % stride else [])
        return {**self.latest, "attempt": self.attempt, "loss_history": history}

    def flush(self) -> None:
        self._last_write = time.monotonic()
        jobs.renew_train_lease(self.job_id, self.attempt, self.detail())


class LeasedReport:
    """What training calls with each report: stop on a lost lease (seen by the heartbeat or by
    a progress write), otherwise record the report; a failed write is not worth a training run
    (the heartbeat keeps the lease)."""

    def __init__(self, heartbeat: Heartbeat, progress: TrainProgress) -> None:
        self.heartbeat, self.progress = heartbeat, progress

    def __call__(self, report: dict[str, Any]) -> None:
        self.heartbeat.alive(report)
        try:
            self.progress(report)
        except jobs.LeaseLost:
            raise
        except Exception:
            log.exception("could not record progress of %s", self.heartbeat.what)

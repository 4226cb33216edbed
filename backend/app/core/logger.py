"""Logging: one configuration for the app, uvicorn and workers; JSON in production.

Every record carries the id of the request it was written for, so a traceback in the
log can be found from the `request_id` a client saw in an error body.
"""

import logging
import logging.config
from contextvars import ContextVar

from app.core.config import LogFormat, Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

logger = logging.getLogger("agentry")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(config: Settings) -> None:
    if config.log_format is LogFormat.JSON:
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s",
        }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "default": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "filters": ["request_id"],
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["default"], "level": config.LOG_LEVEL.upper()},
            "loggers": {
                # Our own request line replaces uvicorn's access log, which would print
                # raw query strings.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
            },
        }
    )

"""Process-wide logging: one line per event, ``key=value`` text or JSON.

Messages carry identifiers (order id, accession number, HL7 control id, SOP instance UID, AE
title) so one order can be followed through every process; patient names, IDs and birth dates are
never logged at INFO or above.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from ris.settings import Settings

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Alembic narrates every schema check at INFO; ris.bootstrap logs the migrations that matter.
    # pynetdicom narrates every association and DIMSE message; dimse logs one line per query.
    for chatty in ("alembic", "pynetdicom"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))

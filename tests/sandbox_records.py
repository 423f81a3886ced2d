"""What the sandbox holds, counted by kind straight from its store (a read-only look at the server's database)."""

from __future__ import annotations

import sqlite3
from collections import Counter

#: What a failed or retried operation could leave behind.
KINDS = ("cell_measurement", "measurement_upload", "pipeline", "simple_pipeline", "simulation",
         "experiment_template", "study", "study_link", "cell_specification", "cell_instance", "parameterized_model")


def records(sandbox, kinds: tuple[str, ...] = KINDS) -> Counter:
    """The sandbox's records of ``kinds``, counted by kind."""
    with sqlite3.connect(f"file:{sandbox.data_dir / 'sandbox.db'}?mode=ro", uri=True) as db:
        rows = db.execute(f"SELECT kind, COUNT(*) FROM records WHERE kind IN ({','.join('?' * len(kinds))}) "
                          "GROUP BY kind", kinds).fetchall()
    return Counter(dict(rows))

"""The run directory: a documented contract, written so that a killed run loses nothing.

Layout of ``--out DIR``::

    config.json       resolved configuration, package/torch versions, seed
    metrics.csv       one row per step, appended (and flushed) as the run goes
    diagnostics.csv   edge-coupling diagnostics every --diagnose-every steps
    summary.json      status (running, completed, diverged, interrupted, failed) and results
    plots/            PNG figures
    checkpoints/      ckpt-<step>.pt + ckpt-<step>.json (sha256), the last few kept
    params_final.pt   final flat parameter vector
    .eoskit.lock      advisory lock (flock) held by the process running the run
    .eoskit-owner.json  the directory's kind: run, flows, monitor or sweep

``eoskit flow``, a Monitor's ``out=`` and ``eoskit sweep`` write their own files
under the same rules (:mod:`eoskit.store.rundir`): one owner record, one lock,
and no kind of directory is taken over by another.

JSON files and checkpoints are written atomically (temporary file, fsync,
rename); checkpoints carry a SHA-256 checksum, so a corrupted or truncated
one is detected and the previous good one is used. Each checkpoint also
records the configuration's digest and snapshots of the tables, so a resume
refuses an edited config.json and puts the tables back to what it covers.
"""

from eoskit.store.checkpoints import (
    CheckpointError,
    CheckpointWarning,
    load_latest_checkpoint,
    save_checkpoint,
)
from eoskit.store.files import atomic_write_bytes, clean_json, dumps_json, read_json, write_json
from eoskit.store.history import (
    changed_keys,
    check_config,
    config_digest,
    repair_tables,
    restore_table,
    snapshot_table,
    table_record,
)
from eoskit.store.rundir import (
    KINDS,
    RunDirError,
    RunLock,
    check_owner,
    claim,
    clear_run,
    discard,
    finished_summary,
    mark_failed,
    owner_of,
    present,
    record_owner,
    run_files,
)
from eoskit.store.statuses import FINAL_STATUSES, STATUSES
from eoskit.store.tables import CsvLog, column, format_cell, parse_cell, read_csv, read_rows

__all__ = [
    # run statuses
    "STATUSES", "FINAL_STATUSES",
    # atomic files and JSON
    "atomic_write_bytes", "clean_json", "dumps_json", "read_json", "write_json",
    # tables
    "CsvLog", "format_cell", "parse_cell", "read_csv", "read_rows", "column",
    # checkpoints
    "save_checkpoint", "load_latest_checkpoint", "CheckpointError", "CheckpointWarning",
    # one owner, one history
    "RunLock", "RunDirError", "KINDS", "run_files", "present", "owner_of", "check_owner",
    "claim", "record_owner", "clear_run", "discard", "mark_failed", "finished_summary",
    "config_digest", "changed_keys", "check_config", "snapshot_table", "restore_table",
    "table_record", "repair_tables",
]

"""Old home of the recorder and the events reader; both live in `harness.runfolder` now, with the
rest of the run folder's layout. Kept so that existing imports go on working."""

from __future__ import annotations

__all__ = [
    "AZURE_LOG",
    "EVENTS_FILE",
    "SUMMARY_FILE",
    "Recorder",
    "RecorderError",
    "read_events",
    "write_summary",
]

from harness.runfolder import AZURE_LOG, Recorder, RecorderError, read_events, write_summary
from harness.runfolder import EVENTS as EVENTS_FILE
from harness.runfolder import SUMMARY as SUMMARY_FILE

"""Reports from the study storage alone: ``report.md``, ``results.csv``, ``report.json`` and PNG
curves."""

from ._write import (
    build_best,
    build_report,
    report_lock,
    write_report,
    write_report_json,
    write_results_csv,
)
from .tables import trials_frame, variants_frame

__all__ = ["build_best", "build_report", "report_lock", "trials_frame", "variants_frame", "write_report",
           "write_report_json", "write_results_csv"]

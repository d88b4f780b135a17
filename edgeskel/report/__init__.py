"""Reports: one question per device — did each (backend, precision) variant meet the gates?"""

from edgeskel.report.roofline import roofline_ms
from edgeskel.report.schema import make_variant_entry, validate_report
from edgeskel.report.writers import print_report, render_html, render_markdown, write_reports

__all__ = ["make_variant_entry", "print_report", "render_html", "render_markdown", "roofline_ms",
           "validate_report", "write_reports"]

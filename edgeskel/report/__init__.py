"""Reports: one question per device — did each (backend, precision) variant meet the gates?"""

from edgeskel.report.console import print_report
from edgeskel.report.html import render_html
from edgeskel.report.markdown import render_markdown
from edgeskel.report.roofline import roofline_ms
from edgeskel.report.schema import make_variant_entry, validate_report
from edgeskel.report.writers import write_reports

__all__ = ["make_variant_entry", "print_report", "render_html", "render_markdown", "roofline_ms",
           "validate_report", "write_reports"]

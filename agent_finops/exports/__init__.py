"""Exports for finance: cost events as CSV or JSON with reconciliation fields and GL codes.

`write_export(ledger, out, start=, end=, fmt="csv", rules=AllocationRules, gl=GLMapping)`
streams the events of a range (constant memory), allocated by chargeback rules when given,
each row with its run/span ids, tags, GL code, policy version, price source and version,
raw and allocated cost. The same ledger and range give the same bytes.
`agent-finops export` runs it, with a progress line on a terminal.
"""

from agent_finops.exports._export import (
    EXPORT_COLUMNS,
    UNPRICED_RULE,
    ExportFormat,
    Progress,
    export_rows,
    write_export,
)
from agent_finops.exports._gl import GLMapping, GLRule, load_gl_mapping
from agent_finops.exports._progress import terminal_progress

__all__ = [
    "write_export",
    "export_rows",
    "EXPORT_COLUMNS",
    "UNPRICED_RULE",
    "ExportFormat",
    "Progress",
    "terminal_progress",
    "GLMapping",
    "GLRule",
    "load_gl_mapping",
]

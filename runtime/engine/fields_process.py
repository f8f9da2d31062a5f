"""proc.* and thread.* fields added for Falco's public rules:
process identity, environment, executable flags and inode times, capabilities.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.
"""

from __future__ import annotations

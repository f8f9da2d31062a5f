"""fd.* fields added for Falco's public rules:
connection state, raw names, ip/port either end, resolved names.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.
"""

from __future__ import annotations

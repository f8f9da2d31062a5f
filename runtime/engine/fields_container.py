"""container.* and k8s.* fields from the container runtime's metadata:
Docker's API; the CRI's pod labels.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.
"""

from __future__ import annotations

"""The shared core both sides stand on: the build service (`driverkit`) and the host side
(`runtime`: loader and rt-engine) import it; it imports neither.

It holds what the two sides must agree on: errors and their one exit-code registry, kernel
release parsing, artifact naming, and the libbpf bindings. It depends only on the standard
library, so the host side installs without the build side's docker and jinja2.
"""

"""The driver loader: identify the host, choose a driver, fetch and verify it (issue 10).

identify.py (host facts from files under a host root) -> target.py (target id and artifact
names, through drivercore.targets) -> choose.py (ordered candidates with reasons) ->
fetch.py (repositories, signed index, cache) -> install.py (the steps in order, the
init-container hand-over) -> cli.py (`rt-engine driver ...`) and autosource.py
(`rt-engine run --driver auto`). handover.py is the engine container's side of the
hand-over; build.py the `--allow-build` fallback (driverkit as a subprocess).
"""

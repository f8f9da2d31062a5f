"""Falco's rule language for syscall events: load, compile, index and format rules.

Public API (what the engine calls; names are stable):

    from runtime.engine.rules import (
        ENGINE_VERSION, CompiledRule, Priority, RuleLoadError, Ruleset, load_rules,
    )
    from runtime.engine.state import REQUIRED_SYSCALLS, SystemState

    ruleset = load_rules([Path("rules.yaml"), ...], extra_texts=[("inline.yaml", text)])
        # Files load in order (later files override/append earlier items), then the
        # extra_texts, each a (display name, YAML text) pair. Raises RuleLoadError (exit_code
        # 40) whose one-line message names FILE:LINE:COL, the item and, for conditions,
        # the offset in the condition. ruleset.warnings lists non-fatal findings (unused
        # macros/lists) as strings.
    ruleset.rules                 # tuple[CompiledRule, ...]: enabled rules, in load order
    ruleset.rules_for("openat")   # Sequence[CompiledRule]: only rules that can match that
                                  # event type (rules without an evt.type constraint too)
    ruleset.required_syscalls()   # set[str]: event types the enabled rules need; add
                                  # state.REQUIRED_SYSCALLS for the in-kernel filter
    ruleset.needs_all_events      # True if some rule has no evt.type constraint (then the
                                  # driver must not filter by syscall at all)
    ruleset.match(ev, state)      # FAST PATH: tuple of matching CompiledRules (load order),
                                  # usually (); one generated function per event type with
                                  # evt.type checks folded. Same answers as rules_for+match,
                                  # ~2.5x cheaper with 100 rules (measured), as one call
                                  # tests every rule and shares the fd/thread lookups.
    ruleset.dispatcher("openat")  # that generated function itself, None when no rule can
                                  # match the type (the engine caches one per type)
    ruleset.filtered(min_priority)  # Ruleset of the rules with priority <= min_priority

    rule.name, rule.priority (Priority), rule.tags (tuple[str, ...]), rule.source ("syscall"),
    rule.desc, rule.output (the raw output template)
    rule.match(ev, state) -> bool
    rule.format_output(ev, state) -> (line, output_fields)
        # `%field` / `%field[arg]` / `%{field}` substituted; missing values are "<NA>";
        # output_fields maps each field name as written (e.g. "proc.aname[2]") to its value
        # (str, int, or None for missing), Falco's JSON `output_fields`.

    Priority is an IntEnum in Falco's order: EMERGENCY=0 (most severe) ... DEBUG=7.
    `rule.priority <= min_priority` keeps an alert for `--min-priority`.
    Priority.parse("warning" | "WARNING" | "info" ...) -> Priority (ValueError if unknown);
    Priority.falco_name -> "Warning" (the spelling Falco writes in its JSON output).

    state = SystemState(          # bounded process/fd tables; all arguments optional:
        proc_fallback_root="/proc",   # live only: read /proc for a pid first seen mid-run
        cgroup_root="/sys/fs/cgroup", # live only: event cgroup_id -> container on execve
    )                             # (replay: leave both None)
    state.seed_from_proc("/proc") # returns the number of threads seeded; sockets are
                                  # described from <root>/net/{tcp,udp,raw}{,6} and unix
    state.update(ev)              # call for EVERY event, BEFORE matching it: exec/clone/open
                                  # effects must be visible to the rules; close/exit removals
                                  # are deferred to the next update() so the closing/exiting
                                  # event still resolves its fd/process.
    state.thread(tid) -> ThreadInfo | None;  state.fd(pid, fd) -> FdInfo | None

Event parameter conventions assumed (Falco's names): execve/execveat exit carry `filename`
(path executed), `exe` (argv[0]), `args` (argv[1:], list[str]), `cwd`, `trusted_exepath`
(the exe file's path as the kernel resolved it, proc.exepath when present); open family carry
`name`, `flags` (raw O_* int), `mode`, `dirfd`, fd = res; connect/accept carry `fd` (accept:
the new fd is res), `tuple` "cip:cport->sip:sport"; clone family res = child tid in the
parent (0 in the child).
"""

from __future__ import annotations

from runtime.engine.rules.errors import RuleLoadError
from runtime.engine.rules.loader import ENGINE_VERSION, load_rules
from runtime.engine.rules.priority import Priority
from runtime.engine.rules.ruleset import CompiledRule, Ruleset

__all__ = [
    "ENGINE_VERSION",
    "CompiledRule",
    "Priority",
    "RuleLoadError",
    "Ruleset",
    "load_rules",
]

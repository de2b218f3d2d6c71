"""The stages of a run that are not migrations: hooks, node waits, pauses and confirmations
(rolling maintenance: drain, `before` hook, wait until the node is back, `after` hook, bring
the guests home; a pause or a question between nodes).

A hook that fails and a node that does not come back stop the run (no new migration starts);
a hook that succeeded in the run being resumed is not run again. Imports: the standard library,
`pvetool.model`, `pvetool.journal_records` and the `pvetool.executor` siblings.
"""

from __future__ import annotations

from pvetool.executor.context import RunContext
from pvetool.executor.hooks import wait_node_online
from pvetool.journal_records import Hook, WaitNode
from pvetool.model import HookResult, NodeWaitResult, Stage
from pvetool.model.events import HookFinished, HookStarted, NodeWaited, Notice

__all__ = ["confirm", "pause", "run_hook", "wait_for_node"]

DEFAULT_NODE_WAIT_S = 1800.0


def run_hook(ctx: RunContext, index: int, stage: Stage) -> None:
    """Run the stage's hook command with ``PVETOOL_NODE``, ``PVETOOL_HOOK`` and
    ``PVETOOL_RUN_ID`` set; a failure stops the run."""
    if ctx.resume is not None and index in ctx.resume.hooks_done:
        done = HookResult(index, stage.label, stage.node, stage.argv, 0, skipped=True)
        ctx.hooks.append(done)
        ctx.emit(HookFinished(done))
        return
    env = dict(ctx.options.hook_env)
    env["PVETOOL_HOOK"] = stage.label
    env["PVETOOL_RUN_ID"] = ctx.run_id
    if stage.node:
        env["PVETOOL_NODE"] = stage.node
    ctx.write(Hook(index, stage.label, stage.node, stage.argv, "start"))
    ctx.emit(HookStarted(index, stage.label, stage.node, stage.argv))
    outcome = ctx.deps.hook_runner(stage.argv, env, stage.timeout_s)
    result = HookResult(
        stage_index=index,
        label=stage.label,
        node=stage.node,
        argv=stage.argv,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        duration_s=outcome.duration_s,
        output_tail=outcome.output_tail,
        error=outcome.error,
    )
    ctx.hooks.append(result)
    ctx.write(
        Hook(
            index,
            stage.label,
            stage.node,
            stage.argv,
            "end",
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            duration_s=round(outcome.duration_s, 3),
            output=outcome.output_tail[-500:],
            error=outcome.error,
        )
    )
    ctx.emit(HookFinished(result))
    if not result.ok:
        ctx.stop(f"hook '{stage.label}' on {stage.node or 'the cluster'} {result.reason}")


def wait_for_node(ctx: RunContext, index: int, stage: Stage) -> None:
    """Wait until the stage's node is online and the cluster quorate; if not, stop the run."""
    node = stage.node or ""
    ok, waited, reason = wait_node_online(
        ctx.api.cluster_status,
        node,
        stage.timeout_s or DEFAULT_NODE_WAIT_S,
        poll_s=ctx.options.node_poll_s,
        sleep=ctx.deps.sleep,
        clock=ctx.deps.clock,
        should_stop=lambda: ctx.interrupts() > 0,
    )
    result = NodeWaitResult(index, node, ok, waited, reason)
    ctx.waits.append(result)
    ctx.write(WaitNode(index, node, ok, round(waited, 3), reason))
    ctx.emit(NodeWaited(result))
    if not ok:
        ctx.stop(reason)


def confirm(ctx: RunContext, stage: Stage) -> None:
    """Ask the operator before going on (rolling maintenance's ``confirm_between``)."""
    ask = ctx.deps.confirm
    if ask is None or not ask(stage.label):
        ctx.stop(f"not confirmed: {stage.label}")


def pause(ctx: RunContext, seconds: float) -> None:
    """Wait `seconds` between nodes (Ctrl-C ends the pause)."""
    if seconds <= 0:
        return
    ctx.emit(Notice(f"pausing for {seconds:g} s"))
    clock, sleep = ctx.deps.clock, ctx.deps.sleep
    deadline = clock() + seconds
    while clock() < deadline and ctx.interrupts() == 0:
        sleep(min(ctx.options.tick_s * 5, deadline - clock()))

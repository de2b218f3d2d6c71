"""The stages of a run that are not migrations: hooks, node waits, pauses and confirmations
(rolling maintenance: drain, `before` hook, wait until the node is back, `after` hook, bring
the guests home; a pause or a question between nodes).

A hook that fails and a node that does not come back stop the run (no new migration starts);
a hook that succeeded in the run being resumed is not run again.

A `before` hook takes its node down (a reboot, an upgrade). Whatever the failure policy, it is
not run while a guest that the drain before it was meant to move off the node is still there
(`Stage.require_drained`, the plan's ``require_drained``, on by default): ``on_failure:
continue`` carries on with the other *moves*, it never reboots a node under a running guest.
The cluster is read first; if a guest is still there (or the cluster cannot be read), the hook
is reported not run and the roll stops, naming the guests and what to do next.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.waiting`,
`pvetool.journal_records` and the `pvetool.executor` siblings.
"""

from __future__ import annotations

from pvetool.errors import PvetoolError
from pvetool.executor.context import RunContext
from pvetool.executor.hooks import wait_node_online
from pvetool.journal_records import Hook, WaitNode
from pvetool.model import Guest, HookResult, NodeWaitResult, Stage
from pvetool.model.events import HookFinished, HookStarted, NodeWaited, Notice
from pvetool.waiting import is_transient_read, wait_until

__all__ = ["confirm", "pause", "run_hook", "wait_for_node"]

DEFAULT_NODE_WAIT_S = 1800.0


def run_hook(ctx: RunContext, index: int, stage: Stage) -> None:
    """Run the stage's hook command with ``PVETOOL_NODE``, ``PVETOOL_HOOK`` and
    ``PVETOOL_RUN_ID`` set (and the credentials when the plan passes them); a failure, or a
    `before` hook whose node still holds guests that were meant to leave, stops the run."""
    if ctx.resume is not None and index in ctx.resume.hooks_done:
        done = HookResult(index, stage.label, stage.node, stage.argv, 0, skipped=True)
        ctx.hooks.append(done)
        ctx.emit(HookFinished(done))
        return
    if stage.require_drained:
        refusal = guests_left(ctx, index, stage)
        if refusal is not None:
            _not_run(ctx, index, stage, refusal)
            return
    env = dict(ctx.options.hook_env)
    if stage.pass_credentials:
        env.update(ctx.options.hook_credentials)
    env["PVETOOL_HOOK"] = stage.label
    env["PVETOOL_RUN_ID"] = ctx.run_id
    if stage.node:
        env["PVETOOL_NODE"] = stage.node
    ctx.write(Hook(index, stage.label, stage.node, stage.argv, "start"))
    ctx.emit(HookStarted(index, stage.label, stage.node, stage.argv))
    outcome = ctx.deps.hook_runner(stage.argv, env, stage.timeout_s)
    redact = ctx.options.redact
    result = HookResult(
        stage_index=index,
        label=stage.label,
        node=stage.node,
        argv=stage.argv,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        duration_s=outcome.duration_s,
        output_tail=redact(outcome.output_tail),
        error=redact(outcome.error),
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
            output=result.output_tail[-500:],
            error=result.error,
        )
    )
    ctx.emit(HookFinished(result))
    if not result.ok:
        ctx.stop(f"hook '{stage.label}' on {stage.node or 'the cluster'} {result.reason}")


def meant_to_leave(ctx: RunContext, index: int, node: str) -> set[int]:
    """The guests the migrate stages of `node` before stage `index` move off it, since the
    node was last waited for (the `before` hook follows its drain; an `after` hook follows the
    wait for the node, so nothing is meant to have left then)."""
    vmids: set[int] = set()
    for stage in reversed(ctx.plan.stages[:index]):
        if stage.node != node:
            continue
        if stage.kind == "wait-node":
            break
        if stage.kind == "migrate":
            vmids |= {m.vmid for m in stage.moves if m.source == node}
    return vmids


def guests_left(ctx: RunContext, index: int, stage: Stage) -> str | None:
    """Why the hook must not run: guests meant to leave its node are still there (or where
    they are cannot be read); None when the node holds none of them."""
    node = stage.node
    if not node:
        return None
    meant = meant_to_leave(ctx, index, node)
    if not meant:
        return None
    try:
        resources = wait_until(
            lambda: ctx.api.cluster_resources("vm"),
            lambda _answer: True,
            timeout_s=ctx.options.settle_timeout_s,
            poll_s=ctx.options.node_poll_s,
            clock=ctx.deps.clock,
            sleep=ctx.deps.sleep,
            transient=is_transient_read,
        )
    except PvetoolError as exc:
        return (
            f"not run: whether the guests meant to leave {node} have left could not be read "
            f"({exc}); nothing was done to {node}. Check that {node} holds no running guest, "
            f"then run the plan again"
        )
    guests = resources.guests if resources is not None else ()
    left = sorted((g for g in guests if g.vmid in meant and g.node == node), key=lambda g: g.vmid)
    if not left:
        return None
    return _left_message(node, left)


def _left_message(node: str, left: list[Guest]) -> str:
    names = ", ".join(f"{g.vmid} ({g.name})" if g.name else str(g.vmid) for g in left)
    one = len(left) == 1
    return (
        f"not run: {'guest' if one else 'guests'} {names} {'is' if one else 'are'} still on "
        f"{node}, though the plan moves {'it' if one else 'them'} off first; the hook would take "
        f"{'it' if one else 'them'} down with {node}. Next: move {'it' if one else 'them'} off "
        f"{node} (or fix what stopped the move) and run the plan again, or bring back the guests "
        f"that did leave with `pvetool undrain {node}`. (A hook that may run with guests left "
        "on its node says `require_drained: false` in the plan.)"
    )


def _not_run(ctx: RunContext, index: int, stage: Stage, refusal: str) -> None:
    """The hook was refused before it ran: reported as a failed hook, and the run stops."""
    result = HookResult(index, stage.label, stage.node, stage.argv, None, error=refusal)
    ctx.hooks.append(result)
    ctx.write(Hook(index, stage.label, stage.node, stage.argv, "end", error=refusal))
    ctx.emit(HookFinished(result))
    ctx.stop(f"{stage.label} on {stage.node} {refusal}")


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

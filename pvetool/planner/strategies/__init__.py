"""Strategies: each reads the cluster and the plan and emits moves with reasons.

`drain` (empty nodes), `rebalance` (even out load), `explicit` (vmid -> node, also used to bring
guests home and to undo a drain). Rolling maintenance is a sequence of drain and explicit stages
assembled by `pvetool.planner.build`. Strategies only plan: the sequencer orders the moves.
"""

from pvetool.planner.strategies.common import StagePlanner
from pvetool.planner.strategies.drain import plan_drain
from pvetool.planner.strategies.explicit import Wanted, plan_moves
from pvetool.planner.strategies.rebalance import plan_rebalance

__all__ = ["StagePlanner", "Wanted", "plan_drain", "plan_moves", "plan_rebalance"]

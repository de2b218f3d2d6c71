"""`pvetool completion bash|zsh|fish`: the shell completion script, and where pvetool's
arguments get their dynamic values (node names, VMIDs, plan files: `pvetool.cli.complete`).

The script is click's own: the shell calls ``pvetool`` again with ``_PVETOOL_COMPLETE`` set,
and click answers with the candidates for the word being completed.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem, get_completion_class

from pvetool.cli.complete import complete_node, complete_plan_file, complete_vmid
from pvetool.cli.group import cli

__all__ = ["attach_completions", "completion_cmd"]

_INSTALL = {
    "bash": "pvetool completion bash > ~/.local/share/bash-completion/completions/pvetool",
    "zsh": "pvetool completion zsh > ~/.zfunc/_pvetool   # with fpath+=~/.zfunc before compinit",
    "fish": "pvetool completion fish > ~/.config/fish/completions/pvetool.fish",
}


@cli.command("completion")
@click.argument("shell", type=click.Choice(sorted(_INSTALL)))
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL. It completes commands, options, node names,
    VMIDs and plan files (node names and VMIDs from a cache refreshed at most once a minute;
    a TAB never waits for the cluster more than a second).

    \b
    Install:
      pvetool completion bash > ~/.local/share/bash-completion/completions/pvetool
      pvetool completion zsh > ~/.zfunc/_pvetool     # fpath+=~/.zfunc before compinit
      pvetool completion fish > ~/.config/fish/completions/pvetool.fish
    Or for this shell only:  eval "$(pvetool completion bash)"
    """
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the choice allows only click's shells
        raise click.BadParameter(f"no completion for {shell}")
    click.echo(cls(cli, {}, "pvetool", "_PVETOOL_COMPLETE").source())


_NODE_PARAMS = {"node", "nodes", "target", "targets"}
Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def attach_completions(group: click.Group) -> None:
    """Dynamic values for the arguments that name nodes, guests and plan files, on every
    command (without touching each command's declaration)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            attach_completions(command)
            continue
        for param in command.params:
            complete: Completer
            if param.name in _NODE_PARAMS:
                complete = complete_node
            elif param.name == "vmid":
                complete = complete_vmid
            elif param.name == "file" and group.name == "plan":
                complete = complete_plan_file
            else:
                continue
            # click keeps a parameter's `shell_complete=` here; set after declaration instead
            param._custom_shell_complete = complete

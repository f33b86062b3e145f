"""The `gefyra` command line: kubectl-style flags over :class:`gefyra.Gefyra`.

The orchestrator, the API and their clients (kubernetes_asyncio, aiodocker) are imported inside
the commands that need them: `gefyra version` and `--help` start several times faster that way."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gefyra import __version__, errors
from gefyra.core.config import Settings

if TYPE_CHECKING:
    from gefyra._gefyra import Gefyra
    from gefyra.core.bus import Event

T = TypeVar("T")

def _show_progress(event: Event) -> None:
    from gefyra.core.bus import EventKind

    symbols = {EventKind.STEP_DONE: "✓", EventKind.STEP_SKIPPED: "=", EventKind.STEP_FAILED: "✗",
               EventKind.STEP_UNDONE: "↺", EventKind.STEP_STARTED: "…", EventKind.PROGRESS: " "}
    if event.kind not in symbols:
        return  # facts connect the steps; they are not news for the user
    text = event.message
    if event.kind is EventKind.STEP_SKIPPED:
        text += " (already done)"
    elif event.kind is EventKind.STEP_FAILED:
        return  # the error itself is printed once, at the end
    elif event.kind is EventKind.STEP_UNDONE:
        text = f"undone: {text}"
    click.echo(f"{symbols[event.kind]} {text}", err=True)


def _execute(ctx: click.Context, operation: Callable[[Gefyra], Awaitable[T]]) -> T:
    """Runs an async operation with progress on stderr; errors become one line and an exit code."""
    import anyio

    from gefyra import logs
    from gefyra._gefyra import Gefyra

    logs.configure(ctx.obj["log_format"], ctx.obj["verbose"])
    settings: Settings = ctx.obj["settings"]

    async def main() -> T:
        async with Gefyra(settings) as g:
            if not ctx.obj["quiet"]:
                g.bus.subscribe(_show_progress)
            return await operation(g)

    try:
        return anyio.run(main)
    except errors.GefyraError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; what was begun has been undone", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, the traceback only with -v
        if ctx.obj["verbose"]:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}; rerun with -v and report it", err=True)
        sys.exit(70)


def _plain(data: Any) -> Any:
    """Dataclasses (and lists of them) as plain data, for JSON."""
    import dataclasses

    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dataclasses.asdict(data)
    if isinstance(data, (list, tuple)):
        return [_plain(d) for d in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def _emit(data: Any, output: str | None, human: Callable[[Any], str]) -> None:
    click.echo(json.dumps(_plain(data), indent=2) if output == "json" else human(data))


output_option = click.option("-o", "--output", type=click.Choice(["json"]), help="Print data as JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path of the kubeconfig file.")
@click.option("--context", help="The kubeconfig context to use.")
@click.option("--runtime", envvar="GEFYRA_RUNTIME", metavar="NAME",
              help="Container runtime: docker, podman, or one a plugin provides (default: auto-detect).")
@click.option("--client-id", envvar="GEFYRA_CLIENT_ID", help="This machine's name in the cluster.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", help="Log format (stderr).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens in detail.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.version_option(__version__, "--version", prog_name="gefyra")
@click.pass_context
def main(ctx: click.Context, kubeconfig: str | None, context: str | None, runtime: str | None,
         client_id: str | None, log_format: str, verbose: bool, quiet: bool) -> None:
    """Run a local container as if it were a pod of a Kubernetes cluster."""
    settings = Settings(kubeconfig=kubeconfig, context=context, runtime=runtime)
    if client_id:
        settings.client_id = client_id
    ctx.obj = {"settings": settings, "quiet": quiet, "verbose": verbose, "log_format": log_format}


@main.command()
@click.option("--host", help="Address at which this machine reaches the cluster's nodes (default: the API server's host).")
@click.option("--port", type=int, default=31820, help="UDP NodePort of stowaway.")
@click.option("--service-cidr", help="The cluster's Service range (default: discovered).")
@click.option("--pod-cidr", "pod_cidrs", multiple=True, help="A pod range (default: from the nodes). Repeatable.")
@click.option("--timeout", type=float, default=120, help="Seconds to wait for the cluster side.")
@click.option("--client-timeout", type=click.IntRange(min=10), default=60,
              help="Seconds of silence after which the cluster drops a client and its bridges (set at install).")
@output_option
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int, service_cidr: str | None, pod_cidrs: tuple[str, ...],
       timeout: float, client_timeout: int, output: str | None) -> None:
    """Connect this machine to the cluster (installs gefyra's cluster side if needed)."""
    settings: Settings = ctx.obj["settings"]
    settings.host, settings.port, settings.timeout, settings.client_timeout = host, port, timeout, client_timeout
    settings.service_cidr, settings.pod_cidrs = service_cidr, list(pod_cidrs)
    result = _execute(ctx, lambda g: g.up())
    _emit(result, output, lambda r: f"connected: client {r.client} at {r.cluster.client.address if r.cluster.client else '?'}")


@main.command()
@output_option
@click.pass_context
def down(ctx: click.Context, output: str | None) -> None:
    """Remove everything gefyra made, locally and in the cluster."""
    removed = _execute(ctx, lambda g: g.down())
    _emit(removed, output, lambda r: "removed: " + ", ".join(r) if r else "nothing to remove")


def _key_value(items: tuple[str, ...], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        result[key] = value
    return result


def _ports(items: tuple[str, ...]) -> dict[str, int]:
    result = {}
    for item in items:
        host, sep, container = item.partition(":")
        if not sep or not host.isdigit() or not container.split("/")[0].isdigit():
            raise click.BadParameter(f"{item!r} is not HOSTPORT:CONTAINERPORT", param_hint="-p")
        result[container if "/" in container else f"{container}/tcp"] = int(host)
    return result


@main.command()
@click.option("-i", "--image", required=True, help="Image of the local container.")
@click.option("-N", "--name", required=True, help="Name of the local container.")
@click.option("-n", "--namespace", default="default", help="The cluster namespace it acts in.")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE environment variable. Repeatable.")
@click.option("--env-from", help="Copy the environment of deploy/NAME[/CONTAINER] (or pod/, sts/).")
@click.option("-v", "--volume", "volumes", multiple=True, help="HOST:CONTAINER bind mount. Repeatable.")
@click.option("-p", "--port", "ports", multiple=True, help="HOSTPORT:CONTAINERPORT to publish. Repeatable.")
@click.option("--command", help="Command to run instead of the image's default (shell syntax).")
@click.option("-d", "--detach", is_flag=True, help="Return once started instead of streaming the output.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it stops.")
@click.pass_context
def run(ctx: click.Context, image: str, name: str, namespace: str, env: tuple[str, ...], env_from: str | None,
        volumes: tuple[str, ...], ports: tuple[str, ...], command: str | None, detach: bool, auto_remove: bool) -> None:
    """Run a local container inside the cluster's network."""
    import shlex

    from gefyra.core.localrun import RunRequest

    request = RunRequest(image=image, name=name, namespace=namespace, env=_key_value(env, "-e"),
                         env_from=env_from, volumes=list(volumes), ports=_ports(ports),
                         command=shlex.split(command) if command else None, auto_remove=auto_remove)

    import anyio

    async def operation(g: Gefyra) -> int:
        info = await g.run(request)
        if detach:
            click.echo(info.name)
            return 0
        runtime = await g.orchestrator.engine()
        try:
            async for line in runtime.follow_logs(info.name):
                click.echo(line, nl=False)
            try:
                return await runtime.wait_container(info.name)
            except errors.NotFoundError:  # --rm: already gone
                return 0
        except BaseException:  # Ctrl-C stops (and removes) the container
            with anyio.CancelScope(shield=True):
                await runtime.remove_container(info.name)
            raise

    sys.exit(_execute(ctx, operation))


@main.command()
@click.option("-N", "--name", "local", required=True, help="The local container (started with `gefyra run`).")
@click.option("-n", "--namespace", default="default", help="Namespace of the target.")
@click.option("--target", required=True, help="deploy/NAME[/CONTAINER], pod/NAME[/CONTAINER] or sts/NAME[/CONTAINER].")
@click.option("-p", "--port", "ports", multiple=True, required=True, help="REMOTE:LOCAL container ports. Repeatable.")
@click.option("--interceptor", metavar="NAME",
              help="What takes the target container's place (default: nginx), or one a plugin provides.")
@click.option("--timeout", type=float, default=60, help="Seconds to wait until the bridge carries traffic.")
@click.option("--no-wait", is_flag=True, help="Return once the bridge is requested.")
@output_option
@click.pass_context
def bridge(ctx: click.Context, local: str, namespace: str, target: str, ports: tuple[str, ...], interceptor: str | None,
           timeout: float, no_wait: bool, output: str | None) -> None:
    """Send the traffic of a workload's ports in the cluster to a local container."""
    from gefyra.core.bridging import BridgeRequest

    mapping = {}
    for item in ports:
        remote, sep, local_port = item.partition(":")
        if not sep or not remote.isdigit() or not local_port.isdigit():
            raise click.BadParameter(f"{item!r} is not REMOTE:LOCAL", param_hint="-p")
        mapping[int(remote)] = int(local_port)
    request = BridgeRequest(local=local, target=target, ports=mapping, namespace=namespace,
                            interceptor=interceptor, wait=not no_wait, timeout=timeout)
    result = _execute(ctx, lambda g: g.bridge(request))
    _emit(result, output, lambda r: f"bridged {r.namespace}/{r.target} -> {local} (bridge {r.name})")


@main.command()
@click.option("-N", "--name", "names", multiple=True, help="Bridge or local container name. Repeatable.")
@click.option("--all", "all_", is_flag=True, help="Remove all of this client's bridges.")
@click.pass_context
def unbridge(ctx: click.Context, names: tuple[str, ...], all_: bool) -> None:
    """Give bridged workloads their original containers back."""
    if bool(names) == all_:
        raise click.UsageError("name the bridges with -N, or pass --all")
    removed = _execute(ctx, lambda g: g.unbridge(None if all_ else list(names)))
    click.echo("unbridged: " + ", ".join(removed) if removed else "no bridges")


@main.command("list")
@output_option
@click.pass_context
def list_(ctx: click.Context, output: str | None) -> None:
    """List the local containers started with `gefyra run`, and the bridges."""
    async def both(g: Gefyra) -> dict[str, Any]:
        containers = await g.containers()
        try:
            bridges = await g.bridges()
        except errors.GefyraError:
            bridges = []
        return {"containers": containers, "bridges": bridges}

    found = _execute(ctx, both)
    _emit(found, output, lambda r: "\n".join(
        [f"{c.name:<24} {c.state:<10} {c.namespace:<16} {c.address:<16} {c.image}" for c in r["containers"]]
        + [f"bridge {b.name}: {b.namespace}/{b.target} -> {b.local} "
           f"{', '.join(f'{k}:{v}' for k, v in b.ports.items())} {b.phase}" for b in r["bridges"]]
    ) or "no containers")


@main.command()
@output_option
@click.pass_context
def status(ctx: click.Context, output: str | None) -> None:
    """Show what is installed and connected."""
    from gefyra.core.results import Status

    result = _execute(ctx, lambda g: g.status())

    def human(r: Status) -> str:
        client = r.cluster.client
        return "\n".join([
            f"client:     {r.client} ({'connected' if r.connected else 'not connected'})",
            f"runtime:    {r.runtime}",
            f"cluster:    {r.cluster.api} (gefyra {'installed' if r.cluster.installed else 'not installed'})",
            f"tunnel:     {(client.address if client else None) or '-'} {(client.phase if client else None) or ''}",
            f"cargo:      {r.cargo.state if r.cargo else '-'}",
            f"containers: {len(r.containers)}",
            f"bridges:    {len(r.bridges)}",
        ])

    _emit(result, output, human)


@main.command()
@output_option
@click.pass_context
def check(ctx: click.Context, output: str | None) -> None:
    """Check the container engine, the cluster and the permissions gefyra needs."""
    results = _execute(ctx, lambda g: g.check())
    _emit(results, output, lambda rows: "\n".join(f"{'✓' if r.ok else '✗'} {r.name:<12} {r.detail}" for r in rows))
    if not all(r.ok for r in results):
        sys.exit(1)


@main.command()
def version() -> None:
    """Print gefyra's version."""
    click.echo(__version__)


@main.command(hidden=True)
def operator() -> None:
    """Run the in-cluster operator (used by the stowaway pod)."""
    import logging

    import anyio

    from gefyra import logs
    from gefyra import operator as op

    logs.configure("json", level=logging.INFO)
    anyio.run(op.main)

"""The `gefyra` command line: kubectl-style flags over :class:`gefyra.Gefyra`.

The orchestrator, the API and their clients (kubernetes_asyncio, aiodocker) are imported inside
the commands that need them: `gefyra version` and `--help` start several times faster that way."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from gefyra import __version__, errors
from gefyra.core.model import validation
from gefyra.core.model.identity import default_client_id
from gefyra.core.model.settings import TRANSPORTS, Settings

if TYPE_CHECKING:
    from gefyra import progress
    from gefyra.client.results import BridgeInfo, Status
    from gefyra.client.session import Gefyra
    from gefyra.core.spi.runtime import ContainerRuntime

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: click (8.2 on) shows the help of a bare `gefyra` by raising this usage error: it stays as it is.
_HELP_REQUESTED = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _fail(message: str, exit_code: int) -> NoReturn:
    """The one way the CLI reports an error: one line on stderr, the exit code of its kind."""
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


@contextlib.contextmanager
def _one_line() -> Iterator[None]:
    """Errors in reading the flags (click's own, gefyra's from the checks in the callbacks) and
    gefyra's errors outside an operation end as the operations' errors do: one line."""
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, _HELP_REQUESTED):
            raise
        command = exc.ctx.command_path if exc.ctx else "gefyra"
        _fail(f"{exc.format_message().rstrip('.')}; see `{command} --help`", exc.exit_code)
    except errors.GefyraError as exc:
        _fail(str(exc), exc.exit_code)


class _Group(click.Group):
    """The `gefyra` group: reading its flags and the subcommand's, and running the subcommand,
    report errors in one line (:func:`_one_line`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line():
            return super().invoke(ctx)


def _flag(ctx: click.Context, param: click.Parameter) -> str:
    """How the user gave a parameter: its environment variable, or its names (``-N/--name``)."""
    if param.name and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
        return param.envvar
    return "/".join(param.opts)


def _checked(check: Callable[[Any, str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that passes a given value (a tuple for a repeatable option) through
    ``check(value, flag)`` of :mod:`gefyra.core.model.validation`: every flag is checked while click
    reads it, before any command runs."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return None if value is None else check(value, _flag(ctx, param))
    return callback


def _label(what: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    return _checked(lambda value, flag: validation.dns_label(value, flag, what))


def _subdomain(what: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    return _checked(lambda value, flag: validation.dns_subdomain(value, flag, what))


_LEDGERS: list[tuple[str, progress.Ledger]] = []
"""The operations this process ran, for a Ctrl-C that lands after the last one has finished."""


def _import_structlog_without_rich() -> None:
    """structlog imports rich's traceback renderer (and with it pygments) where rich is installed,
    for the console rendering of logged exceptions: 0.08 s of every command's 0.5 s start on a small
    machine, for something the CLI does not show (errors are one line; ``-v`` shows Python's own
    traceback). Hidden from structlog's import in this process only: a program that embeds gefyra
    imports structlog as usual, and the CLI's progress display still imports rich when it needs it."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError now
    try:
        import structlog  # noqa: F401 - imported now, without rich
    finally:
        del sys.modules["rich"]


#: A CA bundle that cannot exist (/dev/null is no directory): OpenSSL then loads no bundle.
_NO_CA_BUNDLE = os.path.join(os.devnull, "no-ca-bundle")


def _import_aiohttp_without_ca_bundle() -> None:
    """aiohttp makes two default TLS contexts when it is imported, and OpenSSL parses the
    system's whole CA bundle for each: 0.05 s of every command's start on a small machine, for
    contexts gefyra does not use (the Kubernetes client and the API transport make their own from
    the kubeconfig, later). OpenSSL also finds CAs in the hashed directory, one at a time when a
    verification needs one: where that directory holds CAs and the bundle is the one kept in it
    (the same CAs, as Debian, Ubuntu and Alpine keep them), aiohttp's two contexts are made with
    the directory alone. In this process only, for that import: the environment is as it was after."""
    import ssl

    paths = ssl.get_default_verify_paths()
    variable, chosen = paths.openssl_cafile_env, os.environ.get(paths.openssl_cafile_env)
    if "aiohttp" in sys.modules or not paths.capath or not _holds_hashed_cas(paths.capath):
        return
    if chosen is not None and os.path.dirname(os.path.realpath(chosen)) != os.path.realpath(paths.capath):
        return  # a bundle of the user's own: its CAs may be in no directory
    os.environ[variable] = _NO_CA_BUNDLE
    try:
        import aiohttp.connector  # noqa: F401 - imported now, its default contexts without the bundle
    finally:
        if chosen is None:
            del os.environ[variable]
        else:
            os.environ[variable] = chosen


def _holds_hashed_cas(directory: str) -> bool:
    """Whether ``directory`` holds a CA under OpenSSL's hashed name (``1a2b3c4d.0``)."""
    try:
        with os.scandir(directory) as entries:
            return any(e.name.endswith(".0") and len(e.name) == 10 for e in entries)
    except OSError:
        return False


def _execute(ctx: click.Context, operation: Callable[[Gefyra], Awaitable[T]], *, exit_on_error: bool = True) -> T:
    """Runs an async operation with progress on stderr; errors become one line and an exit code
    (or, with ``exit_on_error=False``, are raised to the caller). An interrupt (Ctrl-C) says what
    the operation did, undid and left (from its steps' events)."""
    import anyio

    _import_structlog_without_rich()
    _import_aiohttp_without_ca_bundle()
    from gefyra import logs, progress
    from gefyra.client.session import Gefyra

    logs.configure(ctx.obj["log_format"], ctx.obj["verbose"])
    settings: Settings = ctx.obj["settings"]
    show: progress.Renderer | None = None
    ledger = progress.Ledger()
    _LEDGERS.append((ctx.command.name or "gefyra", ledger))

    async def main() -> T:
        async with Gefyra(settings) as g:
            g.bus.subscribe(ledger)
            if show is not None:
                g.bus.subscribe(show)
            return await operation(g)

    try:
        with progress.renderer(ctx.obj["quiet"]) as show:
            return anyio.run(main)
    except errors.GefyraError as exc:
        if not exit_on_error:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(ledger.interrupted(ctx.command.name or "gefyra"), err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, the traceback only with -v
        if ctx.obj["verbose"]:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}; rerun with -v and report it", err=True)
        sys.exit(70)


def _emit(data: Any, output: str | None, human: Callable[[Any], str]) -> None:
    from gefyra.client.results import plain

    if output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(plain(data), sort_keys=False), nl=False)
    else:
        click.echo(json.dumps(plain(data), indent=2) if output == "json" else human(data))


output_option = click.option("-o", "--output", type=click.Choice(["json", "yaml"]), help="Print data as JSON or YAML.")

#: gefyra's global flags: (declarations, click.option arguments). kubectl and docker users also
#: write them after the command (`gefyra up --kubeconfig F --context C`): every command takes them
#: there too, and they win over the same flag given before the command.
_GLOBALS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--kubeconfig",), {"envvar": "KUBECONFIG", "help": "The kubeconfig file (or a list, as in $KUBECONFIG)."}),
    (("--context",), {"callback": _checked(validation.context_name), "help": "The kubeconfig context to use."}),
    (("--runtime",), {"envvar": "GEFYRA_RUNTIME", "metavar": "NAME", "callback": _label("runtime name"),
                      "help": "Container runtime: docker, podman, or one a plugin provides (default: auto-detect)."}),
    (("--client-id",), {"envvar": "GEFYRA_CLIENT_ID", "callback": _label("client id"),
                        "help": "This machine's name in the cluster (default: host name and a random part, kept in "
                                "~/.config/gefyra/client-id)."}),
    (("--registry",), {"envvar": "GEFYRA_REGISTRY", "metavar": "HOST[:PORT][/PATH]",
                       "callback": _checked(validation.registry),
                       "help": "Registry of gefyra's images (REGISTRY/gefyra/NAME:VERSION; default: Docker Hub)."}),
    (("--log-format",), {"type": click.Choice(["console", "json"]), "default": "console", "help": "Log format (stderr)."}),
    (("-v", "--verbose"), {"is_flag": True, "help": "Log what happens in detail."}),
    (("-q", "--quiet"), {"is_flag": True, "help": "No progress output."}),
]
_SETTINGS_FIELDS = ("kubeconfig", "context", "runtime", "client_id", "registry")


def _global_after_command(attrs: dict[str, Any]) -> Callable[[click.Context, click.Parameter, Any], None]:
    """The callback of a global flag given after the command: it replaces the group's value."""
    check = attrs.get("callback")

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if param.name is None or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            return
        value = check(ctx, param, value) if check else value
        if param.name in _SETTINGS_FIELDS:
            ctx.obj["settings"] = dataclasses.replace(ctx.obj["settings"], **{param.name: value})
        else:
            ctx.obj[param.name] = value
    return callback


class _Command(click.Command):
    """A command that takes gefyra's global flags after its name too (not shown in its --help; the
    group's help names them). A short form the command uses itself (run's -v) is left out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        taken = {opt for param in self.params for opt in param.opts}
        for decls, attrs in _GLOBALS:
            names = [d for d in decls if d not in taken]
            extra = {k: v for k, v in attrs.items() if k in ("type", "is_flag", "metavar")}
            self.params.append(click.Option(names, expose_value=False, hidden=True,
                                            callback=_global_after_command(attrs), **extra))


def _global_options(command: F) -> F:
    for decls, attrs in reversed(_GLOBALS):
        command = click.option(*decls, **attrs)(command)
    return command


_Group.command_class = _Command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
             epilog="Global flags may also follow the command, as with kubectl: gefyra up --context dev.")
@_global_options
@click.version_option(__version__, "--version", prog_name="gefyra")
@click.pass_context
def main(ctx: click.Context, kubeconfig: str | None, context: str | None, runtime: str | None,
         client_id: str | None, registry: str | None, log_format: str, verbose: bool, quiet: bool) -> None:
    """Run a local container as if it were a pod of a Kubernetes cluster."""
    settings = Settings(kubeconfig=kubeconfig, context=context, runtime=runtime,
                        client_id=client_id or default_client_id(), registry=registry)
    ctx.obj = {"settings": settings, "quiet": quiet, "verbose": verbose, "log_format": log_format}


def _namespace(ctx: click.Context, given: str | None) -> str:
    """-n as given, else the namespace of the kubeconfig's context, else "default" (as kubectl)."""
    if given:
        return given
    from gefyra.core.kube import kubeconfig

    settings: Settings = ctx.obj["settings"]
    found = kubeconfig.read(settings.kubeconfig, settings.context).namespace or "default"
    return validation.dns_label(found, f"the namespace of the kubeconfig's context ({found!r})", "namespace")


def _shared_options(command: F) -> F:
    """The cluster side's shared settings: `install` sets them; `up` takes them as installed, and
    sets them only when it installs."""
    command = click.option(
        "--client-timeout", callback=_checked(lambda value, flag: validation.whole_number(
            value, flag, "client timeout", 10, validation.MAX_SECONDS)),
        help="Seconds of silence after which a client's bridges give their traffic back to the workloads until it "
             "speaks again (shared; default 60).")(command)
    return click.option("--port", callback=_checked(validation.port),
                        help="The tunnel's UDP NodePort (shared; default 31820).")(command)


def _session_file_option(command: F) -> F:
    return click.option("-f", "--file", "session_file", metavar="FILE",
                        help="A session file: local containers and bridges (`gefyra apply --schema` prints its "
                             "JSON Schema).")(command)


@main.command()
@click.option("--host", callback=_checked(validation.host),
              help="Address at which this machine reaches the cluster's nodes (default: chosen from the nodes).")
@_shared_options
@click.option("--service-cidr", envvar="GEFYRA_SERVICE_CIDR", callback=_checked(validation.cidr),
              help="The cluster's Service range (default: discovered).")
@click.option("--pod-cidr", "pod_cidrs", multiple=True, callback=_checked(validation.cidrs),
              help="A pod range (default: from the nodes). Repeatable.")
@click.option("--timeout", default="120", callback=_checked(validation.seconds), help="Seconds to wait for the cluster side.")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="auto", show_default=True,
              help="How the tunnel reaches the cluster: udp (to the NodePort), api (through the Kubernetes API, "
                   "wherever kubectl works), auto (UDP when it answers within seconds, else the API).")
@_session_file_option
@output_option
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None, service_cidr: str | None, pod_cidrs: list[str],
       timeout: float, client_timeout: int | None, transport: str, session_file: str | None, output: str | None) -> None:
    """Connect this machine to the cluster (installs gefyra's cluster side if needed); with -f, then
    make the session file's containers and bridges (as `gefyra apply -f`). The shared settings
    (--port, --client-timeout) count only where `up` installs: an installed cluster side keeps its
    own, and `up` refuses a different one (an admin changes them with `gefyra install`)."""
    ctx.obj["settings"] = dataclasses.replace(ctx.obj["settings"], host=host, port=port, timeout=timeout,
                                              client_timeout=client_timeout, service_cidr=service_cidr,
                                              pod_cidrs=pod_cidrs, transport=transport)
    _checked_session_file(session_file)

    async def operation(g: Gefyra) -> Any:
        status = await g.up()
        return status if session_file is None else {"status": status, "session": await g.apply(session_file)}

    result = _execute(ctx, operation)
    status = result if session_file is None else result["status"]
    line = (f"connected: client {status.client} at {status.cluster.client.address if status.cluster.client else '?'}"
            + (f" (tunnel over {_TRANSPORT_WORDS[status.cargo.transport]})" if status.cargo and status.cargo.transport
               else ""))
    _emit(result, output, lambda r: line if session_file is None else f"{line}\n{_session_line(r['session'])}")


def _checked_session_file(path: str | None) -> None:
    """The session file read and checked before anything connects (a mistake: one line, exit 2)."""
    if path is not None:
        from gefyra.client import session_apply

        try:
            session_apply.read(path)
        except errors.GefyraError as exc:
            _fail(str(exc), exc.exit_code)


def _session_line(changes: list[str]) -> str:
    return "session: " + (", ".join(changes) if changes else "nothing to change")


@main.command()
@_session_file_option
@click.option("--schema", is_flag=True, help="Print the session file's JSON Schema (for editors) and exit.")
@output_option
@click.pass_context
def apply(ctx: click.Context, session_file: str | None, schema: bool, output: str | None) -> None:
    """Make the local containers and bridges what a session file says, on a connected machine:
    only what changed changes (a container whose spec or built image changed is made anew, with
    its bridges); what the file no longer names goes."""
    if schema:
        from gefyra.core.model.session_file import SCHEMA

        click.echo(json.dumps(SCHEMA, indent=2))
        return
    if session_file is None:
        raise click.UsageError("name the session file with -f")
    _checked_session_file(session_file)
    changes = _execute(ctx, lambda g: g.apply(session_file))
    _emit(changes, output, _session_line)


#: How `up` and `status` name a transport.
_TRANSPORT_WORDS = {"udp": "UDP", "api": "the Kubernetes API"}


@main.command()
@_session_file_option
@output_option
@click.pass_context
def down(ctx: click.Context, session_file: str | None, output: str | None) -> None:
    """Remove everything gefyra made, locally and in the cluster; with -f, only what the session
    file made (its containers and their bridges)."""
    removed = _execute(ctx, lambda g: g.down() if session_file is None else g.remove_session(session_file))
    _emit(removed, output, lambda r: "removed: " + ", ".join(r) if r else "nothing to remove")


@main.command()
@click.option("--apply", "apply_", is_flag=True, help="Apply it to the cluster (else print its manifests).")
@_shared_options
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", help="Format of the manifests.")
@click.pass_context
def install(ctx: click.Context, apply_: bool, port: int | None, client_timeout: int | None, output: str) -> None:
    """Install gefyra's cluster side as an admin (developers' `down` keeps it); without --apply,
    print its manifests (the server end's key pair and the cluster-info ConfigMap are made by
    --apply). Shared settings not given keep the values installed before (else their defaults)."""
    ctx.obj["settings"] = dataclasses.replace(ctx.obj["settings"], port=port, client_timeout=client_timeout)
    if apply_:
        applied = _execute(ctx, lambda g: g.install())
        click.echo("installed: " + ", ".join(applied))
        return
    from gefyra.client.session import Gefyra

    docs = Gefyra(ctx.obj["settings"]).manifests()
    if output == "json":
        click.echo(json.dumps(docs, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)


@main.command()
@click.pass_context
def uninstall(ctx: click.Context) -> None:
    """Remove gefyra's cluster side for every client (all bridges first)."""
    removed = _execute(ctx, lambda g: g.uninstall())
    click.echo("removed: " + ", ".join(removed) if removed else "nothing to remove")


@main.command(context_settings={"allow_interspersed_args": False})
@click.option("-i", "--image", required=True, callback=_checked(validation.image), help="Image of the local container.")
@click.option("-N", "--name", required=True, callback=_label("container name"), help="Name of the local container.")
@click.option("-n", "--namespace", callback=_label("namespace"),
              help="The cluster namespace it acts in (default: the kubeconfig context's, else default).")
@click.option("-e", "--env", "env", multiple=True, callback=_checked(validation.env_pairs),
              help="KEY=VALUE environment variable, or KEY for this machine's value. Repeatable.")
@click.option("--env-file", "env_files", multiple=True, callback=_checked(validation.env_files),
              help="A file of KEY=VALUE lines (as docker reads them). Repeatable.")
@click.option("--env-from", callback=_checked(validation.workload),
              help="Copy the environment of deploy/NAME[/CONTAINER] (or pod/, sts/).")
@click.option("--volumes-from", callback=_checked(validation.workload),
              help="Mount the ConfigMap, Secret, downward API and projected volumes of deploy/NAME[/CONTAINER] "
                   "at the same paths, read-only, kept in step with the cluster.")
@click.option("--resources-from", callback=_checked(validation.workload),
              help="Limit CPU and memory as the container of deploy/NAME[/CONTAINER] is limited.")
@click.option("-v", "--volume", "volumes", multiple=True, callback=_checked(validation.volumes),
              help="HOST:CONTAINER[:ro] bind mount (absolute paths). Repeatable.")
@click.option("-p", "--port", "ports", multiple=True, callback=_checked(validation.published_ports),
              help="HOSTPORT:CONTAINERPORT[/udp] to publish. Repeatable.")
@click.option("--command", callback=_checked(validation.command),
              help="Command to run instead of the image's default (shell syntax); or give it after --.")
@click.option("--entrypoint", callback=_checked(validation.command),
              help="Entrypoint to run instead of the image's (shell syntax), as with docker run.")
@click.option("-d", "--detach", is_flag=True, help="Return once started instead of streaming the output.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it stops.")
@click.argument("command_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARG...]]")
@click.pass_context
def run(ctx: click.Context, image: str, name: str, namespace: str | None, env: dict[str, str],
        env_files: dict[str, str], env_from: str | None, volumes_from: str | None, resources_from: str | None,
        volumes: list[str],
        ports: dict[str, int | str],
        command: list[str] | None, entrypoint: list[str] | None, detach: bool, auto_remove: bool,
        command_args: tuple[str, ...]) -> None:
    """Run a local container inside the cluster's network: it resolves the cluster's names and
    reaches its Services and pods like a pod of the namespace, from its first instruction on.
    Attached (without -d) it streams the output and ends with the command's exit code:

    \b
    gefyra run -i myapp:dev -N myapp -n shop --env-from deploy/myapp -d
    gefyra run --rm -i busybox -N probe -- wget -qO- http://api/healthz
    """
    from gefyra.client.run import remove_run_container
    from gefyra.core.model.requests import RunRequest

    if command is not None and command_args:
        raise click.UsageError("give the command either with --command or after --, not both")
    if image == "t":
        raise click.UsageError("-it reads as -i t (the image 't'): gefyra's -i names the image, and a terminal in "
                               "the container is not offered; run it with -d, then `docker exec -it NAME sh`")
    if command_args:
        command = list(validation.command_words(list(command_args), "COMMAND") or [])
    # Attached, the engine must not remove the container at its end: its output and exit code are
    # read first (a command that ends at once would take them along).
    request = RunRequest(image=image, name=name, namespace=_namespace(ctx, namespace), env=env_files | env,
                         env_from=env_from, volumes_from=volumes_from, resources_from=resources_from, volumes=volumes,
                         ports=ports, command=command,
                         entrypoint=entrypoint,
                         auto_remove=auto_remove and detach)

    import anyio

    async def operation(g: Gefyra) -> int:
        info = await g.run(request)
        if detach:
            click.echo(info.name)
            return 0
        runtime = await g.orchestrator.engine()
        try:
            async for line in runtime.logs(info.name):
                click.echo(line, nl=False)
            code = await runtime.wait_container(info.name)
        except BaseException:  # Ctrl-C: the application gets SIGINT, as in an attached docker run
            with anyio.CancelScope(shield=True):
                await _interrupt(runtime, info.name, remove=auto_remove)
            raise
        if auto_remove:
            await remove_run_container(runtime, info.name)
        return code

    sys.exit(_execute(ctx, operation))


async def _interrupt(runtime: ContainerRuntime, name: str, *, remove: bool) -> None:
    """Ctrl-C on an attached `run`: SIGINT to the application, a few seconds for it to end, then
    (with --rm) the container goes; without --rm it stays, as docker leaves it."""
    import anyio

    from gefyra.client.run import remove_run_container

    await runtime.send_signal(name, "SIGINT")
    code: int | None = None
    with anyio.move_on_after(_INTERRUPT_GRACE):
        code = await runtime.wait_container(name)
    if remove:
        await remove_run_container(runtime, name)
        click.echo(f"{name} got SIGINT" + (f" and ended (exit {code})" if code is not None else "") + "; removed (--rm)",
                   err=True)
    elif code is None:
        click.echo(f"{name} got SIGINT and still runs after {_INTERRUPT_GRACE:.0f} s: `docker stop {name}` ends it",
                   err=True)
    else:
        click.echo(f"{name} got SIGINT and ended (exit {code}); it stays, as without --rm", err=True)


#: Seconds an attached `run`'s application has to end after Ctrl-C sent it SIGINT.
_INTERRUPT_GRACE = 10.0


#: The kinds of a personal bridge's conditions (gefyra.core.model.routing.MATCH_KINDS; kept here so
#: that --help does not import the orchestrator's modules).
MATCH_KINDS = ("header-exact", "header-prefix", "header-regex", "path-exact", "path-prefix", "path-regex")
#: How a workload speaks on bridged ports (gefyra.core.model.routing.PROTOCOLS, kept here likewise).
PROTOCOLS = ("http", "h2c", "grpc")


def _match_flags(values: Sequence[str], flag: str, *, kind: str) -> list[tuple[str, str]]:
    return [validation.match_flag(value, flag, kind) for value in values]


def _match_options(command: F) -> F:
    """The --match-KIND options of `bridge`, each repeatable."""
    for kind in reversed(MATCH_KINDS):
        on, how = kind.split("-")
        value = {"exact": "VALUE", "prefix": "VALUE", "regex": "REGEX"}[how] if on == "header" else \
            {"exact": "PATH", "prefix": "PATH", "regex": "REGEX"}[how]
        subject = "header NAME" if on == "header" else "path"
        what = {"exact": "is", "prefix": "starts with", "regex": "matches"}[how]
        command = click.option(
            f"--match-{kind}", multiple=True, metavar=f"NAME:{value}" if on == "header" else value,
            callback=_checked(functools.partial(_match_flags, kind=kind)),
            help=f"Personal bridge: only requests whose {subject} {what} {value}. Repeatable.",
        )(command)
    return command


@main.command()
@click.option("-N", "--name", "local", required=True, callback=_label("container name"),
              help="The local container (started with `gefyra run`).")
@click.option("-n", "--namespace", callback=_label("namespace"),
              help="Namespace of the target (default: the kubeconfig context's, else default).")
@click.option("--target", required=True, callback=_checked(validation.workload),
              help="deploy/NAME[/CONTAINER], pod/NAME[/CONTAINER] or sts/NAME[/CONTAINER].")
@click.option("-p", "--port", "ports", multiple=True, required=True, callback=_checked(validation.bridge_ports),
              help="REMOTE:LOCAL container ports. Repeatable.")
@click.option("--interceptor", metavar="NAME", callback=_label("interceptor"),
              help="What takes the workload's traffic (default: nginx), or one a plugin provides.")
@click.option("--in-place", is_flag=True,
              help="Global bridge that also takes connections to the pods' own IPs: the target container is "
                   "swapped in every pod, so it restarts now and at unbridge (kubelet's back-off grows with each "
                   "restart). Without it, what reaches the workload's Services is taken and no pod restarts.")
@click.option("--protocol", type=click.Choice(PROTOCOLS),
              help="How the workload speaks on the ports, for a personal bridge or mirror: http (HTTP/1.x), h2c or "
                   "grpc (cleartext HTTP/2). Default: what the Service port's appProtocol (or name) says.")
@click.option("--tls-secret", metavar="SECRET", callback=_subdomain("Secret name"),
              help="HTTPS ports, for a personal bridge or mirror: the Secret (in the target's namespace, type "
                   "kubernetes.io/tls; with ca.crt unless the certificate is self-signed) with the workload's "
                   "certificate. The router ends TLS with it, routes each request, and speaks TLS on to the workload "
                   "(checking its certificate) and to the local container.")
@click.option("--tls-insecure-skip-verify", "tls_skip_verify", is_flag=True,
              help="With --tls-secret: do not check the workload's certificate when speaking TLS to it.")
@click.option("--mirror", is_flag=True,
              help="Read-only: the workload keeps answering the (matching) HTTP requests, and a copy of each comes "
                   "to the local container; its answers and failures never reach the caller.")
@_match_options
@click.option("--timeout", default="60", callback=_checked(validation.seconds),
              help="Seconds to wait until the bridge carries traffic.")
@click.option("--no-wait", is_flag=True, help="Return once the bridge is requested.")
@output_option
@click.pass_context
def bridge(ctx: click.Context, /, local: str, namespace: str | None, target: str, ports: dict[int, int], interceptor: str | None,
           in_place: bool, mirror: bool, protocol: str | None, tls_secret: str | None, tls_skip_verify: bool,
           timeout: float, no_wait: bool, output: str | None, **conditions: list[tuple[str, str]]) -> None:
    """Send the traffic of a workload's ports in the cluster to a local container: all of it, or
    with --match-* (a personal bridge) only the HTTP requests that meet every condition given; the
    others stay with the workload in the cluster. Several developers' personal bridges can share
    a workload: the first one (in the order they were made) whose conditions hold gets a request.
    The workload's pods are not touched (the traffic through its Services is taken), unless
    --in-place.

    \b
    gefyra bridge -N api --target deploy/api -p 8080:8080
    gefyra bridge -N api --target deploy/api -p 8080:8080 --match-header-exact x-dev:alice
    gefyra bridge -N api --target deploy/api -p 8080:8080 --match-path-prefix /v2/ --match-header-exact x-dev:alice
    gefyra bridge -N api --target deploy/api -p 8080:8080 --mirror --match-path-prefix /orders/
    gefyra bridge -N api --target deploy/api -p 8443:8443 --match-header-exact x-dev:alice --tls-secret api-tls

    A personal bridge or mirror routes each request, over HTTP/1.x or cleartext HTTP/2 (each
    stream of a connection, e.g. a gRPC call, on its own); it speaks HTTP/2 to the workload and
    to the local container where the Service port's appProtocol says so (kubernetes.io/h2c,
    grpc) or its name starts with grpc, h2c or http2, or where --protocol says so.
    """
    from gefyra.core.model.requests import BridgeRequest
    from gefyra.core.model.routing import Match

    matches = [Match(kind, value, header) for kind in MATCH_KINDS
               for header, value in conditions[f"match_{kind.replace('-', '_')}"]]
    request = BridgeRequest(local=local, target=target, ports=ports, namespace=_namespace(ctx, namespace),
                            interceptor=interceptor, matches=matches, in_place=in_place, mirror=mirror,
                            protocol=protocol, tls_secret=tls_secret, tls_verify=not tls_skip_verify,
                            wait=not no_wait, timeout=timeout)
    result = _execute(ctx, lambda g: g.bridge(request))
    _emit(result, output, lambda r: f"bridged {r.namespace}/{r.target} -> {local} (bridge {r.name}"
                                    + (f"; {_scope(r)}" if _scope(r) else "") + ")")


@main.command()
@click.option("-N", "--name", "names", multiple=True,
              callback=_checked(lambda value, flag: validation.dns_labels(value, flag, "name")),
              help="Bridge or local container name. Repeatable.")
@click.option("--all", "all_", is_flag=True, help="Remove all of this client's bridges.")
@click.option("-n", "--namespace", callback=_label("namespace"),
              help="Only the bridges of workloads in this namespace (default: every namespace).")
@click.pass_context
def unbridge(ctx: click.Context, names: list[str], all_: bool, namespace: str | None) -> None:
    """Give bridged workloads their traffic back (and, in place, their containers)."""
    if bool(names) == all_:
        raise click.UsageError("name the bridges with -N, or pass --all")
    removed = _execute(ctx, lambda g: g.unbridge(None if all_ else names, namespace=namespace))
    click.echo("unbridged: " + ", ".join(removed) if removed else "no bridges")


@main.command()
@click.argument("name", callback=_checked(lambda value, flag: validation.dns_label(value, flag, "container name")))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the container stops (Ctrl-C ends it).")
@click.option("--since", callback=_checked(validation.seconds),
              help="Only output of this recent past: seconds or a duration (30s, 10m, 1h).")
@click.option("--tail", callback=_checked(lambda value, flag: validation.whole_number(value, flag, "line count", 0,
                                                                                      1_000_000)),
              help="Only the last N lines (then new ones with -f).")
@click.pass_context
def logs(ctx: click.Context, name: str, follow: bool, since: float | None, tail: int | None) -> None:
    """Print the output of a local container started with `gefyra run`, as `kubectl logs` does."""
    import time

    started = time.time()

    async def operation(g: Gefyra) -> None:
        async for line in g.logs(name, follow=follow, since=started - since if since else None, tail=tail):
            click.echo(line, nl=False)

    _execute(ctx, operation)


@main.command()
@click.argument("names", nargs=-1, callback=_checked(lambda value, flag: validation.dns_labels(value, flag, "name")))
@click.option("--all", "all_", is_flag=True, help="Remove all of this client's local containers.")
@output_option
@click.pass_context
def rm(ctx: click.Context, names: list[str], all_: bool, output: str | None) -> None:
    """Remove local containers started with `gefyra run` (by name, or --all), each after its
    bridges: the workloads have their traffic back first."""
    if bool(names) == all_:
        raise click.UsageError("name the containers, or pass --all")
    removed = _execute(ctx, lambda g: g.rm(None if all_ else list(names)))
    _emit(removed, output, lambda r: "removed: " + ", ".join(r) if r else "nothing to remove")


@main.command("list")
@output_option
@click.pass_context
def list_(ctx: click.Context, output: str | None) -> None:
    """List the local containers started with `gefyra run`, and the bridges, with what is wrong on
    this machine's side of each. Where the cluster does not answer, the bridges are unknown (exit 4)."""
    async def both(g: Gefyra) -> dict[str, Any]:
        containers = await g.containers()
        try:
            return {"containers": containers, "bridges": await g.bridges(), "problems": []}
        except errors.ClusterUnreachableError as exc:
            return {"containers": containers, "bridges": None, "problems": [f"bridges unknown: {exc}"]}

    found = _execute(ctx, both)

    def human(r: dict[str, Any]) -> str:
        lines = [f"{c.name:<24} {c.state:<10} {c.namespace:<16} {c.address:<16} {c.image}" for c in r["containers"]]
        lines += [f"bridge {b.name}: {b.namespace}/{b.target} -> {b.local} "
                  f"{', '.join(f'{k}:{v}' for k, v in b.ports.items())} {b.phase}"
                  + (f" ({_scope(b)})" if _scope(b) else "") + (f"; but {b.problem}" if b.problem else "")
                  for b in r["bridges"] or []]
        return "\n".join(lines + [f"! {p}" for p in r["problems"]]) or "no containers, no bridges"

    _emit(found, output, human)
    if found["bridges"] is None:
        sys.exit(errors.ClusterUnreachableError.exit_code)


def _scope(b: BridgeInfo) -> str:
    """What of the workload's traffic a bridge takes, for people ("" for all of it)."""
    if b.mirror:
        return f"a copy of {'requests with ' + ' and '.join(b.match) if b.match else 'every request'}"
    return f"only {' and '.join(b.match)}" if b.match else ""


def _status_lines(r: Status, *, detailed: bool = False) -> list[str]:
    """`status` for people; ``detailed`` adds a line per container and per bridge (its phase and
    why it is not Ready), as `status --watch` shows them."""
    client = r.cluster.client
    installed = {True: "installed", False: "not installed", None: "unknown"}[r.cluster.installed]
    lines = [
        f"client:     {r.client} ({'connected' if r.connected else 'not connected'})",
        f"runtime:    {r.runtime}",
        f"cluster:    {r.cluster.api} ({'gefyra ' + installed if r.cluster.reachable else 'does not answer'})",
        f"tunnel:     {(client.address if client else None) or '-'} {(client.phase if client else None) or ''}",
        f"cargo:      {r.cargo.state if r.cargo else '-'}"
        + (f", over {_TRANSPORT_WORDS[r.cargo.transport]} to {r.cargo.endpoint}" if r.cargo and r.cargo.transport else ""),
        f"containers: {len(r.containers)}",
    ]
    if detailed:
        lines += [f"  {c.name} {c.state} in {c.namespace or '-'} at {c.address or '-'} ({c.image})" for c in r.containers]
    lines.append(f"bridges:    {len(r.bridges) if r.bridges is not None else 'unknown'}")
    if detailed:
        for b in r.bridges or []:
            ready = next((c for c in b.conditions if c.type == "Ready"), None)
            why = f" ({ready.reason}: {ready.message})" if ready is not None and ready.status != "True" else ""
            lines.append(f"  {b.name} {b.namespace}/{b.target} -> {b.local} {b.phase}{why}"
                         + (f" ({_scope(b)})" if _scope(b) else ""))
    return lines + [f"! {p}" for p in r.problems]


@main.command()
@click.option("-w", "--watch", is_flag=True,
              help="Keep measuring every 2 s: a live view on a terminal, else a new block (or JSON/YAML "
                   "document) each time something changes; Ctrl-C ends it.")
@output_option
@click.pass_context
def status(ctx: click.Context, watch: bool, output: str | None) -> None:
    """Show what is installed and connected, measured now (the tunnel's handshake, the server end's
    pod, the local containers), and every problem found with what to do. Where the cluster does
    not answer, what is on this machine is shown and the rest is unknown (exit 4)."""
    if watch:
        _execute(ctx, lambda g: _watch_status(g, output))
        return
    result = _execute(ctx, lambda g: g.status())
    _emit(result, output, lambda r: "\n".join(_status_lines(r)))
    if not result.cluster.reachable:
        sys.exit(errors.ClusterUnreachableError.exit_code)


#: Seconds between the measurements of `status --watch`.
_WATCH_INTERVAL = 2.0


async def _watch_status(g: Gefyra, output: str | None) -> None:
    """`status --watch`: measures until interrupted. On a terminal (and without -o) a live view
    that is redrawn; else what changed is printed again (the handshake's time aside: it changes
    every few minutes and says nothing new)."""
    import time

    import anyio
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()
    if console.is_terminal and output is None:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                found = await g.status()
                text = "\n".join(_status_lines(found, detailed=True)) + f"\n\nmeasured at {time.strftime('%X')}"
                live.update(Text(text), refresh=True)  # Text: no markup in names and messages
                await anyio.sleep(_WATCH_INTERVAL)
    last = None
    while True:
        found = await g.status()
        steady = dataclasses.replace(found, cargo=dataclasses.replace(found.cargo, latest_handshake=None)
                                     if found.cargo else None)
        if steady != last:
            if output is None:
                click.echo(f"--- {time.strftime('%X')}\n" + "\n".join(_status_lines(found, detailed=True)))
            else:
                _emit(found, output, str)
                if output == "yaml":
                    click.echo("---")
            last = steady
        await anyio.sleep(_WATCH_INTERVAL)


@main.command()
@output_option
@click.pass_context
def check(ctx: click.Context, output: str | None) -> None:
    """Check what `up` needs, before `up`: the engine, the cluster, your rights, the Pod Security
    level of namespace gefyra (and whether the cluster admits gefyra's pod), the images, the
    container network's ranges, and (where the cluster side is installed) the tunnel through its
    UDP port with a throwaway client, and the packet size it carries. Exit 1 if any check fails."""
    results = _execute(ctx, lambda g: g.check())
    _emit(results, output, lambda rows: "\n".join(f"{'✓' if r.ok else '✗'} {r.name:<12} {r.detail}" for r in rows))
    if not all(r.ok for r in results):
        sys.exit(1)


@main.command()
@click.option("--client", "client_only", is_flag=True, help="Only the client's version (asks no cluster).")
@output_option
@click.pass_context
def version(ctx: click.Context, client_only: bool, output: str | None) -> None:
    """Print gefyra's version, and the version of the cluster side installed in the cluster."""
    found: dict[str, str | None] = {"client": __version__}
    if not client_only:
        ctx.obj["quiet"] = True
        try:
            found["cluster"] = _execute(ctx, lambda g: g.cluster_version(), exit_on_error=False)
        except errors.GefyraError as exc:
            found["cluster"], found["problem"] = None, str(exc)
    _emit(found, output, lambda r: "\n".join([f"client:       {r['client']}"] + ([] if client_only else [
        f"cluster side: {r['cluster'] or 'not installed' if 'problem' not in r else 'unknown (' + r['problem'] + ')'}"])))


@main.command()
@output_option
@click.pass_context
def plugins(ctx: click.Context, output: str | None) -> None:
    """List the plugins in use: gefyra's built-in ones, those installed through the `gefyra`
    entry-point group (with their distribution), and the hooks each implements. With
    GEFYRA_TRACE_PLUGINS=1, any command logs every hook call and its result (shown with -v)."""
    from gefyra.client.session import Gefyra

    found = Gefyra(ctx.obj["settings"]).plugins()
    _emit(found, output, lambda rows: "\n".join(
        f"{p.name:<36} {p.source:<12} {p.distribution or '-':<36} {', '.join(p.hooks)}" for p in rows))


@main.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_(ctx: click.Context, command: str | None) -> None:
    """Show the help of gefyra, or of one of its commands (as `gefyra COMMAND --help`)."""
    parent = ctx.parent
    assert parent is not None
    if command is None:
        click.echo(main.get_help(parent))
        return
    found = main.get_command(parent, command)
    if found is None:
        raise click.UsageError(f"no command {command!r}; `gefyra help` lists them")
    with click.Context(found, info_name=command, parent=parent) as sub:
        click.echo(found.get_help(sub))


@main.command()
@click.pass_context
def mcp(ctx: click.Context) -> None:
    """Serve gefyra's operations to coding agents: a Model Context Protocol server on stdio (tools:
    status, run, bridge, unbridge, logs, rm, down), with this command's global flags (--kubeconfig,
    --context, --runtime, --client-id). Needs `pip install 'gefyra[mcp]'`."""
    from gefyra import logs
    from gefyra.mcp_server import server

    logs.configure(ctx.obj["log_format"], ctx.obj["verbose"])  # stderr: stdout carries the protocol
    try:
        found = server(ctx.obj["settings"])
    except errors.GefyraError as exc:
        _fail(str(exc), exc.exit_code)
    found.run("stdio")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    For bash, put `source <(gefyra completion bash)` in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(main, {}, "gefyra", "_GEFYRA_COMPLETE").source())


@main.command(hidden=True)
def operator() -> None:
    """Run the in-cluster operator (used by the stowaway pod)."""
    import logging

    import anyio

    from gefyra import logs
    from gefyra import operator as op

    logs.configure("json", level=logging.INFO)
    anyio.run(op.main)


def program() -> None:
    """The `gefyra` program: click's own handling, except that a Ctrl-C which lands outside an
    operation (while the result is printed, or before the first step) exits 130 with the same line
    as one inside it, instead of click's "Aborted!" and 1."""
    try:
        result = main(standalone_mode=False)  # the exit code of --help/--version, else None
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        last = _LEDGERS[-1] if _LEDGERS else None
        click.echo(last[1].interrupted(last[0]) if last else "interrupted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)

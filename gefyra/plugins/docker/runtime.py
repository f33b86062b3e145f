"""The Docker container runtime, over the Docker Engine API (aiodocker)."""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import anyio

from gefyra import errors
from gefyra.core.spi.runtime import ContainerInfo, ContainerRuntime, ContainerSpec, NetworkInfo

#: The name under which containers of an engine in a VM reach the host.
_HOST_GATEWAY = "host.docker.internal"
#: Seconds between two progress lines of a pull.
_PROGRESS_EVERY = 0.5
#: The bridge driver's option for its containers' MTU (Podman's Docker API takes it too).
_MTU_OPTION = "com.docker.network.driver.mtu"


def _reserved(config: Mapping[str, Any]) -> str:
    """The network's .2 when the engine allocates from an IPRange that leaves it out, else ""."""
    try:
        subnet = ipaddress.IPv4Network(config.get("Subnet", ""))
        allocated = ipaddress.IPv4Network(config.get("IPRange", ""))
    except ValueError:
        return ""
    reserved = subnet.network_address + 2
    return str(reserved) if reserved in subnet and reserved not in allocated else ""


def _unix_time(text: str) -> float:
    """``2026-12-06T10:00:00.123456789Z`` (the engines' nanoseconds cut) as Unix time; 0 if unreadable."""
    try:
        return datetime.datetime.fromisoformat(text[:19] + "+00:00").timestamp()
    except ValueError:
        return 0.0


def _binding(host: int | str) -> dict[str, str]:
    """A published port: on every address of the host, or on the one ``IP:PORT`` names."""
    if isinstance(host, str):
        address, _, port = host.rpartition(":")
        return {"HostIp": address, "HostPort": port}
    return {"HostPort": str(host)}


def _files_archive(directory: str, files: Mapping[str, bytes]) -> bytes:
    """A tar archive of ``files`` in ``directory``, ending right after its end-of-archive blocks.
    tarfile pads an archive with zeros to a 10 KiB record; Podman's extractor stops reading at the
    end-of-archive blocks, and the padding it never reads fails the upload now and then ("passing
    bulk input to subprocess: write |1: broken pipe", containers/buildah#6573)."""
    base = directory.strip("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(base)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(folder)
        for file_name, content in files.items():
            entry = tarfile.TarInfo(f"{base}/{file_name}")
            entry.size, entry.mode = len(content), 0o600
            tar.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()[:tar.offset]  # offset: past the end-of-archive blocks, before the padding


#: Seconds between the askings of :meth:`DockerRuntime._container` after a refusal that passes.
_PASSING_PAUSES = (0.05, 0.1, 0.2)


def _message(exc: aiodocker.DockerError) -> str:
    return str(exc.message if hasattr(exc, "message") else exc)


class DockerRuntime(ContainerRuntime):
    name = "docker"
    #: The option under which the engine shows a network's MTU.
    _shown_mtu_option = _MTU_OPTION

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._docker: aiodocker.Docker | None = None

    @property
    def _api(self) -> aiodocker.Docker:
        assert self._docker is not None, "runtime not connected"
        return self._docker

    def _unavailable(self, exc: BaseException) -> errors.EngineUnavailableError:
        where = self._url or "the default Docker socket"
        return errors.EngineUnavailableError(
            f"cannot reach {self.name} at {where} ({exc})",
            f"start the {self.name} engine, or choose another with --runtime",
        )

    async def connect(self) -> None:
        try:
            self._docker = aiodocker.Docker(url=self._url)
            await self._answers()
        except AssertionError as exc:  # aiodocker asserts when it finds no socket, context or DOCKER_HOST
            await self.close()
            raise self._unavailable(RuntimeError("no engine socket found")) from exc
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, ValueError) as exc:
            await self.close()
            raise self._unavailable(exc) from exc

    async def _answers(self) -> None:
        """Proves that the engine answers, with one request: the unversioned ``/version`` that
        aiodocker (API version "auto") sends before its first call anyway, to choose the API
        version. ``version()`` would send it and then the same request versioned: two requests,
        each 6-8 ms of the daemon's time here (it asks containerd and runc for their versions)."""
        settle = getattr(self._api, "_check_version", None)  # aiodocker's own, private
        if settle is not None and self._api.api_version == "auto":
            await settle()
        else:
            await self._api.version()

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def version(self) -> str:
        info = await self._call(self._api.version())
        return str(info.get("Version", "?"))

    async def vm_host_gateway(self) -> str | None:
        """Docker Desktop (macOS, Windows, WSL2) and Colima run containers in a VM, and give them
        the host as host.docker.internal."""
        info = await self._call(self._api.system.info())
        where = f"{info.get('OperatingSystem', '')} {info.get('Name', '')} {info.get('KernelVersion', '')}".lower()
        return _HOST_GATEWAY if any(vm in where for vm in ("docker desktop", "colima", "microsoft")) else None

    async def _call(self, awaitable: Any, *, what: str = "") -> Any:
        """Awaits an aiodocker call, translating its errors into gefyra errors."""
        try:
            return await awaitable
        except aiodocker.DockerError as exc:
            raise self._refused(exc, what) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _refused(self, exc: aiodocker.DockerError, what: str) -> errors.GefyraError:
        message = _message(exc)
        if exc.status == 404:
            return errors.NotFoundError(f"{what or 'object'} not found: {message}")
        if self._is_conflict(exc.status, message):
            return errors.ConflictError(f"{what or 'object'} is in use: {message}",
                                        "choose another name, or remove the existing one")
        return errors.GefyraError(f"{self.name} refused: {message}")

    def _is_conflict(self, status: int, message: str) -> bool:
        return status == 409

    def _is_passing(self, status: int, message: str) -> bool:
        """Whether a refusal passes by itself a moment later (none of Docker's is known to)."""
        return False

    async def _container(self, name: str) -> Any:
        """The container ``name`` as the engine shows it (NotFoundError if it does not exist); a
        refusal that passes by itself (:meth:`_is_passing`) is met with asking again."""
        pauses = iter(_PASSING_PAUSES)
        while True:
            try:
                return await self._api.containers.get(name)
            except aiodocker.DockerError as exc:
                pause = next(pauses, None)
                if pause is None or not self._is_passing(exc.status, _message(exc)):
                    raise self._refused(exc, f"container {name}") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise self._unavailable(exc) from exc
            await anyio.sleep(pause)

    async def image_exists(self, image: str) -> bool:
        try:
            await self._call(self._api.images.inspect(image), what=f"image {image}")
        except errors.NotFoundError:
            return False
        return True

    async def pull_image(self, image: str, progress: Callable[[str], Awaitable[None]]) -> None:
        layers: dict[str, tuple[int, int]] = {}  # layer -> (bytes done, bytes in all)
        last = 0.0
        try:
            async for event in self._api.images.pull(from_image=image, stream=True):
                if event.get("error"):
                    raise self._pull_failure(image, str(event["error"]))
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                if time.monotonic() - last >= _PROGRESS_EVERY and layers:
                    last = time.monotonic()
                    done, total = sum(d for d, _ in layers.values()), sum(t for _, t in layers.values())
                    await progress(f"pulling {image}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
        except aiodocker.DockerError as exc:
            raise self._pull_failure(image, exc.message if hasattr(exc, "message") else str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def build_image(self, context: str, tag: str, progress: Callable[[str], Awaitable[None]]) -> str:
        root = Path(context)
        if not (root / "Dockerfile").is_file():
            raise errors.UsageError(f"the build context {context} has no Dockerfile", "name a directory with one")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(str(root), arcname=".")
        archive.seek(0)
        try:
            async for event in self._api.images.build(fileobj=archive, encoding="application/x-tar", tag=tag,
                                                      stream=True, rm=True):
                if event.get("error"):
                    raise errors.GefyraError(f"building {tag} from {context} failed: {str(event['error']).strip()}",
                                             "fix the Dockerfile, then apply again")
                line = str(event.get("stream", "")).strip()
                if line.startswith("Step ") or line.startswith("STEP "):
                    await progress(f"building {tag}: {line}")
        except aiodocker.DockerError as exc:
            raise errors.GefyraError(f"building {tag} from {context} failed: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(exc) from exc
        found = await self._call(self._api.images.inspect(tag), what=f"image {tag}")
        return str(found["Id"])

    async def image_available(self, image: str) -> bool | None:
        try:
            await self._call(self._api._query_json(f"distribution/{image}/json"), what=f"image {image}")
        except errors.NotFoundError:
            return False
        except errors.EngineUnavailableError:
            raise
        except errors.GefyraError:
            return False  # the registry refused or was not reached: pulling would fail the same way
        return True

    def _pull_failure(self, image: str, message: str) -> errors.GefyraError:
        hint = "check the image's name and tag, and that the registry has it (and lets this machine pull)"
        if "not found" in message.lower() or "manifest unknown" in message.lower():
            return errors.NotFoundError(f"{self.name} cannot pull {image}: {message.strip()}", hint)
        return errors.GefyraError(f"{self.name} cannot pull {image}: {message.strip()}", hint)

    # Networks

    async def get_network(self, name: str) -> NetworkInfo | None:
        try:
            net = await self._call(self._api.networks.get(name), what=f"network {name}")
            data = await self._call(net.show())
        except errors.NotFoundError:
            return None
        config = (data.get("IPAM", {}).get("Config") or [{}])[0]
        mtu = str((data.get("Options") or {}).get(self._shown_mtu_option, ""))
        return NetworkInfo(name=data["Name"], subnet=config.get("Subnet", ""), gateway=config.get("Gateway", ""),
                           labels=data.get("Labels") or {}, reserved=_reserved(config),
                           mtu=int(mtu) if mtu.isdigit() else None)

    async def ensure_network(self, name: str, labels: Mapping[str, str], *, mtu: int | None = None) -> NetworkInfo:
        """The engine picks a free range (it knows its other networks and its address pools);
        the network is then made again on that range with the engine's own allocation limited to
        its upper half, so that the address .2 is reserved."""
        existing = await self.get_network(name)
        if existing is not None:
            return existing
        with anyio.CancelScope(shield=True):  # see create_container
            created = await self._create_network(self._network_config(name, labels, mtu))
        return created

    async def _create_network(self, config: dict[str, Any]) -> NetworkInfo:
        name = config["Name"]
        await self._call(self._api.networks.create(config), what=f"network {name}")
        picked = await self.get_network(name)
        assert picked is not None
        try:
            subnet = ipaddress.IPv4Network(picked.subnet)
        except ValueError:
            return picked  # not an IPv4 range gefyra can split
        if subnet.num_addresses < 16:
            return picked
        await self.remove_network(name)
        upper = list(subnet.subnets(prefixlen_diff=1))[1]
        ipam = {"Config": [{"Subnet": str(subnet), "Gateway": picked.gateway or str(subnet.network_address + 1),
                            "IPRange": str(upper)}]}
        await self._call(self._api.networks.create({**config, "IPAM": ipam}), what=f"network {name}")
        created = await self.get_network(name)
        assert created is not None
        return created

    def _network_config(self, name: str, labels: Mapping[str, str], mtu: int | None) -> dict[str, Any]:
        config: dict[str, Any] = {"Name": name, "Driver": "bridge", "Labels": dict(labels), "CheckDuplicate": True}
        if mtu is not None:
            config["Options"] = {_MTU_OPTION: str(int(mtu))}
        return config

    async def remove_network(self, name: str) -> None:
        try:
            net = await self._call(self._api.networks.get(name), what=f"network {name}")
            await self._call(net.delete(), what=f"network {name}")
        except errors.NotFoundError:
            pass

    # Containers

    def _container_config(self, spec: ContainerSpec) -> dict[str, Any]:
        host: dict[str, Any] = {
            "CapAdd": spec.cap_add,
            "Devices": [{"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in spec.devices],
            "Dns": spec.dns,
            "DnsSearch": spec.dns_search,
            "DnsOptions": spec.dns_options,
            "Binds": spec.volumes,
            "AutoRemove": spec.auto_remove,
            "PortBindings": {port: [_binding(host)] for port, host in spec.ports.items()},
        }
        if spec.cpus:
            host["NanoCpus"] = int(spec.cpus * 1e9)
        if spec.memory:
            host["Memory"] = spec.memory
        if spec.network_of:
            host["NetworkMode"] = f"container:{spec.network_of}"
        elif spec.network:
            host["NetworkMode"] = spec.network
        config: dict[str, Any] = {
            "Image": spec.image,
            "Labels": spec.labels,
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "HostConfig": host,
            "ExposedPorts": {port: {} for port in spec.ports},
        }
        if spec.network and spec.ip:
            config["NetworkingConfig"] = {"EndpointsConfig": {spec.network: {"IPAMConfig": {"IPv4Address": spec.ip}}}}
        if spec.command is not None:
            config["Cmd"] = spec.command
        if spec.entrypoint is not None:
            config["Entrypoint"] = spec.entrypoint
        return config

    async def create_container(self, spec: ContainerSpec) -> ContainerInfo:
        if not await self.image_exists(spec.image):
            raise errors.NotFoundError(f"image {spec.image} is not in {self.name}",
                                       f"build or pull it first ({self.name} images lists what is there)")
        # Shielded: a cancelled request could still make the container after the caller's undo
        # looked for it (a plan cancels its other steps when one fails).
        with anyio.CancelScope(shield=True):
            await self._call(self._api.containers.create(self._container_config(spec), name=spec.name),
                             what=f"container name {spec.name}")
        info = await self.get_container(spec.name)
        assert info is not None
        return info

    async def put_files(self, name: str, directory: str, files: Mapping[str, bytes]) -> None:
        container = await self._container(name)
        await self._call(container.put_archive("/", _files_archive(directory, files)), what=f"container {name}")

    async def start_container(self, name: str) -> None:
        container = await self._container(name)
        await self._call(container.start(), what=f"container {name}")

    @staticmethod
    def _info(data: dict[str, Any]) -> ContainerInfo:
        networks = data.get("NetworkSettings", {}).get("Networks") or {}
        return ContainerInfo(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            image=data["Config"]["Image"],
            state=data["State"]["Status"],
            labels=data["Config"].get("Labels") or {},
            addresses={net: cfg.get("IPAddress", "") for net, cfg in networks.items()},
            created=_unix_time(str(data.get("Created", ""))),
        )

    async def get_container(self, name: str) -> ContainerInfo | None:
        try:
            container = await self._container(name)
        except errors.NotFoundError:
            return None
        return self._info(container._container)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        found = await self._call(self._api.containers.list(all=True, filters=filters))
        infos = []
        for container in found:
            info = await self.get_container(container.id)
            if info is not None:
                infos.append(info)
        return infos

    async def remove_container(self, name: str) -> None:
        try:
            container = await self._container(name)
            await self._call(container.delete(force=True, v=True), what=f"container {name}")
        except errors.NotFoundError:
            pass

    async def exec(self, name: str, command: Sequence[str]) -> tuple[int, str]:
        container = await self._container(name)
        execution = await self._call(container.exec(list(command), stdout=True, stderr=True))
        chunks: list[bytes] = []
        async with execution.start(detach=False) as stream:
            while (message := await stream.read_out()) is not None:
                chunks.append(message.data)
        result = await self._call(execution.inspect())
        return int(result.get("ExitCode") or 0), b"".join(chunks).decode(errors="replace")

    async def run_to_completion(self, spec: ContainerSpec) -> tuple[int, str]:
        await self.create_container(spec)
        try:
            await self.start_container(spec.name)
            code = await self.wait_container(spec.name)
            container = await self._container(spec.name)
            lines = await self._call(container.log(stdout=True, stderr=True))
            return code, "".join(lines)
        finally:
            await self.remove_container(spec.name)

    async def logs(self, name: str, *, follow: bool = True, since: float | None = None,
                   tail: int | None = None) -> AsyncIterator[str]:
        container = await self._container(name)
        query: dict[str, Any] = {"stdout": True, "stderr": True}
        if since is not None:
            query["since"] = f"{since:.9f}"  # the engine takes seconds.nanoseconds, as `docker logs` sends it
        if tail is not None:
            query["tail"] = tail
        if follow:
            async for line in container.log(follow=True, **query):
                yield line
            return
        for line in await self._call(container.log(**query), what=f"container {name}"):
            yield line

    async def wait_container(self, name: str) -> int:
        container = await self._container(name)
        result = await self._call(container.wait())
        return int(result.get("StatusCode", 1))

    async def send_signal(self, name: str, signal: str) -> None:
        container = await self._container(name)
        await self._call(container.kill(signal=signal), what=f"container {name}")

"""The contract of a container runtime plugin (:class:`gefyra.core.spi.runtime.ContainerRuntime`).

A plugin's own test module subclasses :class:`RuntimeContract` and provides two fixtures:
``runtime`` (a connected runtime) and ``image`` (an image in that engine, with ``sh`` and ``cat``,
whose default command keeps running)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from gefyra import errors
from gefyra.core.spi.runtime import ContainerRuntime, ContainerSpec


def _name(what: str) -> str:
    return f"gfy-contract-{what}-{uuid.uuid4().hex[:6]}"


class RuntimeContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins' subclasses

    async def test_version_and_images(self, runtime: ContainerRuntime, image: str) -> None:
        assert await runtime.version()
        assert await runtime.image_exists(image)
        assert not await runtime.image_exists("gefyra/contract-no-such-image:0")

    async def test_network_lifecycle_is_idempotent(self, runtime: ContainerRuntime) -> None:
        name, labels = _name("net"), {"gefyra.dev/contract": "1"}
        try:
            created = await runtime.ensure_network(name, labels)
            again = await runtime.ensure_network(name, labels)
            assert created.name == again.name == name and created.subnet == again.subnet and created.gateway
            found = await runtime.get_network(name)
            assert found is not None and found.labels.get("gefyra.dev/contract") == "1"
        finally:
            await runtime.remove_network(name)
        await runtime.remove_network(name)  # twice: harmless
        assert await runtime.get_network(name) is None

    async def test_a_network_gives_its_containers_the_mtu_asked_for(self, runtime: ContainerRuntime,
                                                                     image: str) -> None:
        name, container = _name("mtu"), _name("mtu-ctr")
        try:
            created = await runtime.ensure_network(name, {"gefyra.dev/contract": "1"}, mtu=9000)
            assert created.mtu == 9000
            await runtime.create_container(ContainerSpec(name=container, image=image, network=name))
            await runtime.start_container(container)
            assert await runtime.exec(container, ["cat", "/sys/class/net/eth0/mtu"]) == (0, "9000\n")
        finally:
            await runtime.remove_container(container)
            await runtime.remove_network(name)

    async def test_container_lifecycle_files_exec_and_labels(self, runtime: ContainerRuntime, image: str) -> None:
        name, label = _name("ctr"), {"gefyra.dev/contract": uuid.uuid4().hex}
        try:
            info = await runtime.create_container(ContainerSpec(name=name, image=image, labels=label))
            assert info.name == name and not info.running
            with pytest.raises(errors.ConflictError):
                await runtime.create_container(ContainerSpec(name=name, image=image))
            await runtime.put_files(name, "/etc/gefyra-contract", {"a.txt": b"one", "b.txt": b"two"})
            await runtime.start_container(name)
            running = await runtime.get_container(name)
            assert running is not None and running.running and running.labels == running.labels | label
            assert await runtime.exec(name, ["cat", "/etc/gefyra-contract/a.txt", "/etc/gefyra-contract/b.txt"]) == (0, "onetwo")
            code, _ = await runtime.exec(name, ["sh", "-c", "exit 7"])
            assert code == 7
            assert [c.name for c in await runtime.list_containers(label)] == [name]
        finally:
            await runtime.remove_container(name)
        await runtime.remove_container(name)
        assert await runtime.get_container(name) is None
        assert await runtime.list_containers(label) == []

    async def test_helper_runs_to_completion_and_is_removed(self, runtime: ContainerRuntime, image: str) -> None:
        name = _name("helper")
        code, output = await runtime.run_to_completion(ContainerSpec(
            name=name, image=image, entrypoint=["sh", "-c"], command=["echo from-helper; exit 3"]))
        assert code == 3 and "from-helper" in output
        assert await runtime.get_container(name) is None

    async def test_logs_all_the_last_lines_and_following(self, runtime: ContainerRuntime, image: str) -> None:
        name = _name("logs")
        try:
            await runtime.create_container(ContainerSpec(
                name=name, image=image, entrypoint=["sh", "-c"], command=["echo one; echo two; echo three"]))
            await runtime.start_container(name)
            followed = [line async for line in runtime.logs(name)]  # until it stops
            assert "".join(followed).split() == ["one", "two", "three"], followed
            assert "".join([line async for line in runtime.logs(name, follow=False)]).split() == ["one", "two", "three"]
            assert "".join([line async for line in runtime.logs(name, follow=False, tail=1)]).split() == ["three"]
            assert [line async for line in runtime.logs(name, follow=False, since=time.time() + 3600)] == []
            earlier = [line async for line in runtime.logs(name, follow=False, since=time.time() - 3600)]
            assert "".join(earlier).split() == ["one", "two", "three"]
        finally:
            await runtime.remove_container(name)

    async def test_an_image_is_built_from_a_context(self, runtime: ContainerRuntime, image: str,
                                                    tmp_path: Path) -> None:
        tag = f"gefyra-contract-build:{uuid.uuid4().hex[:6]}"
        (tmp_path / "Dockerfile").write_text(f"FROM {image}\nCOPY hello.txt /hello.txt\n")
        (tmp_path / "hello.txt").write_text("built")
        lines: list[str] = []

        async def progress(line: str) -> None:
            lines.append(line)

        built = await runtime.build_image(str(tmp_path), tag, progress)
        assert built and await runtime.image_exists(tag)
        code, output = await runtime.run_to_completion(ContainerSpec(name=_name("built"), image=tag,
                                                                     entrypoint=["cat"], command=["/hello.txt"]))
        assert (code, output) == (0, "built")
        with pytest.raises(errors.UsageError):
            await runtime.build_image(str(tmp_path / "nothing"), tag, progress)

    async def test_missing_things_are_gefyra_errors(self, runtime: ContainerRuntime) -> None:
        with pytest.raises(errors.NotFoundError):
            await runtime.create_container(ContainerSpec(name=_name("x"), image="gefyra/contract-no-such-image:0"))
        with pytest.raises(errors.NotFoundError):
            await runtime.exec(_name("absent"), ["true"])

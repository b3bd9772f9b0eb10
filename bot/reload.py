"""Live config reload: on SIGHUP, and when the config file's content changes.

The file is checked every second or so (its SHA-256, so an edit that keeps size and mtime
is seen too). A changed file is validated in full first. If it has problems, signoff keeps
running on the config it has, logs each problem as ``file:line: key.path: message``,
writes a ``config_rejected`` audit entry and shows the problems in ``/readyz`` details.
If it is valid, the rules are swapped in one step (``ApprovalService.reconfigure``), the
agent API, logging and the chat adapters whose settings changed follow, and a
``config_loaded`` audit entry records the file's SHA-256.

What a reload does not change: requests already pending keep the policy snapshot they were
made with (timeouts, quorum, levels), except that who may vote is always judged against
the current people and policies, so someone taken out of the config can no longer decide;
and time-boxed grants the new config no longer supports (their giver is no longer an
approver, their policy's grants were removed or changed) end, audited.
The listen address, the database and turning the web inbox on or off take a restart; a
reload that changes them says so in the log, the audit entry and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from approvals.audit import AuditKind
from approvals.egress import EgressPolicy
from approvals.ports import Adapter
from bot.app import api_limits, build_chat_adapters, rules_from
from bot.logging_setup import configure_logging, remember_config_secrets
from bot.runtime import Runtime
from config import ConfigError, LoadedConfig, load_config
from config.loader import MAX_CONFIG_BYTES
from config.schema import CHAT_PLATFORMS, EMAIL_PLATFORM, SignoffSettings

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often the config file is looked at."""
TEST_POLL_ENV = "SIGNOFF_TEST_CONFIG_POLL_SECONDS"
"""Test-only: another interval for looking at the file (a large one leaves only SIGHUP)."""
SIGHUP_REASON = "SIGHUP"
FILE_CHANGED_REASON = "file changed"
MAX_PROBLEMS_RECORDED = 50

AdapterFactory = Callable[[LoadedConfig, str], Mapping[str, Adapter]]
"""Builds the chat adapters a config asks for (``bot.app.build_chat_adapters``)."""


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did.

    Attributes:
        applied: the new config is in use.
        sha256: the SHA-256 of the file that was read (``None`` when it could not be read).
        problems: why it was refused, as ``file:line: key.path: message``.
        adapters_restarted: platforms whose adapter was replaced.
        restart_needed: settings that changed but take effect only after a restart.
        unchanged: the file had the content already in use; nothing was done.
    """

    applied: bool
    sha256: str | None
    problems: tuple[str, ...] = ()
    adapters_restarted: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    unchanged: bool = False


@dataclass
class _Watch:
    """What the watcher last acted on: the content hash of the file."""

    seen: str | None
    applied: str | None


def _read(path: str) -> bytes:
    with Path(path).open("rb") as file:
        return file.read(MAX_CONFIG_BYTES + 1)


def _changed_platforms(old: SignoffSettings, new: SignoffSettings) -> list[str]:
    """Chat platforms whose adapter must be rebuilt: their settings (secrets included) or
    the public URL their cards link to changed, or they were added or removed."""
    moved = old.server.public_url != new.server.public_url
    changed = []
    for platform in (*CHAT_PLATFORMS, EMAIL_PLATFORM):
        before = getattr(old.platforms, platform)
        after = getattr(new.platforms, platform)
        if before != after or (moved and after is not None):
            changed.append(platform)
    return changed


def _needs_restart(old: SignoffSettings, new: SignoffSettings) -> list[str]:
    needs = []
    if old.server.listen != new.server.listen:
        needs.append("server.listen")
    if old.database.url != new.database.url:
        needs.append("database.url")
    if old.platforms.web.enabled != new.platforms.web.enabled:
        needs.append("platforms.web.enabled")
    elif new.platforms.web.enabled and old.server.public_url != new.server.public_url:
        needs.append("server.public_url (web inbox links)")
    return needs


class ConfigReloader:
    """Watches one config file and applies its changes to a running :class:`Runtime`.

    Args:
        runtime: the running process.
        path: the config file the runtime was started from.
        poll_interval: seconds between looks at the file; ``None`` for :data:`POLL_SECONDS`
            (or the test-only :data:`TEST_POLL_ENV`).
        environ: where ``${ENV_VAR}`` references are looked up (``os.environ``).
        build_adapters: builds chat adapters from a config (tests pass recording ones).
    """

    def __init__(
        self,
        runtime: Runtime,
        path: str,
        *,
        poll_interval: float | None = None,
        environ: Mapping[str, str] | None = None,
        build_adapters: AdapterFactory | None = None,
    ) -> None:
        self._runtime = runtime
        self._path = path
        if poll_interval is None:
            poll_interval = float(os.environ.get(TEST_POLL_ENV) or POLL_SECONDS)
        self._poll_interval = poll_interval
        self._environ = environ
        self._build_adapters = build_adapters or partial(
            build_chat_adapters, links=runtime.service.links
        )
        loaded = runtime.config.file_sha256
        self._watch = _Watch(seen=loaded, applied=loaded)
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._signal_installed = False

    @property
    def path(self) -> str:
        return self._path

    async def start(self, _runtime: Runtime | None = None) -> None:
        """Begin watching (usable as a ``Runtime.on_started`` hook); stops with the runtime."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            self._signal_installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            log.info("SIGHUP is not available here; the config file is still watched")
        self._task = asyncio.create_task(self._run(), name="config-reloader")

    async def stop(self) -> None:
        """Stop watching (also happens by itself when the runtime stops)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._remove_signal_handler()

    def _remove_signal_handler(self) -> None:
        if self._signal_installed:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False

    def request_reload(self) -> None:
        """Reload at once, changed or not (what SIGHUP does)."""
        self._wanted.set()

    async def _run(self) -> None:
        stopped = asyncio.ensure_future(self._runtime.wait_stopped())
        try:
            while True:
                wanted = asyncio.ensure_future(self._wanted.wait())
                await asyncio.wait(
                    {stopped, wanted},
                    timeout=self._poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopped.done():
                    wanted.cancel()
                    return
                if wanted.done():
                    self._wanted.clear()
                    await self._reload_logging_failures(SIGHUP_REASON)
                else:
                    wanted.cancel()
                    await self._reload_logging_failures(FILE_CHANGED_REASON)
        finally:
            stopped.cancel()
            self._remove_signal_handler()

    async def _reload_logging_failures(self, reason: str) -> None:
        try:
            await self.reload(reason)
        except Exception:
            # A reload must never take the running service down with it.
            log.exception("config reload (%s) failed; still running on the previous config", reason)

    async def reload(self, reason: str = SIGHUP_REASON) -> ReloadResult | None:
        """Read the file and apply it if it is valid.

        Args:
            reason: :data:`SIGHUP_REASON` reloads whatever the file holds;
                :data:`FILE_CHANGED_REASON` only acts when the content differs from what
                was last applied or refused.

        Returns:
            What happened, or ``None`` when there was nothing to do (the file is unchanged,
            or was unreadable while watching).
        """
        async with self._lock:
            try:
                raw: bytes | None = await asyncio.to_thread(_read, self._path)
            except OSError:
                raw = None  # mid-save, or removed: the watcher waits; a SIGHUP reports it
            digest = None if raw is None else hashlib.sha256(raw).hexdigest()
            if reason == FILE_CHANGED_REASON and (raw is None or digest == self._watch.seen):
                return None
            in_use = digest is not None and digest == self._watch.applied
            if reason == SIGHUP_REASON and in_use and self._watch.seen == digest:
                # Nothing to do, unless a refused version stands in between: then the file
                # is applied again, which also clears the refusal.
                log.info("config reload (%s): %s is unchanged", reason, self._path)
                return ReloadResult(applied=True, sha256=digest, unchanged=True)
            self._watch.seen = digest
            try:
                loaded = await asyncio.to_thread(load_config, self._path, environ=self._environ)
            except ConfigError as exc:
                return await self._reject(reason, digest, [str(p) for p in exc.problems])
            if loaded.file_sha256 is not None:
                self._watch.seen = loaded.file_sha256
            return await self._apply(reason, loaded)

    async def _reject(self, reason: str, digest: str | None, problems: list[str]) -> ReloadResult:
        for problem in problems:
            log.error("config reload refused (%s): %s", reason, problem)
        log.error(
            "config reload refused: %d problem(s) in %s; still running on the previous config",
            len(problems),
            self._path,
        )
        runtime = self._runtime
        now = runtime.service.clock.now()
        recorded = problems[:MAX_PROBLEMS_RECORDED]
        await runtime.store.run(
            lambda tx: tx.append_audit(
                AuditKind.CONFIG_REJECTED,
                at=now,
                actor="signoff",
                data={
                    "source": self._path,
                    "sha256": digest,
                    "reason": reason,
                    "problems": recorded,
                    "running_sha256": self._watch.applied,
                },
            )
        )
        runtime.readiness_details["config"] = {
            "status": "rejected",
            "at": now.isoformat(),
            "source": self._path,
            "sha256": digest,
            "problems": recorded,
            "running_sha256": self._watch.applied,
        }
        return ReloadResult(applied=False, sha256=digest, problems=tuple(problems))

    async def _apply(self, reason: str, new: LoadedConfig) -> ReloadResult:
        runtime = self._runtime
        old = runtime.config
        # Before anything is built with them: a new token must never reach a log line.
        remember_config_secrets(new.settings)
        changed = _changed_platforms(old.settings, new.settings)
        public_url = str(new.settings.server.public_url)
        # Build first: a config whose adapters cannot even be made is refused whole.
        try:
            built = dict(self._build_adapters(new, public_url)) if changed else {}
        except Exception as exc:
            log.exception("config reload refused: building the changed adapters failed")
            problem = f"{self._path}: platforms: cannot build the adapters: {exc}"
            return await self._reject(reason, new.file_sha256, [problem])

        # The swap: from here on new requests, votes and deadline steps use the new rules.
        runtime.service.reconfigure(rules_from(new))
        # Grants the new config no longer supports end now, audited (a giver taken out of
        # the approvers, a policy's grants removed or changed). Each use re-checks too.
        for grant, why in await runtime.service.end_stale_grants():
            log.info("config reload ended grant %s: %s", grant.id, why)
        runtime.agent_api.settings = new.settings
        if runtime.agent_api.limiter.follows_config:
            runtime.agent_api.limiter.configure(*api_limits(new.settings))
        if runtime.webhooks is not None:
            runtime.webhooks.egress = EgressPolicy(new.settings.webhooks.allow)
        runtime.config = new
        if new.settings.log != old.settings.log:
            configure_logging(new.settings.log)

        restart_needed = _needs_restart(old.settings, new.settings)
        restarted: list[str] = []
        for platform in changed:
            try:
                replaced = await runtime.replace_adapter(platform, built.get(platform))
            except Exception:
                log.exception("the %s adapter did not start with the new settings", platform)
                restart_needed.append(f"platforms.{platform} (the adapter failed to start)")
                continue
            if replaced:
                restarted.append(platform)
            else:
                restart_needed.append(f"platforms.{platform} (shared among processes)")
        self._watch.applied = new.file_sha256
        now = runtime.service.clock.now()
        await runtime.store.run(
            lambda tx: tx.append_audit(
                AuditKind.CONFIG_LOADED,
                at=now,
                actor="signoff",
                data={
                    "source": self._path,
                    "sha256": new.file_sha256,
                    "reason": reason,
                    "adapters_restarted": restarted,
                    "restart_needed": restart_needed,
                },
            )
        )
        runtime.readiness_details.pop("config", None)
        if restart_needed:
            runtime.readiness_details["config"] = {
                "status": "loaded",
                "at": now.isoformat(),
                "sha256": new.file_sha256,
                "restart_needed": restart_needed,
            }
            log.warning(
                "config reloaded, but these changes take a restart: %s", ", ".join(restart_needed)
            )
        log.info(
            "config reloaded (%s) from %s, sha256 %s; adapters restarted: %s",
            reason,
            self._path,
            new.file_sha256,
            ", ".join(restarted) or "none",
        )
        return ReloadResult(
            applied=True,
            sha256=new.file_sha256,
            adapters_restarted=tuple(restarted),
            restart_needed=tuple(restart_needed),
        )

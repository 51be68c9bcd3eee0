"""The service's automation verbs (the rules in force, their runs, rules added and
removed through the API, answered by :mod:`dispatcher.engine.automations`) and its
voice links."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from dispatcher.clock import Clock
from dispatcher.core.results import Run
from dispatcher.engine.automations import Engine, Rule
from dispatcher.store import Store


class AutomationVerbs:
    """Automation rules and runs; voice links played."""

    store: Store
    clock: Clock
    automations: Engine

    def automation_rules(self) -> list[tuple[Rule, Literal["file", "api"]]]:
        """The rules in force, each with where it came from: the automations file or
        the API."""
        engine = self.automations
        return [(rule, "file" if rule.name in engine.from_file else "api") for rule in engine.rules]

    async def automation_runs(
        self, limit: int = 50, *, due_by: datetime | None = None
    ) -> list[Run]:
        """The automations' runs, newest first; with ``due_by``, only those still due
        at that time, earliest first."""
        if due_by is not None:
            return await self.store.due_runs(due_by, limit)
        return await self.store.list_runs(limit)

    async def add_automation(self, raw: object) -> Rule:
        """Add a rule given as JSON (the shape of
        :class:`~dispatcher.engine.automations.NewAutomation`); it is kept in the store,
        where every worker sharing it finds it (the leader runs it)."""
        return await self.automations.add(raw)

    async def remove_automation(self, name: str) -> None:
        """Remove a rule added through the API (a rule of the file stays)."""
        await self.automations.remove(name)

    # -- voice links -----------------------------------------------------------------
    async def voice_link(self, token: str) -> tuple[str, str] | None:
        """A voice link's text (its message id) and what it plays, if the token is known."""
        return await self.store.voice_link(token)

    async def record_play(self, token: str) -> None:
        """A voice link was played now: a text Play (an unknown token counts nowhere)."""
        await self.store.record_play(token, self.clock.now().wall)

"""The settings a parent chose in Home Assistant: effective settings = the config file + these.

A choice (the check-in method, the cry confirmation time) is kept in the state file, so it
outlasts a restart. Each choice also remembers the config file's value when it was made: editing
that key in the file afterwards hands the key back to the file (the newer of the two wins). A
remembered method that the age gate now refuses falls back to the file's, with a warning.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from pi_monitor.commands import Command, SetMethod, SetMinBout
from pi_monitor.config import ConfigError, Settings, choice_value, with_choice
from pi_monitor.methods import AgeGateError, age_gate
from pi_monitor.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS choices (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    config_value TEXT NOT NULL
);
"""


METHOD, MIN_BOUT = "checkin.method", "detector.min_bout_s"  # the settings HA can choose


def choice_of(command: Command) -> tuple[str, Any] | None:
    """The setting ("section.name", value) a command chooses, if it chooses one."""
    match command:
        case SetMethod(method=method):
            return METHOD, method
        case SetMinBout(seconds=seconds):
            return MIN_BOUT, seconds
    return None


class Choices:
    """The config file's settings with the parent's HA choices on top (`settings`)."""

    def __init__(self, store: Store, config: Settings, today: datetime.date) -> None:
        store.create(SCHEMA)
        self.store = store
        self.config = config
        self.settings = self._recall(today)

    def choose(self, command: Command) -> Settings:
        """Remember the setting `command` chooses (already accepted); returns the new settings."""
        choice = choice_of(command)
        if choice is not None:
            key, value = choice
            self.settings = with_choice(self.settings, key, value)
            self.store.write(
                "INSERT OR REPLACE INTO choices (key, value, config_value) VALUES (?, ?, ?)",
                (key, json.dumps(value), json.dumps(choice_value(self.config, key))),
            )
        return self.settings

    def _recall(self, today: datetime.date) -> Settings:
        settings = self.config
        for key, value, then in self.store.rows("SELECT key, value, config_value FROM choices"):
            if key not in (METHOD, MIN_BOUT):
                self._forget(key)
                continue
            value, then = json.loads(value), json.loads(then)
            in_file = choice_value(self.config, key)
            if in_file != then:
                log.info("'%s' was edited in the config file since HA chose %r", key, value)
                self._forget(key)
                continue
            try:
                chosen = with_choice(settings, key, value)
                age_gate(chosen.checkin.method, chosen.checkin.birth_date, today)
            except (ConfigError, AgeGateError) as e:
                log.warning("%s: HA's choice no longer applies (%s)", self.store.path, e)
                self._forget(key)
                continue
            log.info("'%s' = %r as chosen in Home Assistant (config file: %r)", key, value, in_file)
            settings = chosen
        return settings

    def _forget(self, key: str) -> None:
        self.store.write("DELETE FROM choices WHERE key = ?", (key,))

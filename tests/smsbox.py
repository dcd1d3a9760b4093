"""An SMS sender for tests: it keeps what it was given."""

from __future__ import annotations

import re

from controller.errors import SmsFailed


class Outbox:
    """An SMS sender that keeps what it was given; ``fail`` makes it refuse."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = False

    def send(self, number: str, text: str) -> None:
        if self.fail:
            raise SmsFailed("the SMS gateway answered 502")
        self.sent.append((number, text))

    def last_code(self) -> str:
        match = re.match(r"(\d{6}) ", self.sent[-1][1])
        assert match, self.sent[-1]
        return match.group(1)

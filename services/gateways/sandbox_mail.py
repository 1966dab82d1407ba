"""Sandbox mail: keeps every sent message in `<store_dir>/mail.sqlite3` instead of delivering it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from services.core.errors import GatewayError
from services.gateways.base import Json, OutgoingEmail
from services.gateways.faults import Faults
from services.gateways.sandbox_store import SandboxStore, checked_now, random_id, utc_now

PROVIDER = "mail"
_SCOPE = "mail"


class SandboxMail:
    """An outbox implementing `MailGateway`: messages are stored, never delivered; with fault injection."""

    mode = "sandbox"

    def __init__(
        self, store_dir: Path, *, clock: Callable[[], datetime] | None = None, faults: Faults | None = None
    ) -> None:
        self.store = SandboxStore(Path(store_dir) / "mail.sqlite3")
        self.clock: Callable[[], datetime] = clock or utc_now
        self.faults = faults if faults is not None else Faults()

    def send(self, message: OutgoingEmail) -> str:
        """Store the message and return its id; the same idempotency key stores it once and returns the first id."""
        ctx: dict[str, Any] = {
            "message": message,
            "to": message.to,
            "kind": message.kind,
            "booking_id": message.booking_id,
        }
        self.faults.before("send", PROVIDER, **ctx)
        if "@" not in message.to.strip(" @"):
            raise GatewayError(
                f"Invalid recipient address {message.to!r}", transient=False, provider=PROVIDER, status=400
            )
        with self.store.transaction() as tx:
            seen = None if message.idempotency_key is None else tx.lookup_key(_SCOPE, message.idempotency_key)
            if seen is not None:
                message_id = seen.id
            else:
                message_id = random_id("msg_")
                tx.put(
                    "message",
                    message_id,
                    {
                        "id": message_id,
                        "to": message.to,
                        "subject": message.subject,
                        "text": message.text,
                        "html": message.html,
                        "kind": message.kind,
                        "booking_id": message.booking_id,
                        "attachments": [
                            {"filename": name, "mime": mime, "content_b64": base64.b64encode(content).decode("ascii")}
                            for name, mime, content in message.attachments
                        ],
                        "idempotency_key": message.idempotency_key,
                        "sent_at": checked_now(self.clock).isoformat(),
                    },
                )
                if message.idempotency_key is not None:
                    tx.remember_key(_SCOPE, message.idempotency_key, "message", message_id)
        self.faults.after("send", PROVIDER, **ctx)
        return message_id

    # -- sandbox only ----------------------------------------------------------------------------------------------

    def messages(self, booking_id: int | None = None, *, kind: str | None = None, limit: int = 100) -> list[Json]:
        """Stored messages, newest first, optionally for one booking and/or of one kind."""
        found = self.store.list(
            "message",
            lambda m: (
                (booking_id is None or m.get("booking_id") == booking_id) and (kind is None or m.get("kind") == kind)
            ),
            newest_first=True,
        )
        return found[:limit]

    def get(self, message_id: str) -> Json | None:
        """One stored message, or None."""
        return self.store.get("message", message_id)

    def is_empty(self) -> bool:
        """True when no message has been sent."""
        return self.store.is_empty()

    def reset(self) -> None:
        """Forget every message and idempotency key."""
        self.store.reset()


def attachment_bytes(attachment: Json) -> bytes:
    """The decoded content of a stored attachment."""
    return base64.b64decode(attachment["content_b64"])

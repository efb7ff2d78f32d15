"""`billing-keys create --tenant ID | --admin | --gateway` and `billing-keys revoke KEY`.

`create` prints the new key alone on its last line: it is shown once and stored only hashed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from server.bootstrap import start
from server.domain.errors import DomainError
from server.persistence import db
from server.services import keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="billing-keys", description="Create and revoke API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", help="bind the key to this tenant id")
    scope.add_argument("--admin", action="store_true", help="an admin key: all tenants, all methods")
    scope.add_argument(
        "--gateway",
        action="store_true",
        help="the key Envoy's grant and access-log calls carry (billing-stack keeps its own): nothing else",
    )
    revoke = commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key")
    args = parser.parse_args(argv)

    start("billing-keys")
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with db.session():
            if args.command == "create" and args.gateway:
                print("created a gateway key (Envoy's own calls only); it is not shown again:")
                print(keys.create_gateway_key(now=now))
            elif args.command == "create":
                key = keys.create_key(now=now, tenant_id=args.tenant, admin=args.admin)
                print(
                    f"created {'an admin' if args.admin else f'a tenant {args.tenant!r}'} key; it is not shown again:"
                )
                print(key)
            else:
                keys.revoke_key(args.key, now=now)
                print("revoked")
    except DomainError as error:
        print(f"billing-keys: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

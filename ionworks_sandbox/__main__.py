"""``python -m ionworks_sandbox``: run the sandbox server.

Example:
    python -m ionworks_sandbox --port 8765 --data-dir .sandbox-data --api-key dev-key
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn

from .app import create_app
from .settings import SandboxSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="ionworks-prefect sandbox", description="Run a local Ionworks-compatible API.")
    parser.add_argument("--host", default=env("IONWORKS_SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("IONWORKS_SANDBOX_PORT", "8765")))
    parser.add_argument("--data-dir", type=Path, default=Path(env("IONWORKS_SANDBOX_DATA_DIR", ".sandbox-data")))
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="an accepted key, KEY or ORG:KEY; repeat for more (env: IONWORKS_SANDBOX_API_KEYS, comma-separated)",
    )
    parser.add_argument("--workers", type=int, default=int(env("IONWORKS_SANDBOX_WORKERS", "2")))
    parser.add_argument(
        "--max-body-mb", type=float, default=float(env("IONWORKS_SANDBOX_MAX_BODY_MB", "512")), help="request body limit"
    )
    parser.add_argument(
        "--upload-ttl-seconds",
        type=float,
        default=float(env("IONWORKS_SANDBOX_UPLOAD_TTL_SECONDS", "86400")),
        help="how long an initiated upload waits for its confirm before it and its files are removed",
    )
    parser.add_argument(
        "--download-url-ttl-seconds",
        type=float,
        default=float(env("IONWORKS_SANDBOX_DOWNLOAD_URL_TTL_SECONDS", "900")),
        help="how long a signed download link stays valid",
    )
    parser.add_argument(
        "--request-log", type=Path, default=env("IONWORKS_SANDBOX_REQUEST_LOG"),
        help="append one line per request (start, method, path, status, ms) to this file",
    )
    parser.add_argument("--public-url", default=env("IONWORKS_SANDBOX_PUBLIC_URL"), help="base URL clients reach")
    args = parser.parse_args(argv)
    if not args.api_keys:
        keys = env("IONWORKS_SANDBOX_API_KEYS") or env("IONWORKS_API_KEY") or ""
        args.api_keys = [k.strip() for k in keys.split(",") if k.strip()]
    if not args.api_keys:
        parser.error("give at least one --api-key (or set IONWORKS_SANDBOX_API_KEYS)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    public_url = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    settings = SandboxSettings(
        data_dir=args.data_dir.resolve(),
        api_keys=tuple(args.api_keys),
        public_url=public_url,
        workers=args.workers,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        upload_ttl_s=args.upload_ttl_seconds,
        download_url_ttl_s=args.download_url_ttl_seconds,
        request_log=args.request_log.resolve() if args.request_log else None,
    )
    first_key, first_org = next(iter(settings.organizations.items()))
    print(f"IONWORKS_API_URL={public_url}")
    print(f"IONWORKS_API_KEY={first_key}")
    print(f"IONWORKS_PROJECT_ID={first_org.default_project_id}")
    print(f"IONWORKS_APP_URL={public_url}/app", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(main())

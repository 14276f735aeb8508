"""The comparison servers of ``bench.webhook_bench``: the floor and kopf's WebhookServer.

``python -m bench.webhook_peers KIND --port N --cert C --key K [--signing-key S] [--loop L]``

* ``floor``: a minimal aiohttp handler over TLS that reads the body, parses the review (with
  the same JSON library the webhook uses) and returns a fixed ``allowed: true`` with the uid
  echoed. It does no work a webhook could skip: the ceiling of this transport stack.
* ``kopf``: kopf's ``WebhookServer`` (the admission server a Python operator author would pick)
  calling a straightforward stamping function written against the public ``bootstrap_token``
  API: trust check, ``BootstrapClaims`` + ``mint`` (PyJWT), the annotation JSON Patch, base64.
  No audit line and no metrics (so it does less than the webhook).
* ``kopf-fast``: the same kopf server calling the webhook's own pure stamping path
  (``webhook.stamp.decide`` + ``webhook.response.complete``): separates the transport's share
  from the stamping's.

Both kopf variants answer exactly what the webhook answers for the benchmark review (a token
that verifies with the JWKS). ``--loop`` picks asyncio's own event loop or uvloop: ``pip install
kopf`` brings no uvloop (asyncio), ``kopf run`` uses uvloop when it is installed (the
``kopf[uvloop]`` extra). Prints ``ready`` on stdout once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from bootstrap_token import (
    BootstrapClaims,
    OwnerRef,
    PodRef,
    SigningKey,
    TrustPolicy,
    mint,
    new_jti,
)
from bootstrap_token.jsonio import dumps, loads
from webhook.patch import set_annotation

ANNOTATION = "agents.streamspace.io/bootstrap-token"
TRUST = TrustPolicy(namespaces=frozenset({"streamspace"}))


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def _floor_mutate(request: web.Request) -> web.Response:
    review = loads(await request.read())
    answer = {
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    }
    return web.Response(body=dumps(answer), content_type="application/json")


async def serve_floor(port: int, cert: Path, key: Path) -> None:
    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/mutate", _floor_mutate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=_server_context(cert, key)).start()
    await _ready_until_signal()
    await runner.cleanup()


def naive_stamp(document: dict[str, Any], signing_key: SigningKey) -> dict[str, Any]:
    """Stamp the way a first kopf handler would: public API only, stdlib json, no audit."""
    request = document["request"]
    obj = request["object"]
    metadata = obj.get("metadata") or {}
    namespace = request.get("namespace") or ""
    service_account = (obj.get("spec") or {}).get("serviceAccountName") or "default"
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    if (
        request.get("operation") == "CREATE"
        and TRUST.selects(metadata.get("labels"))
        and TRUST.untrusted_reason(namespace, service_account) is None
    ):
        now = int(time.time())
        owners = metadata.get("ownerReferences") or []
        owner = next((r for r in owners if r.get("controller")), None)
        claims = BootstrapClaims(
            iss="agent-bootstrap-webhook",
            aud="agent-approver",
            iat=now,
            nbf=now,
            exp=now + 3600,
            jti=new_jti(),
            cluster="bench",
            namespace=namespace,
            service_account=service_account,
            pod=PodRef(name=metadata["name"])
            if metadata.get("name")
            else PodRef(generate_name=metadata["generateName"]),
            owner=OwnerRef(kind=owner["kind"], name=owner["name"], uid=owner["uid"])
            if owner
            else None,
            admission_uid=request["uid"],
        )
        patch = set_annotation(obj, key=ANNOTATION, value=mint(claims, signing_key, now=now))
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode("ascii")
    return {"apiVersion": document["apiVersion"], "kind": "AdmissionReview", "response": response}


def fast_stamp(document: dict[str, Any], signing_key: SigningKey) -> dict[str, Any]:
    """Stamp with the webhook's own pure path (parse, decide, complete)."""
    from webhook.credentials import SigningMaterial
    from webhook.response import complete, from_decision
    from webhook.review import parse_review
    from webhook.stamp import StampConfig, decide

    global _FAST
    if _FAST is None:
        _FAST = (
            StampConfig(
                trust=TRUST,
                annotation_key=ANNOTATION,
                issuer="agent-bootstrap-webhook",
                audience="agent-approver",
                cluster="bench",
                ttl_seconds=3600,
            ),
            SigningMaterial.of(signing_key).signer,
        )
    config, signer = _FAST
    # kopf hands over parsed JSON; the webhook's reader takes bytes, so this re-encodes once
    # (about 1 µs with orjson), a cost the kopf variant carries and the webhook does not.
    review = parse_review(dumps(document))
    decision = decide(review.request, config=config, signer=signer, now=int(time.time()))
    return complete(from_decision(decision), api_version=review.api_version, uid=review.request.uid)


_FAST: Any = None


async def serve_kopf(port: int, cert: Path, key: Path, signing_key: SigningKey, fast: bool) -> None:
    import kopf

    stamp = fast_stamp if fast else naive_stamp

    async def fn(request: Any, **_: Any) -> Any:
        return stamp(request, signing_key)

    server = kopf.WebhookServer(
        addr="127.0.0.1", port=port, certfile=cert, pkeyfile=key, file_check_interval=3600.0
    )
    generator = cast(AsyncGenerator[Any, None], server(fn))
    await generator.__anext__()  # listening now
    await _ready_until_signal()
    await generator.aclose()


async def _ready_until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_peers")
    parser.add_argument("kind", choices=["floor", "kopf", "kopf-fast"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--signing-key", type=Path)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args(argv)
    factory: Any = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if args.kind == "floor":
            runner.run(serve_floor(args.port, args.cert, args.key))
        else:
            if args.signing_key is None:
                parser.error("--signing-key is required for kopf")
            key = SigningKey.from_file(args.signing_key)
            runner.run(serve_kopf(args.port, args.cert, args.key, key, args.kind == "kopf-fast"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

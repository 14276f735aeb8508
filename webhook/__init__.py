"""The mutating admission webhook that stamps trusted agent pods with a bootstrap token.

Modules, from wire types to process (docs/design.md, "Webhook behaviour"; docs/webhook.md)::

    review          AdmissionReview wire types and hand-written readers (no logic)
    patch           JSON Patch builders for the pod's annotations (pure)
    inject          JSON Patch builders pointing an env var at the annotation (pure)
    jti             batched CSPRNG jti values
    signer          hot-path EdDSA JWT signing, byte-identical to bootstrap_token.mint
    stamp           the stamping decision (pure: signer and clock are arguments)
    response        AdmissionReview response documents
    audit           audit JSON lines (the shared schema), batched per loop iteration
    metrics         Prometheus series on the app's own registry
    handler         one review in, one answer out: decide, audit, count
    batch           run the CPU-bound part of one loop iteration's reviews back to back
    config          settings: environment over YAML file over defaults
    tls             TLS material: load, check the pair, swap live via sni_callback
    credentials     the signing key and certificate in use, swappable
    reload          poll the files (symlink swaps included) and swap what changed
    server          the HTTPS port on aiohttp's low-level server: /mutate, /healthz, /readyz
    (metrics port: bootstrap_token.metrics_http, shared with the approver)
    run             one serving process: listen, rotate, drain on SIGTERM
    workers         several processes on one port (SO_REUSEPORT) under a supervisor
    __main__        the ``agent-bootstrap-webhook`` command
"""

"""The mutating admission webhook that stamps trusted agent pods with a bootstrap token.

Modules, from wire types to process (DESIGN.md, "Webhook behaviour")::

    review     AdmissionReview wire types and parsing (no logic)
    patch      JSON Patch builders for the pod's annotations (pure)
    stamp      the stamping decision (pure: key and clock are arguments)
    response   AdmissionReview response documents
    handler    one review in, one answer out: decide, audit, count
    metrics    Prometheus counters on the app's own registry
    config     settings: environment over YAML file over defaults
    tls        the HTTPS listener's TLS context
    server     aiohttp app factory, guard rails, serve()
    __main__   the ``agent-bootstrap-webhook`` command
"""

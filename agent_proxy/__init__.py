"""The agent proxy: a sidecar in an agent's pod that obtains and renews the agent's client
certificate and originates mutual TLS to the approver for an agent that cannot do it itself.

StreamSpace's k8s-agent presents no client certificate. With the proxy injected (the webhook's
opt-in, docs/agent-certificates.md), the agent's ``CONTROL_PLANE_URL`` points at the proxy on
the pod's loopback, and the proxy:

* forwards the agent's registration to the approver as it is, and reads the approved answer's
  ``apiKey`` (the agent's key; kept in memory only) to request the agent's first certificate
  with a fresh key pair and CSR (:mod:`agent_proxy.enroll`);
* renews the certificate at its ``renewAfter`` (two thirds of its life) with the certificate
  itself as credential;
* relays the WebSocket and forwards heartbeats to the approver with the certificate in the TLS
  handshake (:mod:`agent_proxy.server`).

The private key never leaves the pod: it is made here and written only to the proxy's state
folder (an ``emptyDir``, mode 0600), so a restarted proxy keeps its certificate.
"""

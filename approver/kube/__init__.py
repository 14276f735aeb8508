"""Kubernetes adapters (kubernetes-asyncio): the client from settings, pod reads and lists, the
pod watch. The rules they feed live elsewhere (:mod:`approver.domain.binding`,
:mod:`approver.reconcile`); nothing here decides anything.

* the ``ApiClient`` comes from :mod:`bootstrap_token.kube_client` (shared with certs-tooling).
* :mod:`approver.kube.selector`: a ``LabelSelector`` as a ``labelSelector`` query string.
* :mod:`approver.kube.pods`: read one pod, list a namespace's agent pods (Pod JSON to
  :class:`approver.domain.binding.LivePod`).
* :mod:`approver.kube.watch`: list-then-watch per trusted namespace, resuming on
  ``resourceVersion`` and re-listing on 410 Gone.
"""

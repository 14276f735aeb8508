"""The Kubernetes client from a kubeconfig file, or the in-cluster configuration (the approver and
certs-tooling cluster-bootstrap).

In a pod (no ``kubernetes.kubeconfig``), kubernetes-asyncio reads the service account's token
and CA from ``/var/run/secrets/kubernetes.io/serviceaccount`` and ``KUBERNETES_SERVICE_HOST``/
``_PORT``, and re-reads the (rotating, projected) token when it changes. With a kubeconfig file,
its current context is used. Either way the code that uses the client never knows which: tests
hand it a client pointing at a local stand-in.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException


class KubernetesConfigError(ValueError):
    """No usable Kubernetes configuration (the message names the source, never a token)."""


async def open_api_client(*, kubeconfig: Path | None) -> ApiClient:
    """An ``ApiClient`` for the cluster. Close it with ``await client.close()``.

    Args:
        kubeconfig: a kubeconfig file (its current context), or None for the in-cluster
            configuration.

    Raises:
        KubernetesConfigError: the file cannot be used, or not running in a pod.
    """
    configuration = Configuration()
    try:
        if kubeconfig is not None:
            await config.load_kube_config(
                config_file=str(kubeconfig),
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            config.load_incluster_config(  # type: ignore[no-untyped-call]  # untyped upstream
                client_configuration=configuration
            )
    except (ConfigException, OSError, ValueError, KeyError) as exc:
        source = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster configuration"
        raise KubernetesConfigError(f"{source}: {type(exc).__name__}: {exc}"[:300]) from None
    return ApiClient(configuration=configuration)

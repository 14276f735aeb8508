"""Control-plane connectors: adapters of the port in :mod:`approver.domain.control_plane`.

* :mod:`approver.connectors.streamspace`: StreamSpace, through its own API;
* :mod:`approver.connectors.http_client`: JSON over HTTP within a time budget;
* :mod:`approver.connectors.settings`: the ``controlPlane`` settings.
"""

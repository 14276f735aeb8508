"""The admin command line client: ``agent-bootstrap-approver agents ...``, ``audit list`` and the
``kubectl agents`` plugin talk to a **running approver** over its HTTPS admin API
(:mod:`approver.http.admin`), unlike ``serve``, ``migrate``, ``audit verify`` and ``api-keys``,
which work on the approver's database.

* :mod:`approver.cli.config`: the client config file (contexts), the flags over it, the token.
* :mod:`approver.cli.client`: the HTTP client (aiohttp), errors as exceptions.
* :mod:`approver.cli.render`: tables, ages, ``-o json|yaml|name``. Pure.
* :mod:`approver.cli.commands`: the argparse subcommands and their runs, exit codes.
"""

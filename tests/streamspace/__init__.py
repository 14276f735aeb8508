"""Stand-ins that imitate StreamSpace (streamspace-dev/streamspace @ c4fc035) for the tests.

StreamSpace's Go code cannot run here, so :mod:`tests.streamspace.control_plane` (its API server)
and :mod:`tests.streamspace.agent` (its Kubernetes agent) reproduce what that code does on the
wire, each behaviour citing the Go file and function it follows. They are what the integration
tests use to show that StreamSpace, unmodified, accepts what agent-bootstrap does.
"""

"""The guides' examples, checked against the code (issue 17: they had drifted).

:mod:`tests.docs.markdown` reads fenced blocks, settings tables and command lines out of
``README.md`` and ``docs/*.md``; the tests load each example with the code it claims to fit.
"""

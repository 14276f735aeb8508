"""jti values: 128 random bits, base64url, never repeated, fresh after a fork."""

from __future__ import annotations

import base64
import os

from webhook.jti import BATCH, JtiSource, new_jti


class TestJtiSource:
    def test_format(self) -> None:
        """A jti is 22 base64url characters that decode to 16 bytes."""
        jti = JtiSource()()
        assert len(jti) == 22
        assert len(base64.urlsafe_b64decode(jti + "==")) == 16

    def test_unique_across_batches(self) -> None:
        """Thousands of jtis over several refills are all distinct."""
        source = JtiSource()
        jtis = [source() for _ in range(BATCH * 4 + 7)]
        assert len(set(jtis)) == len(jtis)

    def test_reset_drops_the_buffer(self) -> None:
        """After reset() (a fork) the next jti comes from new random bytes."""
        source = JtiSource()
        first = source()
        source.reset()
        assert source() != first

    def test_forked_child_does_not_repeat_the_parent(self) -> None:
        """A child forked mid-batch hands out other jtis than the parent's next ones."""
        new_jti()  # the module source now holds a partly used batch
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read)
            os.write(write, new_jti().encode())
            os._exit(0)
        os.close(write)
        child = os.read(read, 64).decode()
        os.close(read)
        os.waitpid(pid, 0)
        assert child != new_jti()

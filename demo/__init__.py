"""`make demo`: the whole path on loopback — certs, webhook, approver, real reviews, agents."""

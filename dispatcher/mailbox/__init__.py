"""The inbound mailbox: an SMTP server for the bounces, complaints and unsubscribe mail
of the service's email (``[email] inbound_listen``), a front over the service."""

from dispatcher.mailbox.server import Mailbox

__all__ = ["Mailbox"]

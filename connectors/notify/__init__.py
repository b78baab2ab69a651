"""Where alarm notices go: e-mail over SMTP and a JSON webhook (Slack, Teams).

Both implement ``operations.watch.Notifier`` and raise ``NotificationFailed``
with a message that names the channel and the failure, never the password or
the webhook's address (a Slack or Teams webhook URL is itself a secret).
"""

from connectors.notify.mail import EmailNotifier
from connectors.notify.webhook import WebhookNotifier, webhook_payload

__all__ = ["EmailNotifier", "WebhookNotifier", "webhook_payload"]

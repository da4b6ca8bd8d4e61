"""Chat bots: the handlers that take user commands in Telegram and Slack (entry points).

Each adapts its service's updates to `digestbot.commands` and answers; sending digests is the
channels' (`digestbot.channels`), rendering is `digestbot.render`'s.
"""

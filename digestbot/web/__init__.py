"""The HTTP app (`make_app`, `serve`): routes wired in `app`, pages in `pages`, signup in
`signup`, subscription management in `preferences`; `forms` and `common` are what they share."""

from digestbot.web.app import make_app, serve

__all__ = ["make_app", "serve"]

"""``dev-sessions dashboard``: a live web dashboard of the sessions, their conversations and the
messages, on 127.0.0.1 (aiohttp; imported only by the ``dashboard`` command).

:mod:`.auth` the login codes, cookie sessions and CSRF tokens; :mod:`.pages` the HTML (pure);
:mod:`.hub` the one task that watches for changes and feeds every open page; :mod:`.server` the
routes. ``static/`` holds the page's one script and one style sheet (no build step, no CDN).
"""

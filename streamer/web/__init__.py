"""The daemon's web page: plain ES modules and CSS, served as they are by ``streamer serve``
(:mod:`streamer.server.http`); no build step. ``index.html`` is the page, ``app.js`` its
entry point; everything it does goes through the protocol of ``docs/protocol.md``."""

"""The web page at the host root: collections, jobs, workspace and the admin view on a map.

One Jinja2 template (templates/index.html) and plain ES modules (static/) that call the openEO
API with fetch; Leaflet comes from the installed `xstatic-leaflet` package, so the page needs
nothing from the internet. Decision record: docs/decisions/0010-web-page.md.
"""

"""The `terracube` command: serve the API, run batch job workers, manage accounts and jobs.

One module per command group (serve/worker, jobs, users, workspaces, collections, samples);
`main` builds the parser from them. Heavy imports (the web app, the engine, the catalog) happen
inside the command handlers, so `terracube users add` does not load FastAPI or dask.
"""

from terracube.cli.main import main

__all__ = ["main"]

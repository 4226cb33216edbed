"""The bare route: a sync FastAPI route and nothing else, the least any route can cost.

It runs in the same threadpool, under the same uvicorn, with the same worker count as the
app, so dividing by it cancels out how fast (or how busy) the machine is.
"""

from typing import Any

from fastapi import FastAPI

PATH = "/bare"

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get(PATH)
def bare() -> Any:
    """A sync `def`, like every route of the app, so it pays for the threadpool hop too."""
    return {"ok": True}

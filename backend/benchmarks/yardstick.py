"""The yardstick: a bare sync FastAPI route, the least any of our routes can cost.

It runs in the same threadpool, under the same uvicorn, with the same worker count as the
app, so dividing by it cancels out how fast (or how busy) the machine is.
"""

from fastapi import FastAPI
from pydantic import BaseModel

PATH = "/ping"


class Pong(BaseModel):
    status: str = "ok"


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get(PATH, response_model=Pong)
def ping() -> Pong:
    """A sync `def`, like every route of the app, so it pays for the threadpool hop too."""
    return Pong()

from fastapi import APIRouter

from app.api.routes import (
    admin,
    agents,
    documents,
    knowledge_bases,
    login,
    models,
    runs,
    search,
    threads,
    usage,
    users,
    utils,
)

# The API's routers, in the order the OpenAPI schema documents them. create_app includes
# each into the app itself: a router included into another router is one more level that
# every request is matched through.
routers: tuple[APIRouter, ...] = (
    login.router,
    usage.router,
    users.router,
    models.router,
    agents.router,
    threads.router,
    runs.router,
    knowledge_bases.router,
    documents.router,
    search.router,
    admin.router,
    utils.router,
)

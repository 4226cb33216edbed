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

api_router = APIRouter()
api_router.include_router(login.router)
api_router.include_router(usage.router)
api_router.include_router(users.router)
api_router.include_router(models.router)
api_router.include_router(agents.router)
api_router.include_router(threads.router)
api_router.include_router(runs.router)
api_router.include_router(knowledge_bases.router)
api_router.include_router(documents.router)
api_router.include_router(search.router)
api_router.include_router(admin.router)
api_router.include_router(utils.router)

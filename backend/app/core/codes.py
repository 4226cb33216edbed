"""Every machine-readable code the API can send, in one place.

Clients switch on these, so each set is closed: the published schema lists them as enums,
`backend/tests/core/test_codes.py` proves that every code the source produces is a member
(and that the README documents every error code), and the schema snapshot catches a code
removed or renamed. Columns that store codes stay strings; only what produces a code and
the schemas that publish one use these.
"""

# ruff: noqa: S105 (names like INVALID_TOKEN are codes, not secrets)

from enum import StrEnum


class LLMErrorCode(StrEnum):
    """A model provider call that failed (`app.modules.llm.client`). Runs, indexes and
    search pass these on unchanged, so each of those sets holds them all."""

    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_AUTH_FAILED = "llm_auth_failed"
    LLM_BAD_REQUEST = "llm_bad_request"
    LLM_BAD_RESPONSE = "llm_bad_response"
    EMBEDDING_DIMENSIONS_MISMATCH = "embedding_dimensions_mismatch"


class ErrorCode(StrEnum):
    """The `code` of an error response body (README, "Error codes")."""

    # ---- generic, by HTTP status (core.errors defaults, framework errors)
    BAD_REQUEST = "bad_request"
    NOT_AUTHENTICATED = "not_authenticated"
    PAYMENT_REQUIRED = "payment_required"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    REQUEST_TIMEOUT = "request_timeout"
    CONFLICT = "conflict"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    MALFORMED_JSON = "malformed_json"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    REDIS_UNAVAILABLE = "redis_unavailable"
    # ---- collisions with concurrent writes
    DUPLICATE = "duplicate"
    REFERENCE_MISSING = "reference_missing"
    # ---- accounts and sessions
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_TOKEN = "invalid_token"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    SESSION_REVOKED = "session_revoked"
    ACCOUNT_INACTIVE = "account_inactive"
    SUPERUSER_REQUIRED = "superuser_required"
    SIGNUP_CLOSED = "signup_closed"
    EMAIL_TAKEN = "email_taken"
    CURRENT_PASSWORD_REQUIRED = "current_password_required"
    INCORRECT_PASSWORD = "incorrect_password"
    PASSWORD_UNCHANGED = "password_unchanged"
    INVALID_RESET_TOKEN = "invalid_reset_token"
    CANNOT_MODIFY_SELF = "cannot_modify_self"
    LAST_SUPERUSER = "last_superuser"
    # ---- lists
    INVALID_CURSOR = "invalid_cursor"
    INVALID_RANGE = "invalid_range"
    OWNER_FILTER_FORBIDDEN = "owner_filter_forbidden"
    # ---- the model catalog and agents
    INVALID_CATALOG = "invalid_catalog"
    MODEL_EXISTS = "model_exists"
    MODEL_IN_USE = "model_in_use"
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_NOT_CHAT = "model_not_chat"
    MODEL_NOT_EMBEDDING = "model_not_embedding"
    MAX_OUTPUT_TOKENS_TOO_LARGE = "max_output_tokens_too_large"
    KNOWLEDGE_BASE_NOT_FOUND = "knowledge_base_not_found"
    # ---- threads, runs, budgets
    THREAD_ARCHIVED = "thread_archived"
    AGENT_INACTIVE = "agent_inactive"
    RUN_IN_PROGRESS = "run_in_progress"
    RUN_FINISHED = "run_finished"
    QUOTA_EXCEEDED = "quota_exceeded"
    # ---- knowledge bases, documents, search
    KNOWLEDGE_BASE_NAME_TAKEN = "knowledge_base_name_taken"
    UPLOAD_TOO_LARGE = "upload_too_large"
    EMPTY_FILE = "empty_file"
    STORAGE_QUOTA_EXCEEDED = "storage_quota_exceeded"
    DUPLICATE_DOCUMENT = "duplicate_document"
    DOCUMENT_BUSY = "document_busy"
    FILE_MISSING = "file_missing"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    SEMANTIC_INDEX_UNAVAILABLE = "semantic_index_unavailable"
    # ---- a question that could not be embedded (semantic search): LLMErrorCode
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_AUTH_FAILED = "llm_auth_failed"
    LLM_BAD_REQUEST = "llm_bad_request"
    LLM_BAD_RESPONSE = "llm_bad_response"
    EMBEDDING_DIMENSIONS_MISMATCH = "embedding_dimensions_mismatch"


class RunErrorCode(StrEnum):
    """Why a run failed: its `error_code` (README, "The life of a run")."""

    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_AUTH_FAILED = "llm_auth_failed"
    LLM_BAD_REQUEST = "llm_bad_request"
    LLM_BAD_RESPONSE = "llm_bad_response"
    EMBEDDING_DIMENSIONS_MISMATCH = "embedding_dimensions_mismatch"
    CONTEXT_TOO_LONG = "context_too_long"
    MODEL_UNAVAILABLE = "model_unavailable"
    THREAD_DELETED = "thread_deleted"
    ANSWER_NOT_STORED = "answer_not_stored"
    RUN_INTERRUPTED = "run_interrupted"
    RUN_NOT_STARTED = "run_not_started"
    INTERNAL_ERROR = "internal_error"


class DocumentErrorCode(StrEnum):
    """Why a document failed (`error_code`), or why its passages have no vectors
    (`embedding_error_code`, only ever `quota_exceeded`)."""

    # ---- extraction (modules.documents)
    NO_TEXT_EXTRACTED = "no_text_extracted"
    ENCRYPTED_DOCUMENT = "encrypted_document"
    UNREADABLE_DOCUMENT = "unreadable_document"
    DOCUMENT_TOO_LARGE = "document_too_large"
    # ---- ingestion (services.ingestion_service, services.ingestion_recovery)
    UNSUPPORTED_DOCUMENT = "unsupported_document"
    FILE_MISSING = "file_missing"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INGESTION_FAILED = "ingestion_failed"
    INGESTION_INTERRUPTED = "ingestion_interrupted"
    # ---- embedding (services.index_service)
    QUOTA_EXCEEDED = "quota_exceeded"


class IndexErrorCode(StrEnum):
    """Why a knowledge base's semantic index build failed: its `index.error_code`."""

    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_AUTH_FAILED = "llm_auth_failed"
    LLM_BAD_REQUEST = "llm_bad_request"
    LLM_BAD_RESPONSE = "llm_bad_response"
    EMBEDDING_DIMENSIONS_MISMATCH = "embedding_dimensions_mismatch"
    MODEL_UNAVAILABLE = "model_unavailable"
    INDEX_INTERRUPTED = "index_interrupted"


class AuditAction(StrEnum):
    """What an audit log entry records: its `action`."""

    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "logout"
    REFRESH_TOKEN_REUSED = "refresh_token.reused"
    SESSIONS_REVOKED = "sessions.revoked"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_CHECK_FAILED = "password.check_failed"
    PASSWORD_RESET_REQUESTED = "password_reset.requested"
    PASSWORD_RESET = "password.reset"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_EMAIL_CHANGED = "user.email_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_DELETED = "user.deleted"
    MODEL_CREATED = "model.created"
    MODEL_UPDATED = "model.updated"
    MODEL_DELETED = "model.deleted"
    MODELS_IMPORTED = "models.imported"

"""Password hashing, access tokens (JWT) and opaque tokens stored only as hashes."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache

import jwt
from passlib.context import CryptContext

from app.core.config import Environment, Settings
from app.core.db import utcnow

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 (a claim value)
REQUIRED_CLAIMS = ("sub", "exp", "iat", "nbf", "jti", "iss", "aud", "type", "sid")

# OWASP's argon2id minimum: 19 MiB (in KiB), two passes, one lane.
PRODUCTION_ARGON2 = (19 * 1024, 2)
# Tests hash hundreds of passwords; the parameters are part of each hash, so a hash made
# with these is upgraded by any other environment on the next login.
TEST_ARGON2 = (1024, 1)


def password_context(config: Settings) -> CryptContext:
    """The hasher for the settings' environment (one per process and environment)."""
    return _password_context(
        TEST_ARGON2 if config.ENVIRONMENT is Environment.TEST else PRODUCTION_ARGON2
    )


@cache
def _password_context(argon2: tuple[int, int]) -> CryptContext:
    memory_kib, passes = argon2
    return CryptContext(
        schemes=["argon2", "bcrypt"],
        deprecated=["bcrypt"],  # still verified, replaced by argon2id on the next login
        argon2__type="ID",
        argon2__memory_cost=memory_kib,
        argon2__time_cost=passes,
        argon2__parallelism=1,
    )


def hash_password(password: str, *, config: Settings) -> str:
    return password_context(config).hash(password)


def verify_password(password: str, hashed: str, *, config: Settings) -> tuple[bool, str | None]:
    """Whether it matches, and a new hash to store when the old one is outdated."""
    return password_context(config).verify_and_update(password, hashed)


def waste_password_check(*, config: Settings) -> None:
    """As much work as a real check, so unknown accounts cannot be told apart by timing."""
    password_context(config).dummy_verify()


def new_opaque_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


def create_access_token(
    *, user_id: uuid.UUID, session_id: uuid.UUID, config: Settings
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = utcnow()
    lifetime = timedelta(minutes=config.ACCESS_TOKEN_EXPIRE_MINUTES)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "type": ACCESS_TOKEN_TYPE,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "iss": config.JWT_ISSUER,
        "aud": config.JWT_AUDIENCE,
    }
    token = jwt.encode(claims, config.secret_key, algorithm=ALGORITHM)
    return token, int(lifetime.total_seconds())


# How many verified access tokens each process remembers (about 1 KiB each).
VERIFIED_TOKENS = 4096


class _InvalidTokenError(Exception):
    pass


def decode_access_token(token: str, *, config: Settings) -> AccessClaims | None:
    """The claims of a valid access token; None for anything else, whatever the reason.

    Tokens whose signature and claims were verified are remembered (the most recent
    VERIFIED_TOKENS): a client sends one token with every request of its lifetime, and
    verifying it again costs more than the rest of authenticating the request. Only
    successes are remembered, and expiry is checked on every call."""
    try:
        claims = _verified(token, config.secret_key, config.JWT_AUDIENCE, config.JWT_ISSUER)
    except _InvalidTokenError:
        return None
    return claims if utcnow() < claims.expires_at else None


@lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(token: str, key: str, audience: str, issuer: str) -> AccessClaims:
    """Raises for an invalid token: lru_cache keeps no exceptions, so a token refused
    (one not valid yet, say) is checked afresh next time."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": list(REQUIRED_CLAIMS)},
        )
        if claims["type"] != ACCESS_TOKEN_TYPE:
            raise _InvalidTokenError
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            expires_at=datetime.fromtimestamp(claims["exp"], tz=utcnow().tzinfo),
        )
    # OverflowError, OSError: an `exp` no datetime can hold (1e20), signed or not.
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError, OverflowError, OSError):
        raise _InvalidTokenError from None

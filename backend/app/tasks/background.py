"""The background loops of a process that hosts runs and ingestion: lease renewal and
the sweep, for both."""

import logging
import threading
import uuid
from collections.abc import Callable

from app.modules.llm.client import LLMClient
from app.modules.storage import Storage
from app.services import index_service, ingestion_recovery
from app.services.index_service import IndexPolicy, IndexService
from app.services.ingestion_service import IngestionService, IngestPolicy
from app.services.run_runtime import Dispatch, LeaseRegistry, RunPolicy, SessionFactory
from app.services.run_service import RunService

logger = logging.getLogger("agentry.runs")


class Periodic:
    """Calls `action` every `interval` seconds on a daemon thread until stopped. A failing
    call is logged (its type only: a database error's text can quote parameters) and the
    loop goes on, so a database or broker that comes back is picked up by itself."""

    def __init__(self, name: str, interval: float, action: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._action = action
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self._action()
            except Exception as error:
                logger.warning("%s failed (%s); trying again", self.name, type(error).__name__)


class RunHost:
    """What a process that executes or delivers runs and documents keeps running beside
    its requests: the heartbeat that renews its leases and the sweep that ends or
    re-delivers runs and documents nobody holds any more. It executes runs if given an
    LLM client, and ingests documents if given a storage."""

    def __init__(
        self,
        *,
        policy: RunPolicy,
        ingest_policy: IngestPolicy,
        session_factory: SessionFactory,
        llm: LLMClient | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.policy = policy
        self.ingest_policy = ingest_policy
        self.session_factory = session_factory
        self.llm = llm
        self.storage = storage
        self.index_policy = IndexPolicy.of_ingestion(ingest_policy)
        self.leases = LeaseRegistry()
        self.ingest_leases = LeaseRegistry()
        self.index_leases = LeaseRegistry()
        self._loops: list[Periodic] = []

    def execute(self, run_id: uuid.UUID) -> None:
        if self.llm is None:
            raise RuntimeError("this process delivers runs but does not execute them")
        RunService.execute(
            run_id,
            session_factory=self.session_factory,
            llm=self.llm,
            leases=self.leases,
            policy=self.policy,
        )

    def ingest(self, document_id: uuid.UUID) -> None:
        """Ingests a document, then embeds its passages if its knowledge base has a
        semantic index (in this same delivery: a build already running elsewhere is
        left to go round again)."""
        if self.storage is None:
            raise RuntimeError("this process delivers documents but does not ingest them")
        kb_id = IngestionService.process(
            document_id,
            session_factory=self.session_factory,
            storage=self.storage,
            leases=self.ingest_leases,
            policy=self.ingest_policy,
        )
        if kb_id is not None:
            self.index(kb_id)

    def index(self, kb_id: uuid.UUID) -> None:
        if self.llm is None:
            raise RuntimeError("this process delivers index builds but does not run them")
        IndexService.build(
            kb_id,
            session_factory=self.session_factory,
            llm=self.llm,
            leases=self.index_leases,
            policy=self.index_policy,
        )

    def start(self, dispatch: Dispatch, ingest: Dispatch, index: Dispatch) -> None:
        """Recovers what dead processes of this host left, then starts the loops."""
        try:
            RunService.recover(
                session_factory=self.session_factory, policy=self.policy, dispatch=dispatch
            )
            ingestion_recovery.recover(
                session_factory=self.session_factory, policy=self.ingest_policy, dispatch=ingest
            )
        except Exception as error:  # the database may be down: the sweep will catch up
            logger.warning("start-up recovery failed (%s)", type(error).__name__)

        def sweep() -> None:
            try:
                RunService.sweep(
                    session_factory=self.session_factory, policy=self.policy, dispatch=dispatch
                )
            finally:  # a failing run sweep does not hold documents up, nor the reverse
                try:
                    ingestion_recovery.sweep(
                        session_factory=self.session_factory,
                        policy=self.ingest_policy,
                        dispatch=ingest,
                    )
                finally:
                    index_service.sweep(
                        session_factory=self.session_factory,
                        policy=self.index_policy,
                        dispatch=index,
                    )

        def renew() -> None:
            try:
                RunService.renew_leases(
                    session_factory=self.session_factory, leases=self.leases, policy=self.policy
                )
            finally:
                try:
                    ingestion_recovery.renew(
                        session_factory=self.session_factory,
                        leases=self.ingest_leases,
                        policy=self.ingest_policy,
                    )
                finally:
                    index_service.renew(
                        session_factory=self.session_factory,
                        leases=self.index_leases,
                        policy=self.index_policy,
                    )

        self._loops = [Periodic("agentry-run-sweep", self.policy.sweep_interval, sweep)]
        if self.llm is not None or self.storage is not None:
            every = min(self.policy.renew_every, self.ingest_policy.lease.total_seconds() / 3)
            self._loops.append(Periodic("agentry-lease-renewal", every, renew))
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        self._loops = []
        if self.llm is not None:
            self.llm.close()

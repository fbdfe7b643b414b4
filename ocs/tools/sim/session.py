"""A credit-control session of a simulated network element: the URR engine of its rating groups
driven over the link, one request in flight at a time, every report logged.

The owner (a data session, a call, a message) feeds traffic into `engine` and calls `step(now)`;
the session decides what to send: a TERMINATION when asked to end (or after an ASR, or when
final units with action TERMINATE are used), an UPDATE with reason FORCED_REAUTHORISATION after
a RAR, or the reports the rules say are due. RAR and ASR arriving while a request is in flight
are handled once its answer is in.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine, Mapping
from typing import Any

from ocs.tools.sim.link import Delivery
from ocs.tools.sim.runtime import SimRuntime, Subscriber, iso
from ocs.tools.sim.urr import MsccReport, UrrEngine
from ocs.tools.sim.usage_log import SessionEntry, UsageEntry, cost_micro
from protocol.codes import AoCRequestType, CCRequestType, ResultCode, TerminationCause
from protocol.messages import CCA, CCR, MsccRequest, ServiceUnit, UsedServiceUnit
from rating import Unit


class Phase(enum.Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class CcSession:
    def __init__(
        self,
        rt: SimRuntime,
        *,
        subscriber: Subscriber,
        service_context_id: str,
        units: Mapping[int, Unit],
        requested: Mapping[int, ServiceUnit] | None = None,
    ) -> None:
        self.rt = rt
        self.subscriber = subscriber
        self.service_context_id = service_context_id
        self.session_id = rt.new_session_id()
        self.engine = UrrEngine(units)
        self.requested = dict(requested or {})
        self.phase = Phase.NEW
        self.number = -1  # last CC-Request-Number sent
        self.busy = False
        self.end_cause: str | None = None
        self.rar: tuple[int, ...] | None = None  # RAR pending: its rating groups (() = all)
        self.aborted = False
        self.close_cause: str | None = None
        self.closed = asyncio.get_running_loop().create_future()

    @property
    def accepts_server_requests(self) -> bool:
        return self.phase in (Phase.OPEN, Phase.OPENING, Phase.CLOSING)

    @property
    def is_open(self) -> bool:
        return self.phase is Phase.OPEN

    # --- triggers from outside -----------------------------------------------------------------

    def on_rar(self, rating_groups: tuple[int, ...] | None) -> None:
        """RAR (already answered 2001): re-authorise once nothing is in flight."""
        if not rating_groups:
            self.rar = ()  # every rating group
        elif self.rar != ():
            self.rar = tuple(dict.fromkeys((*(self.rar or ()), *rating_groups)))
        self._kick()

    def on_asr(self) -> None:
        """ASR (already answered 2001): terminate once nothing is in flight."""
        self.aborted = True
        self._kick()

    def end(self, cause: str = "end") -> None:
        if self.end_cause is None:
            self.end_cause = cause
        self._kick()

    def _kick(self) -> None:
        asyncio.get_running_loop().call_soon(lambda: self.step(self.rt.now_ms()))

    # --- driving -------------------------------------------------------------------------------

    async def open(self, rating_groups: tuple[int, ...]) -> bool:
        """INITIAL asking quota for `rating_groups`; True if the session is open."""
        self.phase = Phase.OPENING
        self.rt.sessions[self.session_id] = self
        reports = self.engine.initial(rating_groups)
        self.busy = True
        try:
            cca = await self._request(CCRequestType.INITIAL, reports)
        finally:
            self.busy = False
        if cca is None or cca.result_code != ResultCode.SUCCESS:
            self.rt.stats.sessions_refused += 1
            self._closed()
            return False
        self.rt.stats.sessions_opened += 1
        self.phase = Phase.OPEN
        self._kick()  # a RAR/ASR may have come meanwhile
        return True

    def step(self, now_ms: int) -> None:
        """Send what is due, if nothing is in flight."""
        if self.phase is not Phase.OPEN or self.busy:
            return
        if self.aborted:
            self._start(self._terminate("abort", TerminationCause.ADMINISTRATIVE))
        elif self.end_cause is not None:
            self._start(self._terminate(self.end_cause, TerminationCause.LOGOUT))
        elif self.engine.terminate_due:
            self._start(self._terminate("final-units", TerminationCause.ADMINISTRATIVE))
        elif self.rar is not None:
            groups, self.rar = self.rar, None
            reports = self.engine.reauthorise(groups or None, now_ms)
            if reports:
                self._start(self._update(reports))
        else:
            reports = self.engine.poll(now_ms)
            if reports:
                self._start(self._update(reports))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self.busy = True
        task = self.rt.spawn(coro)
        task.add_done_callback(self._done)

    def _done(self, _: asyncio.Task[None]) -> None:
        self.busy = False
        if self.phase is Phase.OPEN:
            self.step(self.rt.now_ms())

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    async def _update(self, reports: list[MsccReport]) -> None:
        cca = await self._request(CCRequestType.UPDATE, reports)
        if cca is None or cca.result_code != ResultCode.SUCCESS:
            # the session is gone on the server (5002) or the request was refused: stop here
            self._closed("failed")

    async def _terminate(self, cause: str, termination_cause: TerminationCause) -> None:
        self.phase = Phase.CLOSING
        self.close_cause = cause
        reports = self.engine.final(self.rt.now_ms())
        await self._request(CCRequestType.TERMINATION, reports, termination_cause)
        self._closed(cause)

    def _closed(self, cause: str | None = None) -> None:
        if cause is not None:
            self.rt.stats.sessions_closed[cause] += 1
        self.phase = Phase.CLOSED
        for rule in self.engine.rules.values():
            stats = self.rt.stats
            stats.uncounted[rule.rating_group] += rule.uncounted
            stats.dropped[rule.rating_group] += rule.dropped
            stats.inhibited[rule.rating_group] += rule.inhibited
            rule.uncounted = rule.dropped = rule.inhibited = 0
        self.rt.sessions.pop(self.session_id, None)
        if not self.closed.done():
            self.closed.set_result(None)

    # --- the wire ------------------------------------------------------------------------------

    def _mscc(self, report: MsccReport) -> MsccRequest:
        unit = self.engine.rules[report.rating_group].unit
        used = tuple(
            UsedServiceUnit(
                cc_total_octets=u.units if unit is Unit.OCTETS else None,
                cc_input_octets=u.uplink,
                cc_output_octets=u.downlink,
                cc_time=u.units if unit is Unit.SECONDS else None,
                cc_service_specific_units=u.units if unit is Unit.UNITS else None,
                tariff_change_usage=u.tariff_change_usage,
                reporting_reason=u.reason,
            )
            for u in report.used
        )
        requested = None
        if report.request_quota:
            requested = self.requested.get(report.rating_group, ServiceUnit())
        return MsccRequest(
            rating_group=report.rating_group,
            requested_service_unit=requested,
            used_service_unit=used or None,
            reporting_reason=report.reason if not used else None,
        )

    async def _request(
        self,
        kind: CCRequestType,
        reports: list[MsccReport],
        termination_cause: TerminationCause | None = None,
    ) -> CCA | None:
        rt = self.rt
        cfg = rt.config
        self.number = 0 if kind is CCRequestType.INITIAL else self.number + 1
        number = self.number
        ccr = CCR(
            session_id=self.session_id,
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            destination_realm=cfg.origin_realm,
            auth_application_id=4,
            service_context_id=self.service_context_id,
            cc_request_type=kind,
            cc_request_number=number,
            subscription_id=self.subscriber.subscription if kind is CCRequestType.INITIAL else None,
            termination_cause=termination_cause,
            multiple_services_credit_control=tuple(self._mscc(r) for r in reports) or None,
            aoc_request_type=AoCRequestType.COST_ONLY,  # the charge so far, for reconcile
        )
        rt.stats.requests[kind.name] += 1
        delivery = await rt.call(ccr)
        rt.stats.answer(delivery)
        now = rt.now_ms()
        cca = delivery.answer if isinstance(delivery.answer, CCA) else None
        top = delivery.answer.result_code if delivery.answer is not None else None
        ok = top == ResultCode.SUCCESS and cca is not None and not delivery.error_flag
        self._log(kind, number, reports, delivery, cca, ok, now)
        if ok and cca is not None:
            answers = cca.multiple_services_credit_control or ()
            for a in answers:
                rt.stats.mscc_result_codes[a.result_code] += 1
            if kind is not CCRequestType.TERMINATION:
                self.engine.apply(reports, answers, now)
            return cca
        self.engine.fail(reports)
        return cca

    def _log(
        self,
        kind: CCRequestType,
        number: int,
        reports: list[MsccReport],
        delivery: Delivery,
        cca: CCA | None,
        ok: bool,
        now: int,
    ) -> None:
        rt = self.rt
        node = rt.config.origin_host
        top = delivery.answer.result_code if delivery.answer is not None else None
        answers = cca.multiple_services_credit_control or () if cca is not None else ()
        by_rg = {a.rating_group: a for a in answers}
        for report in reports:
            rule = self.engine.rules[report.rating_group]
            rt.stats.unit_names[report.rating_group] = rule.unit.value
            mscc = by_rg.get(report.rating_group)
            mscc_code = mscc.result_code if mscc is not None else None
            charged = ok and mscc_code != ResultCode.RATING_FAILED
            for u in report.used:
                tcu = u.tariff_change_usage
                rt.log.write(
                    UsageEntry(
                        time=iso(now),
                        node=node,
                        session_id=self.session_id,
                        service_context_id=self.service_context_id,
                        subscriber=self.subscriber.msisdn,
                        rating_group=report.rating_group,
                        unit=rule.unit.value,
                        units=u.units,
                        uplink=u.uplink,
                        downlink=u.downlink,
                        reason=u.reason.name,
                        tariff_change_usage=tcu.name if tcu is not None else None,
                        cc_request_type=kind.name,
                        cc_request_number=number,
                        result_code=top,
                        mscc_result_code=mscc_code,
                        ok=charged,
                        retransmitted=delivery.retransmitted,
                    )
                )
                rt.stats.reasons[u.reason.name] += 1
                if charged:
                    rt.stats.units[report.rating_group] += u.units
        if kind in (CCRequestType.INITIAL, CCRequestType.TERMINATION):
            rt.log.write(
                SessionEntry(
                    time=iso(now),
                    node=node,
                    session_id=self.session_id,
                    service_context_id=self.service_context_id,
                    subscriber=self.subscriber.msisdn,
                    event="open" if kind is CCRequestType.INITIAL else "close",
                    cc_request_number=number,
                    result_code=top,
                    ok=ok,
                    cause=self.close_cause if kind is CCRequestType.TERMINATION else None,
                    retransmitted=delivery.retransmitted,
                    cost=cost_micro(cca.cost_information) if cca is not None else None,
                    currency=(
                        cca.cost_information.currency_code
                        if cca is not None and cca.cost_information is not None
                        else None
                    ),
                )
            )

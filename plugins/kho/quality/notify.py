"""Tell someone when a gate finds something: a JSON summary POSTed to the webhook `KHO_QUALITY_WEBHOOK_URL` names.

A chat or incident tool receives every validation in which an expectation failed (blocking or warning), with the
failures and their counts. Delivery is retried (tenacity, exponential back-off) and never decides the gate: a
receiver that cannot be reached is logged, and the failing Airflow task still says what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from kho.config import QualityConfig

log = logging.getLogger(__name__)
ATTEMPTS = 3


class _Retryable(Exception):
    """A delivery worth trying again: the receiver was unreachable, timed out or answered 5xx/429."""


def notify(config: QualityConfig, summary: Mapping[str, Any]) -> bool:
    """POST `summary` (kho.quality.runner.QualityResult.summary) with a one-line `text`; True when delivered."""
    if config.webhook_url is None:
        return False
    payload = {"source": "kho.quality", "text": headline(summary), **summary}
    try:
        _post(config.webhook_url, payload, config.webhook_timeout)
    except (_Retryable, httpx.HTTPError) as exc:
        log.warning("quality webhook not delivered after %d attempt(s): %s", ATTEMPTS, exc)
        return False
    return True


def headline(summary: Mapping[str, Any]) -> str:
    """`raw.population__citizens batches 12-31: failed — 2 blocking, 1 warning (commune_code_valid_for_date 14)`."""
    failures = summary.get("failures") or []
    parts = ", ".join(f"{f.get('rule') or f.get('expectation')}({f.get('column') or 'table'}) "
                      f"{f.get('unexpected_count') if f.get('unexpected_count') is not None else 'failed'}"
                      for f in failures)
    first, last = summary.get("first_batch_id"), summary.get("last_batch_id")
    where = "whole table" if first is None else f"batch {first}" if first == last else f"batches {first}-{last}"
    return (f"{summary.get('table')} ({where}): {summary.get('state')}: {summary.get('blocking_failed', 0)} "
            f"blocking, {int(summary.get('failed', 0)) - int(summary.get('blocking_failed', 0))} warning — {parts}")


@retry(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=5),
       retry=retry_if_exception_type((_Retryable, httpx.TransportError)), reraise=True)
def _post(url: str, payload: Mapping[str, Any], timeout: float) -> None:
    response = httpx.post(url, json=payload, timeout=timeout, follow_redirects=False)
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(f"{url.split('?')[0]} answered {response.status_code}")
    if response.status_code >= 300:
        raise httpx.HTTPStatusError(f"{url.split('?')[0]} answered {response.status_code}", request=response.request,
                                    response=response)

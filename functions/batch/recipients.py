"""Who a batch job may email: an address checked by email-validator (RFC 5321/5322 syntax and
length limits, strict; no DNS lookup, the Lambda has no reason to reach DNS), as it will be used."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def check_address(address: object) -> tuple[str | None, str | None]:
    """(the address as it will be used, None), or (None, why it is refused)."""
    if not isinstance(address, str):
        return None, "must be an email address (a string)"
    try:
        return validate_email(address, check_deliverability=False, strict=True).normalized, None
    except EmailNotValidError as exc:
        return None, f"is not a valid email address: {exc}"

"""Phone number normalisation to E.164."""
from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def normalize_phone(value: str, *, region: str | None = None) -> str:
    """Return the number in E.164, or raise ValidationError saying why it is not one.

    Numbers without a leading + are only accepted when a default region is known.
    """
    raw = (value or "").strip()
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            f"'{raw}' is not a phone number in E.164 form (+15551234567).") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"'{raw}' is not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

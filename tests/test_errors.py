"""The one exception tree: every deliberate failure is a DigestbotError with an exit code."""

from __future__ import annotations

import pytest

from digestbot import errors


@pytest.mark.parametrize("cls", [
    errors.UsageError, errors.ConfigError, errors.FeedError, errors.NetworkError,
    errors.TokenError, errors.TokenExpired, errors.SecretMissing, errors.AnswerError,
    errors.PdfError,
])
def test_every_error_is_a_digestbot_error(cls: type[Exception]) -> None:
    assert issubclass(cls, errors.DigestbotError)
    assert cls("x").exit_code in (1, 2)


def test_zh_and_en_make_the_bilingual_line() -> None:
    exc = errors.UsageError(zh="未知时区", en="unknown time zone 'Mars/Base'")
    assert str(exc) == "未知时区 / unknown time zone 'Mars/Base'"
    assert (exc.zh, exc.en) == ("未知时区", "unknown time zone 'Mars/Base'")
    assert exc.exit_code == 2


def test_one_message_has_no_language_texts() -> None:
    exc = errors.DigestbotError("--speed must be > 0")
    assert str(exc) == "--speed must be > 0"
    assert exc.zh is None and exc.en is None


def test_zh_without_en_is_a_mistake() -> None:
    with pytest.raises(TypeError):
        errors.UsageError(zh="只有中文")

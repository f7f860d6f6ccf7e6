"""Fixtures the API tests share."""
import pytest

from tests.api.test_label_studio_pull import FakeLabelStudio


@pytest.fixture
def label_studio():
    """A stand-in for Label Studio's REST API (tests/api/test_label_studio_pull.py), on a free port."""
    fake = FakeLabelStudio()
    yield fake
    fake.close()

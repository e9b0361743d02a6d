"""What several test modules share."""

from pathlib import Path

import pytest


class Payload:
    """Unpickling this writes ``marker``: a stand-in for code in a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture(scope="session")
def payload():
    """``payload(marker)``: an object whose unpickling writes the file ``marker``."""
    return Payload

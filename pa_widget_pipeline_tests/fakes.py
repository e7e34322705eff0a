"""Test doubles shared by the client and sandbox tests."""


class FakeClock:
    """A clock the test moves by hand. Its `sleep` records each wait and moves the clock by it, so code that
    sleeps on this clock runs instantly and the test can assert the exact waits."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

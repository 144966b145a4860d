import pytest


@pytest.fixture
def database():
    raise ConnectionError("database is not reachable")


@pytest.mark.parametrize("n", range(6))
def test_square(n):
    assert n * n >= 0


def test_sum_fails():
    assert sum([1, 2, 3]) == 7


def test_exception_in_test():
    raise RuntimeError("boom")


def test_uses_database(database):
    assert database


@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False


def test_last():
    assert True

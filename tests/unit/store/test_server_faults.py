"""The database server's own faults (its disk full, out of memory, its file I/O failing, taking no writes) are a
503 with a stable code wherever the driver's error surfaces, inside CellContext.run (translate) or past it (the API's
database_error_handler); PostgreSQL's internal errors and everything else stay a loud 500."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from litestar.testing import RequestFactory

from cell.api.problems import database_error_handler
from cell.ledger.errors import DatabaseUnavailable
from cell.store.errors import server_fault, translate


@pytest.mark.parametrize("error, code", [
    (asyncpg.DiskFullError('could not extend file "base/1/2": No space left on device'), "database_out_of_resources"),
    (asyncpg.OutOfMemoryError("out of memory"), "database_out_of_resources"),
    (asyncpg.ConfigurationLimitExceededError("temporary file size exceeds temp_file_limit"),
     "database_out_of_resources"),
    (asyncpg.PostgresIOError('could not read block 0 in file "base/1/2": Input/output error'), "database_io_error"),
    (asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"), "database_read_only"),
])
def test_a_server_fault_is_503_with_its_code_and_nothing_of_the_servers_files(error, code):
    for fault in (server_fault(error), translate(error)):
        assert isinstance(fault, DatabaseUnavailable) and fault.code == code
        assert "nothing was written" in fault.detail and "base/1/2" not in fault.detail
    answer = database_error_handler(RequestFactory().post("/api/ledger_transactions"), error)
    body = msgspec.json.decode(answer.content)
    assert answer.status_code == 503 and answer.headers["Retry-After"] and body["code"] == code


@pytest.mark.parametrize("error", [asyncpg.InternalServerError("cache lookup failed for relation 1"),
                                   asyncpg.ProgramLimitExceededError("index row size exceeds btree maximum"),
                                   asyncpg.InvalidTransactionStateError("another state of class 25")])
def test_an_internal_error_or_a_limit_of_the_code_stays_a_500(error):
    assert server_fault(error) is None and translate(error) is None
    answer = database_error_handler(RequestFactory().get("/api/ledger_accounts"), error)
    assert answer.status_code == 500

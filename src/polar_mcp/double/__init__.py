"""An embedded double of Polar's customer-portal API, to try polar-mcp without an account and to test
it over real HTTP.

It stands alone: nothing here imports the rest of polar_mcp, and the rest imports it only on demand.
"""

from polar_mcp.double.app import create_app
from polar_mcp.double.blobs import Blob
from polar_mcp.double.faults import Faults
from polar_mcp.double.layer import ConnectionDroppedError
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import demo_store, synthetic_store
from polar_mcp.double.storage import create_storage_app
from polar_mcp.double.store import Store

__all__ = [
    "Blob",
    "ConnectionDroppedError",
    "Faults",
    "RunningDouble",
    "Store",
    "create_app",
    "create_storage_app",
    "demo_store",
    "start_double",
    "synthetic_store",
]

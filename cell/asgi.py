"""An ASGI entry point for servers that import an app object (granian): settings from the environment."""

from cell.api.app import create_app
from cell.settings import load_settings

app = create_app(load_settings())

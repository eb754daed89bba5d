"""The WSGI entry point gunicorn imports: ``service.wsgi:app``."""

from service.app import create_app

app = create_app()

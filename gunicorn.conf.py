# gunicorn reads this file from the working directory; the settings live in the package.
from service.gunicorn_conf import *  # noqa: F403
from service.gunicorn_conf import child_exit, on_exit, on_starting, post_fork  # noqa: F401

"""``python -m trashnet publish --profile P``: a run's small outputs into ``results/<profile>/`` (see trashnet.runner.verify)."""

from trashnet.runner.verify import command_publish as command
from trashnet.runner.verify import configure_publish as configure

__all__ = ["configure", "command"]

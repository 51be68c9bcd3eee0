"""dispatcher: texts paced per sending number, durable and auditable."""

from dispatcher.config import Config, load_config
from dispatcher.errors import DispatcherError
from dispatcher.model import Lane, Message, TextStatus
from dispatcher.service import Dispatcher, TextRequest

__all__ = [
    "Config",
    "Dispatcher",
    "DispatcherError",
    "Lane",
    "Message",
    "TextRequest",
    "TextStatus",
    "load_config",
]
__version__ = "0.1.0"
